"""User-facing errors of the benchmark harness (an unknown method, an unusable run folder)."""

from __future__ import annotations


class BenchError(Exception):
    """A problem the user can fix; ``str(err)`` is the whole message, naming the fix."""

    exit_code: int = 1
