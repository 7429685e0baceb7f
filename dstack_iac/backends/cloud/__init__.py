"""What AWS and GCP share: the cluster contract, node setup script, credential checks."""
