"""The embedded `local` backend: nodes are real sshd servers on loopback addresses of this machine."""
