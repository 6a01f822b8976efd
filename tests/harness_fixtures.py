"""Helpers for the harness tests: tiny datasets decoded for the runner, misbehaving methods.

``write_layout`` is conftest's ``make_layout`` factory, re-exported for module-scoped fixtures.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from conftest import _write_layout as write_layout  # noqa: F401 - re-exported

from leaderboard import data
from leaderboard.dummy import PixelStats
from leaderboard.registry import METHODS, MethodEntry
from leaderboard.runner import RunOptions

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

    def fit(self, batches: Iterable[torch.Tensor]) -> Exploding:
        raise RuntimeError("boom: this method always fails")


class Interrupted(PixelStats):
    """Simulates Ctrl-C in the middle of fitting."""

    name = "interrupted"

    def fit(self, batches: Iterable[torch.Tensor]) -> Interrupted:
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


def options(out: Path, methods: list[str], **kw: Any) -> RunOptions:
    """Fast run options for tests (few bootstrap resamples, tiny warm-up)."""
    base: dict[str, Any] = {"seeds": [0], "backbone": "mobilenet_v2", "weights": "imagenet",
                                "device": "cpu", "out": out, "resamples": 200, "warmup": 1}
    base.update(kw)
    return RunOptions(methods=methods, **base)
