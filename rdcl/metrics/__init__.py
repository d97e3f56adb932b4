"""rdcl.metrics."""
