"""The only code that names a backend: one package per backend behind the `Backend` protocol
(model/backend.py), and the registry that maps names to them."""
