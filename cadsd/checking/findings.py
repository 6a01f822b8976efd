"""One finding of `cadsd validate`: a problem, a warning or a note."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One finding: ``kind`` (e.g. ``decode_error``), ``path`` relative to the root, ``message``."""

    kind: str
    path: str
    message: str
