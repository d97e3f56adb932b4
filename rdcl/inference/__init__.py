"""rdcl.inference."""
