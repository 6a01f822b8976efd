"""A module that fails on import, as a user's method module with a bug would (the harness must
name the module and the error, exit 2, and write nothing)."""

RATIO = 1 / 0
