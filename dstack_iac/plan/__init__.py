"""Planning: from a validated task and the backends' offers to a `RunPlan`. Pure: backends and
volume records are handed in."""
