"""The ssh backend: SSH fleets (`type: fleet`, `dstack-iac fleet ...`) and runs on their hosts."""
