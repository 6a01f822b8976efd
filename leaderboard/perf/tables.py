"""How long the leaderboard's tables take: a run's records fabricated at CAD-SD's size, then
the whole ``leaderboard.md`` (paired differences, what each method catches...) and
``results.csv`` rendered from them, timed (a script, not a test)::

    python -m leaderboard.perf.tables [--methods 7] [--seeds 5]

7 methods x 5 seeds on 376 test images (210 normal; scratch 41, paint 41, over-coupling 44,
lacking 40), 2,000 bootstrap resamples (:data:`leaderboard.reporting.comparisons.RESAMPLES`).
The target (issue 34): under 5 s for the paired table. A timing taken while other work holds
the cores is not a result: the line prints the load.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from leaderboard.records.schema import (
    Cell,
    DatasetInfo,
    Environment,
    Latency,
    Memory,
    MethodInfo,
    Metrics,
    ModelInfo,
    Record,
    Score,
    Throughput,
    Timing,
)
from leaderboard.scoring.auroc import image_metrics

COUNTS = {"good": 210, "scratch": 41, "paint": 41, "over_coupling": 44, "lacking": 40}
GROUP = {"good": "normal", "scratch": "local", "paint": "local", "over_coupling": "co_occurrence",
         "lacking": "co_occurrence"}


def fabricated(methods: int, seeds: int, resamples: int = 200) -> list[Record]:
    """Records of ``methods`` x ``seeds`` cells on a CAD-SD-sized test set, with seeded
    scores (method m separates anomalies by 0.3 m standard deviations)."""
    cats = [c for c, n in COUNTS.items() for _ in range(n)]
    labels = [int(c != "good") for c in cats]
    files = [f"test/{c}/{i:03d}.jpg" for i, c in enumerate(cats)]
    rng = np.random.default_rng(0)
    out = []
    for m in range(methods):
        for seed in range(seeds):
            s = rng.normal(size=len(cats)) + 0.3 * m * np.array(labels)
            name = f"method{m}"
            out.append(Record(
                cell=Cell(id=f"synthetic__{name}__seed{seed}", dataset="synthetic", method=name,
                          seed=seed, order=m),
                method=MethodInfo(name=name, target=f"pkg:{name}"),
                dataset=DatasetInfo(name="synthetic", kind="synthetic", fingerprint="f" * 64,
                                    counts={f"test/{c}": n for c, n in COUNTS.items()}),
                environment=Environment(device="cpu", finished_at="2026-01-01T00:00:00+00:00"),
                status="ok",
                timing=Timing(protocol="fabricated", fit_s=1.0,
                              latency_ms=Latency(mean=1, median=1, p95=1, min=1, n=len(cats)),
                              throughput=Throughput(batch=32, images_per_s=1.0,
                                                    batch_consistency_max_abs=0.0)),
                memory=Memory(peak_rss_mb=1, rss_before_mb=1, peak_rss_source="fabricated",
                              load_avg_before=[0, 0, 0], load_avg_after=[0, 0, 0],
                              other_cpu_cores=0.0),
                model=ModelInfo(),
                metrics=Metrics(image_auroc=image_metrics(s, labels, cats,
                                                          [GROUP[c] for c in cats],
                                                          resamples=resamples)),
                scores=[Score(file_name=f, category=c, group=GROUP[c], label=y, score=float(v))
                        for f, c, y, v in zip(files, cats, labels, s)],
            ))
    return out


def main(argv: list[str] | None = None) -> None:
    from leaderboard.reporting.cells import by_method
    from leaderboard.reporting.comparisons import RESAMPLES, Draws, paired_table
    from leaderboard.reporting.report import render_markdown
    from leaderboard.reporting.results_csv import render_csv

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", type=int, default=7)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    records = fabricated(args.methods, args.seeds)
    load = os.getloadavg()[0]
    timings = {}
    start = time.perf_counter()
    paired_table(by_method(records), None, Draws())
    timings["paired table"] = time.perf_counter() - start
    draws = Draws()
    start = time.perf_counter()
    render_markdown(records, draws=draws)
    timings["whole leaderboard.md"] = time.perf_counter() - start
    start = time.perf_counter()
    render_csv(records, draws)
    timings["results.csv after it (operating points cached)"] = time.perf_counter() - start
    print(f"{args.methods} methods x {args.seeds} seeds x {sum(COUNTS.values())} images, "
          f"{RESAMPLES} resamples; load {load:.1f} on {os.cpu_count()} cores")
    for what, seconds in timings.items():
        print(f"  {what}: {seconds:.2f} s")


if __name__ == "__main__":
    main()
