"""The performance targets ``python -m leaderboard.perf`` marks PASS or MISS: ratios (lower is
better) read from the cells of one run, each with the issue that set it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    """One PASS/MISS line: ``value(cells, backbone)`` compared with ``limit`` (lower is better)."""

    label: str
    methods: tuple[str, ...]  # the cells it reads (the first one names the row)
    value: Callable[[dict[str, dict[str, Any]]], float | None]
    limit: float
    backbones: tuple[str, ...] = ()  # empty: every backbone


def _get(cells: dict[str, dict[str, Any]], method: str, *keys: str) -> float | None:
    cell: Any = cells.get(method)
    for key in keys:
        if not isinstance(cell, dict) or key not in cell:
            return None
        cell = cell[key]
    return float(cell)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def targets() -> list[Target]:
    """Every target, in the order the report prints them."""
    out: list[Target] = []
    for m in ("patchcore", "sa_patchcore"):
        out += [
            Target(f"{m}: coreset seconds", (m,), lambda c, m=m: _get(c, m, "fit", "coreset"), 10.0),
            Target(
                f"{m}: coreset share of fit", (m,),
                lambda c, m=m: _ratio(_get(c, m, "fit", "coreset"), _get(c, m, "fit", "wall")), 0.10,
            ),
            Target(
                f"{m}: fit / backbone forward", (m,),
                lambda c, m=m: _ratio(_get(c, m, "fit", "wall"), _get(c, m, "forward_train_s")), 1.3,
            ),
            Target(
                f"{m}: predict b1 / (forward + search)", (m,),
                lambda c, m=m: _get(c, m, "predict_over_reference"), 1.25, ("wide_resnet50_2",),
            ),
            Target(
                f"{m}: peak RSS GB during fit", (m,),
                lambda c, m=m: _get(c, m, "rss_fit_gb"), 4.0, ("wide_resnet50_2",),
            ),
        ]
    out.append(
        Target(
            "sa_patchcore / patchcore latency", ("sa_patchcore", "patchcore"),
            lambda c: _get(c, "sa_patchcore", "paired", "ratio"), 1.1, ("wide_resnet50_2",),
        )
    )
    out.append(  # issue 6: PaDiM at paper settings fits in 6 GB (the reference code: 16 GB)
        Target("padim: peak RSS GB during fit", ("padim",),
               lambda c: _get(c, "padim", "rss_fit_gb"), 6.0, ("wide_resnet50_2",))
    )
    out += [  # issue 24: the dual method beside SA-PatchCore, in one run
        Target("sa_patchcore_dual: b1 latency / sa_patchcore's (paired)", ("sa_patchcore_dual",),
               lambda c: _get(c, "sa_patchcore_dual", "paired", "ratio"), 1.25),
        Target("sa_patchcore_dual: fit / sa_patchcore's fit", ("sa_patchcore_dual", "sa_patchcore"),
               lambda c: _ratio(_get(c, "sa_patchcore_dual", "fit", "wall"),
                                _get(c, "sa_patchcore", "fit", "wall")), 3.0),
    ]
    for m in ("cs_flow", "patchsvdd"):  # issues 12 and 13, at the quick budget
        out += [
            Target(f"{m}: train step / (FLOPs / GEMM rate)", (m,),
                   lambda c, m=m: _get(c, m, "train_step", "step_over_gemm"), 1.5),
            Target(f"{m}: peak RSS GB during fit", (m,), lambda c, m=m: _get(c, m, "rss_fit_gb"), 6.0),
        ]
    out += [
        Target("cs_flow: backbone passes per training image", ("cs_flow",),  # 3 scales, once
               lambda c: _ratio(_get(c, "cs_flow", "backbone_images_per_train_image"), 3.0), 1.0),
        Target("patchsvdd: predict b1 median, seconds", ("patchsvdd",),
               lambda c: _ratio(_get(c, "patchsvdd", "latency_ms", "median"), 1000.0), 0.25),
        Target("patchsvdd: 1 - recall of the K=32 search", ("patchsvdd",),
               lambda c: _ratio(1.0 - (_get(c, "patchsvdd", "recall32_test", "recall") or 0.0), 1.0),
               0.01),
    ]
    return out
