"""The `gcp` backend: Compute Engine instances from the bundled catalog, declared with pulumi-gcp."""
