"""The contracts between layers: typed, frozen models that every layer imports and that import
nothing of the layers above them (configuration aside, which they carry)."""
