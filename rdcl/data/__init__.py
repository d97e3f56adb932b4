"""rdcl.data."""
