"""A backend for tests of everything above the backends: nodes that are plain Python objects."""
