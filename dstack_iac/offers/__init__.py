"""Offers: what can run a task, where, and at what price."""
