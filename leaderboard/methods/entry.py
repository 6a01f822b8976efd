"""One method a run can name: :class:`MethodEntry`, and where methods come from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: origins: the paper's methods and baselines, this project's own, and outside methods
BUILTIN, PROJECT, IMPORT_PATH, ENTRY_POINT = "builtin", "project", "import path", "entry point"
OUTSIDE = (IMPORT_PATH, ENTRY_POINT)
#: a model of anomalib's zoo run through the bridge (``--methods anomalib:NAME``)
ANOMALIB = "anomalib"


@dataclass(frozen=True)
class MethodEntry:
    """One method a run can name.

    ``target`` is its class as ``module:Class`` (None: planned, not implemented yet); the
    class says what the method is (``description``, ``paper``). A *variant* is a registered
    method's class with some settings fixed (``preset``), e.g. an ablation of the paper: it runs
    as its own leaderboard row, and ``description`` says what the variant changes. ``origin``
    is one of :data:`BUILTIN`, :data:`PROJECT` (a method of this project's own, not from any
    paper) or, for outside methods, :data:`IMPORT_PATH` / :data:`ENTRY_POINT` with their
    provenance (distribution, version, source file and its sha256).
    """

    name: str
    target: str | None
    description: str = ""
    paper: str = ""
    preset: Mapping[str, Any] = field(default_factory=dict)
    variant_of: str | None = None
    suite: str | None = None  # the suite it belongs to (``bench run --suite NAME``)
    origin: str = BUILTIN
    distribution: str | None = None
    version: str | None = None
    source_file: str | None = None
    source_sha256: str | None = None

    @property
    def implemented(self) -> bool:
        return self.target is not None

    @property
    def outside(self) -> bool:
        """From outside this repository (an import path or an entry point)."""
        return self.origin in OUTSIDE
