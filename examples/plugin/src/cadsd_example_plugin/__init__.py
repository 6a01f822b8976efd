"""A template package that adds a method to cadsd-bench through an entry point."""

from cadsd_example_plugin.detector import PatchDistance

__all__ = ["PatchDistance"]
