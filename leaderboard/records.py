"""Result records: one schema-versioned JSON file per (dataset, method, seed) cell.

A record is written only when its cell is complete (fitted, scored, measured, or failed with its
error), through a temp file and ``os.replace``: an interrupted run leaves finished records and
nothing half-written, so a rerun resumes where it stopped. Tables and plots read only these files
(and the per-cell anomaly-map samples written beside them).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from cadsd.files import atomic_write_text
from leaderboard.errors import BenchError

SCHEMA = "cadsd-bench/result"
SCHEMA_VERSION = 1
RECORDS_DIR = "records"
MAPS_DIR = "maps"
MODELS_DIR = "models"


def cell_id(dataset: str, method: str, seed: int, shots: int | None = None) -> str:
    """File-name-safe id of a cell, e.g. ``synthetic__patchcore__seed0`` (few-shot cells:
    ``synthetic__patchcore__4shot__seed0``)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset)
    k = "" if shots is None else f"__{shots}shot"
    return f"{safe}__{method}{k}__seed{seed}"


def record_path(run_dir: Path, cid: str) -> Path:
    """Where the record of cell ``cid`` lives."""
    return Path(run_dir) / RECORDS_DIR / f"{cid}.json"


def write_record(run_dir: Path, record: dict[str, Any]) -> Path:
    """Stamp the schema and write ``record`` atomically; NaN/inf are refused (not valid JSON)."""
    record = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **record}
    text = json.dumps(record, indent=1, allow_nan=False, sort_keys=False) + "\n"
    return atomic_write_text(record_path(run_dir, record["cell"]["id"]), text)


def read_record(path: Path) -> dict[str, Any]:
    """Load one record; a foreign or newer-schema file raises :class:`BenchError`."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise BenchError(f"cannot read result record {path}: {err}") from None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise BenchError(f"{path} is not a cadsd-bench result record")
    if record.get("schema_version") != SCHEMA_VERSION:
        raise BenchError(
            f"{path} has schema version {record.get('schema_version')}, this cadsd-bench reads "
            f"version {SCHEMA_VERSION}; rerun the cell with `bench run --force`"
        )
    return record


def load_records(run_dir: Path) -> list[dict[str, Any]]:
    """All records of a run folder, sorted by (dataset, method order of the run, seed)."""
    folder = Path(run_dir) / RECORDS_DIR
    if not folder.is_dir():
        raise BenchError(
            f"{run_dir} has no {RECORDS_DIR}/ folder: it is not a `bench run` output folder"
        )
    records = [read_record(p) for p in sorted(folder.glob("*.json"))]
    return sorted(records, key=lambda r: (r["dataset"]["name"], r["cell"].get("shots") or 0,
                                          r["cell"]["order"], r["method"]["name"], r["seed"]))
