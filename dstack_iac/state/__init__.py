"""What this machine remembers between commands: run and volume records, and its processes."""
