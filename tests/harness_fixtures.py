"""Helpers for the harness tests: tiny datasets decoded for the runner, misbehaving methods.

The harness's test methods are outside methods, named by import path as a user's own are
(:data:`DUMMY`, :data:`DUMMY_TRAINED` and the misbehaving ones below). ``write_layout`` is
:mod:`factories`' layout writer, re-exported for module-scoped fixtures.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from factories import write_layout  # noqa: F401 - re-exported
from harness_methods import PixelStats

from baselines.base import Detector, Train
from baselines.training import Progress
from leaderboard.methods import METHODS, MethodEntry, resolve
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


#: the harness's test methods, by import path (their names: dummy, dummy_trained, ...)
DUMMY = "harness_methods:PixelStats"
DUMMY_TRAINED = "harness_methods:ToyTrained"
EXPLODING = "harness_fixtures:Exploding"
INTERRUPTED = "harness_fixtures:Interrupted"
DYING = "harness_fixtures:DiesOnce"


def load(root: Path, kind: str = "custom") -> data.BenchData:
    """Decode a dataset folder the way `bench run` does."""
    resolved = data.resolve(str(root), echo=lambda line: None)
    if kind != resolved.kind:
        resolved = data.Resolved(resolved.name, kind, resolved.source)
    return data.load(resolved)


def plans(methods: list[str], registry_: Mapping[str, MethodEntry] | None = None,
          params: tuple[str, ...] = (), budget: str = "smoke",
          backbone: str = "mobilenet_v2") -> list[MethodPlan]:
    """Method plans as `bench run` makes them (``--param`` items, budget, named backbone)."""
    names, reg = resolve(",".join(methods), registry_ or METHODS)
    made = plan_methods(names, reg, params, budget)
    return choices.resolve_backbones(backbone, "imagenet", made, echo=lambda line: None)


def options(out: Path, methods: list[str], registry_: Mapping[str, MethodEntry] | None = None,
            params: tuple[str, ...] = (), budget: str = "smoke", backbone: str = "mobilenet_v2",
            **kw: Any) -> RunOptions:
    """Fast run options for tests (few bootstrap resamples, tiny warm-up, smoke budget)."""
    base: dict[str, Any] = {"seeds": [0], "device": "cpu", "out": out, "resamples": 200,
                            "warmup": 1, "budget": budget}
    base.update(kw)
    return RunOptions(plans=plans(methods, registry_, params, budget, backbone), **base)


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


class NoPredict(Detector):
    """Defines fit but not predict: refused before the run."""

    def fit(self, train: Train, progress: Progress | None = None) -> NoPredict:
        return self


class Impostor(PixelStats):
    """An outside method that takes a built-in method's name: refused before the run."""

    name = "patchcore"
