"""Pure metric functions of per-image scores and maps: no I/O, no records."""
