"""The performance benchmark (``python -m leaderboard.perf``): each (method, backbone) cell in
its own process, timed through the methods' public surfaces, with ratios against targets.

* :mod:`.run`: the command (cells in subprocesses, the printed report);
* :mod:`.cell`: one cell's measurements;
* :mod:`.targets`: the PASS/MISS ratios.
"""

from leaderboard.perf.run import main

__all__ = ["main"]
