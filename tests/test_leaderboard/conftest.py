"""Fixtures shared by the harness's tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures import COUNTS, write_layout


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A tiny CAD-SD (``COUNTS``, 40 px, with masks) in this test's temp folder."""
    return write_layout(tmp_path / "data", counts=COUNTS, size=40, masks=True)
