"""Shared fixtures: tiny CAD-SD folders in the official layout (:mod:`fixtures`), written in
milliseconds."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from fixtures import SMALL_COUNTS, write_layout

# Under pytest-xdist (`-n auto`, see pyproject.toml), the cores are shared out between the
# workers, so two workers' torch threads never fight over one core.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    torch.set_num_threads(max(1, (os.cpu_count() or 1)
                              // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


@pytest.fixture
def make_layout() -> Callable[..., Path]:
    """Factory: ``make_layout(tmp_path, counts=..., size=32, fmt='jpg', masks=False)`` -> root.

    ``counts`` maps ``"split/category"`` (e.g. ``"test/lacking"``) to a number of images; the
    default is :data:`SMALL_COUNTS`. Pass the same dict as ``expect=`` to ``cadsd.checking.validate``.
    """
    return write_layout


@pytest.fixture
def small_counts() -> dict[str, int]:
    """A fresh copy of :data:`SMALL_COUNTS` (usable directly as ``validate(..., expect=...)``)."""
    return dict(SMALL_COUNTS)


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``CADSD_CACHE`` in this test's temp folder: nothing read from or written to the user's
    cache (datasets, the synthetic set). Files that need it for every test say
    ``pytestmark = pytest.mark.usefixtures("private_cache")``."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CADSD_CACHE", str(cache))
    return cache

