"""cadsd: get, check, build, synthesise and publish CAD-SD (Ishida et al., IEEE Access 2023).

Light at import: the layout and errors load now; ``load``/``build``/... (which need `datasets`)
and the submodules named in ``_LAZY`` load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from cadsd.errors import CadsdError, DownloadError, LayoutError
from cadsd.format.layout import (
    CATEGORIES,
    CATEGORY_NAMES,
    GROUP_NAMES,
    LABEL_NAMES,
    PAPER_COUNTS,
    Sample,
    index,
    resolve_root,
)

#: Public name -> module that defines it, imported on first attribute access.
_LAZY: dict[str, str] = {
    "load": "cadsd.format.hf",
    "build": "cadsd.format.hf",
    "save": "cadsd.format.hf",
    "features": "cadsd.format.hf",
    "fingerprint": "cadsd.format.hf",
    "ValidationReport": "cadsd.checking.validate",
    "Problem": "cadsd.checking.validate",
}

__all__ = [
    "CATEGORIES",
    "CATEGORY_NAMES",
    "GROUP_NAMES",
    "LABEL_NAMES",
    "PAPER_COUNTS",
    "CadsdError",
    "DownloadError",
    "LayoutError",
    "Problem",
    "Sample",
    "ValidationReport",
    "build",
    "features",
    "fingerprint",
    "index",
    "load",
    "resolve_root",
    "save",
]


def __getattr__(name: str) -> Any:
    """Resolve the lazy exports (``cadsd.load`` is ``cadsd.format.hf.load``) without importing datasets
    or torch when ``cadsd`` itself is imported."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cadsd' has no attribute {name!r}")
