"""Timing of the paired comparisons at CAD-SD's size (a script, not a test).

7 methods x 5 seeds on 376 images (210 normal; scratch 41, paint 41, over-coupling 44,
lacking 40), every method against one reference, 2,000 resamples, all subsets (all, 4 types,
2 groups, 2 group averages), then the summary over seeds::

    python -m leaderboard.scoring.time_paired [--resamples 2000]

The target is under 5 s on the 2-core development machine; a timing taken while other work
holds the cores is not a result (the line prints the load).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from leaderboard.scoring.paired import over_seeds, paired_differences
from leaderboard.scoring.resampling import draw_for

COUNTS = {"good": 210, "scratch": 41, "paint": 41, "over_coupling": 44, "lacking": 40}
GROUP = {"good": "normal", "scratch": "local", "paint": "local", "over_coupling": "co_occurrence",
         "lacking": "co_occurrence"}


def run(resamples: int, methods: int, seeds: int, shared: bool) -> tuple[float, float]:
    """(wall, CPU) seconds for every (method, seed) against the reference, the bootstrap draw
    made once (``shared``, :func:`draw_for`) or inside every call."""
    cats = [c for c, n in COUNTS.items() for _ in range(n)]
    groups = [GROUP[c] for c in cats]
    labels = [int(c != "good") for c in cats]
    files = [f"test/{c}/{i:03d}.jpg" for i, c in enumerate(cats)]
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(methods, seeds, len(cats))) + np.array(labels) * 1.0
    start, cpu = time.perf_counter(), time.process_time()
    draw = draw_for(labels, cats, groups, resamples, seed=0) if shared else None
    for m in range(1, methods):
        per_seed = [paired_differences(scores[m, s], scores[0, s], labels, cats, groups,
                                       files_a=files, files_b=files, resamples=resamples, seed=0,
                                       draw=draw)
                    for s in range(seeds)]
        over_seeds(per_seed)
    return time.perf_counter() - start, time.process_time() - cpu


def main(resamples: int = 2000, methods: int = 7, seeds: int = 5) -> None:
    n = (methods - 1) * seeds
    run(100, 2, 1, shared=True)  # warm-up: imports, BLAS threads
    for shared in (True, False):
        spent, cpu = run(resamples, methods, seeds, shared)
        how = "one draw shared by all calls" if shared else "a draw inside every call"
        print(f"{methods - 1} methods x {seeds} seeds against one reference, "
              f"{sum(COUNTS.values())} images, {resamples} resamples, {how}: {spent:.2f} s "
              f"wall, {cpu:.2f} s CPU ({spent / n * 1e3:.0f} ms per comparison); load "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=2000)
    main(parser.parse_args().resamples)
