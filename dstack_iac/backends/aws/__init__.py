"""The `aws` backend: EC2 instances from the bundled catalog, declared with pulumi-aws."""
