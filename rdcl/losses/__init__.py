"""rdcl.losses."""
