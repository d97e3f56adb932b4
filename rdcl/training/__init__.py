"""rdcl.training."""
