"""Result records on disk: one schema-versioned JSON file per (dataset, method, seed) cell.

A record is written only when its cell is complete (fitted, scored, measured, or failed with its
error), through a temp file and ``os.replace``: an interrupted run leaves finished records and
nothing half-written, so a rerun resumes where it stopped. Tables and plots read only these files
(and the per-cell anomaly-map samples written beside them). Older schema versions are migrated
on reading; a newer or foreign file is refused with a message that says what to do.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from cadsd.files import atomic_write_text
from leaderboard.errors import BenchError
from leaderboard.records.schema import SCHEMA, SCHEMA_VERSION, Record, from_json_dict

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


def write_record(run_dir: Path, record: Record) -> Path:
    """Write ``record`` atomically; NaN/inf are refused (not valid JSON)."""
    text = json.dumps(record.to_json_dict(), indent=1, allow_nan=False) + "\n"
    return atomic_write_text(record_path(run_dir, record.cell.id), text)


def _v1_to_v2(old: dict[str, Any]) -> dict[str, Any]:
    """Version 1 (stops 1-10) -> 2: see :mod:`leaderboard.records.schema`."""
    r = copy.deepcopy(old)
    cell = r["cell"]
    cell.setdefault("seed", r.get("seed"))
    r.pop("seed", None)
    shots = r.pop("shots", None)
    cell["train_files"] = shots.get("train_files") if shots else None
    if "class" in r.get("method", {}):
        r["method"]["target"] = r["method"].pop("class")
    if r.get("input"):
        r["input"].pop("description", None)
    if r.get("timing"):
        r["timing"].pop("decode_ms_per_image", None)
    image = (r.get("metrics") or {}).get("image_auroc")
    if image:
        entries = [image["all"], *(e for part in ("category", "group", "average")
                                   for e in image.get(part, {}).values())]
        for e in entries:
            low, high = e["ci"]
            e["ci"] = {"low": low, "high": high}
    r["schema_version"] = 2
    return r


def _v2_to_v3(old: dict[str, Any]) -> dict[str, Any]:
    """Version 2 -> 3: only fields with defaults were added (every v2 method is built in)."""
    return {**old, "schema_version": 3}


MIGRATIONS = {1: _v1_to_v2, 2: _v2_to_v3}


def parse_record(data: Any, where: str = "record") -> Record:
    """A record from its JSON content, migrating older versions."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise BenchError(f"{where} is not a cadsd-bench result record")
    version = data.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION or (
            version < SCHEMA_VERSION and version not in MIGRATIONS):
        raise BenchError(
            f"{where} has schema version {version}; this cadsd-bench reads versions "
            f"{min(MIGRATIONS)}-{SCHEMA_VERSION}: upgrade cadsd-bench, or rerun the cell with "
            "`bench run --force`"
        )
    try:
        while data["schema_version"] < SCHEMA_VERSION:
            data = MIGRATIONS[data["schema_version"]](data)
        return from_json_dict(data)
    except (KeyError, TypeError, ValueError) as err:
        raise BenchError(f"{where} is a malformed version-{version} record ({err}); rerun the "
                         "cell with `bench run --force`") from None


def read_record(path: Path) -> Record:
    """Load one record; a foreign, malformed or newer-schema file raises :class:`BenchError`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise BenchError(f"cannot read result record {path}: {err}") from None
    return parse_record(data, str(path))


def load_records(run_dir: Path) -> list[Record]:
    """All records of a run folder, sorted by (dataset, K, method order of the run, seed)."""
    folder = Path(run_dir) / RECORDS_DIR
    if not folder.is_dir():
        raise BenchError(
            f"{run_dir} has no {RECORDS_DIR}/ folder: it is not a `bench run` output folder"
        )
    records = [read_record(p) for p in sorted(folder.glob("*.json"))]
    return sorted(records, key=lambda r: (r.dataset.name, r.cell.shots or 0, r.cell.order,
                                          r.method.name, r.cell.seed))
