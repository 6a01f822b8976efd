"""``python -m leaderboard.perf``: see :mod:`leaderboard.perf.run`."""

from leaderboard.perf.run import main

raise SystemExit(main())
