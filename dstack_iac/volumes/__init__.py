"""Network volumes: long-lived stacks that outlive runs, and their records."""
