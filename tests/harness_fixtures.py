"""Helpers for the harness tests: tiny datasets decoded for the runner, misbehaving methods.

``write_layout`` is :mod:`factories`' layout writer, re-exported for module-scoped fixtures.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from factories import write_layout  # noqa: F401 - re-exported

from baselines.base import Train
from baselines.training import Progress
from leaderboard.dummy import PixelStats
from leaderboard.registry import METHODS, MethodEntry
from leaderboard.running import choices, data
from leaderboard.running.plan import MethodPlan, plan_methods
from leaderboard.running.runner import RunOptions

#: a small set in the official layout, with masks, big enough for every metric
COUNTS = {
    "train/good": 6,
    "test/good": 4,
    "test/scratch": 2,
    "test/paint": 2,
    "test/over_coupling": 2,
    "test/lacking": 2,
}


class Exploding(PixelStats):
    """Fails during fit, as a broken method would."""

    name = "exploding"

    def fit(self, train: Train, progress: Progress | None = None) -> Exploding:
        raise RuntimeError("boom: this method always fails")


class Interrupted(PixelStats):
    """Simulates Ctrl-C in the middle of fitting."""

    name = "interrupted"

    def fit(self, train: Train, progress: Progress | None = None) -> Interrupted:
        raise KeyboardInterrupt


def registry_with(**extra: str) -> dict[str, MethodEntry]:
    """The real registry plus test-only methods ``name="module:Class"``."""
    reg = dict(METHODS)
    for name, target in extra.items():
        reg[name] = MethodEntry(name, target, f"test method {name}", hidden=True)
    return reg


def load(root: Path, kind: str = "custom") -> data.BenchData:
    """Decode a dataset folder the way `bench run` does."""
    resolved = data.resolve(str(root), echo=lambda line: None)
    if kind != resolved.kind:
        resolved = data.Resolved(resolved.name, kind, resolved.source)
    return data.load(resolved)


def plans(methods: list[str], registry: Mapping[str, MethodEntry] | None = None,
          params: tuple[str, ...] = (), budget: str = "smoke",
          backbone: str = "mobilenet_v2") -> list[MethodPlan]:
    """Method plans as `bench run` makes them (``--param`` items, budget, named backbone)."""
    reg = registry or METHODS
    made = plan_methods(methods, reg, params, budget)
    return choices.resolve_backbones(backbone, "imagenet", made, echo=lambda line: None)


def options(out: Path, methods: list[str], registry: Mapping[str, MethodEntry] | None = None,
            params: tuple[str, ...] = (), budget: str = "smoke", backbone: str = "mobilenet_v2",
            **kw: Any) -> RunOptions:
    """Fast run options for tests (few bootstrap resamples, tiny warm-up, smoke budget)."""
    base: dict[str, Any] = {"seeds": [0], "device": "cpu", "out": out, "resamples": 200,
                            "warmup": 1, "budget": budget}
    base.update(kw)
    return RunOptions(plans=plans(methods, registry, params, budget, backbone), **base)


class DiesOnce(PixelStats):
    """Kills its own process during fit while ``marker`` exists (removing it first): a worker
    lost mid-cell, as a crashed node or an OOM kill would lose it."""

    name = "dying"

    def __init__(self, *, marker: str = "", **kw: Any) -> None:
        self.marker = marker
        super().__init__(**kw)

    def fit(self, train: Train, progress: Progress | None = None) -> DiesOnce:
        import os

        if self.marker and Path(self.marker).exists():
            Path(self.marker).unlink()
            os._exit(1)
        return super().fit(train, progress)
