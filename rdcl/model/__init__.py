"""rdcl.model."""
