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
import os
import re
from datetime import datetime, timezone
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


def _v3_to_v4(old: dict[str, Any]) -> dict[str, Any]:
    """Version 3 -> 4: only fields with defaults were added (no sPRO, no leaked images)."""
    return {**old, "schema_version": 4}


MIGRATIONS = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4}


class BadRecord(BenchError):
    """A file in ``records/`` that cannot be used: unreadable, foreign, malformed, of a newer
    schema, or with per-image scores that disagree with its metrics. ``reason`` says which."""

    def __init__(self, where: str, reason: str, fix: str = "") -> None:
        self.where, self.reason = where, reason
        super().__init__(f"{where} {reason}" + (f"; {fix}" if fix else ""))


FORCE_FIX = ("`bench run --force` moves it aside (kept, renamed) and recomputes its cell, "
             "or pass a new --out")


def check_scores(record: Record, where: str = "record") -> None:
    """Refuse a finished record whose per-image scores do not give its stored metrics (an
    edited or truncated file): the overall AUROC and each anomaly type's, recomputed."""
    from sklearn.metrics import roc_auc_score

    m = record.metrics.image_auroc if record.ok and record.metrics else None
    if m is None:
        return
    labels = [s.label for s in record.scores]
    scores = [s.score for s in record.scores]
    n_anomaly = sum(labels)
    if (len(labels) - n_anomaly, n_anomaly) != (m.all.n_normal, m.all.n_anomaly):
        raise BadRecord(where, f"holds {len(labels) - n_anomaly} normal and {n_anomaly} "
                               f"anomalous per-image scores, but its metrics were computed on "
                               f"{m.all.n_normal} and {m.all.n_anomaly}: the file was edited or "
                               "truncated", FORCE_FIX)
    checks = {"all": (labels, scores, m.all.auroc)}
    for cat, entry in m.category.items():
        sel = [i for i, s in enumerate(record.scores) if s.label == 0 or s.category == cat]
        checks[cat] = ([labels[i] for i in sel], [scores[i] for i in sel], entry.auroc)
    for what, (y, s, stored) in checks.items():
        found = float(roc_auc_score(y, s)) if 0 < sum(y) < len(y) else float("nan")
        if not abs(found - stored) <= 1e-9:
            raise BadRecord(where, f"has per-image scores that give {what} AUROC {found:.6f}, "
                                   f"but its metrics say {stored:.6f}: the file was edited or "
                                   "truncated", FORCE_FIX)


def check_cell(record: Record, name: str | None, where: str = "record") -> None:
    """Refuse a record that is not the cell its file name says, or whose cell disagrees with
    its own method, dataset, seed or K (an edited or misplaced file): a table would otherwise
    file it under the wrong row, and a run would take it for another cell."""
    c = record.cell
    own = cell_id(record.dataset.name, record.method.name, c.seed, c.shots)
    if (c.method, c.dataset) != (record.method.name, record.dataset.name) or c.id != own:
        raise BadRecord(where, f"says it is cell {c.id!r} but holds method "
                               f"{record.method.name!r}, dataset {record.dataset.name!r}, seed "
                               f"{c.seed}" + (f", K {c.shots}" if c.shots is not None else "")
                               + f" (cell {own!r}): the file was edited", FORCE_FIX)
    if name is not None and name != c.id:
        raise BadRecord(where, f"holds cell {c.id!r} but is named {name!r}.json: a record "
                               "must be in its own cell's file (renamed or copied?)", FORCE_FIX)


def parse_record(data: Any, where: str = "record", verify: bool = True) -> Record:
    """A record from its JSON content, migrating older versions; ``verify``: its scores must
    give its metrics (:func:`check_scores`)."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise BadRecord(where, "is not a cadsd-bench result record", FORCE_FIX)
    version = data.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION or (
            version < SCHEMA_VERSION and version not in MIGRATIONS):
        raise BadRecord(
            where, f"has schema version {version}; this cadsd-bench reads versions "
                   f"{min(MIGRATIONS)}-{SCHEMA_VERSION}",
            "upgrade cadsd-bench (pip install -U cadsd-bench), or recompute the cell with "
            "`bench run --force`")
    try:
        while data["schema_version"] < SCHEMA_VERSION:
            data = MIGRATIONS[data["schema_version"]](data)
        record = from_json_dict(data)
    except (KeyError, TypeError, ValueError) as err:
        raise BadRecord(where, f"is a malformed version-{version} record ({err})",
                        FORCE_FIX) from None
    if verify:
        check_scores(record, where)
    return record


def read_record(path: Path, verify: bool = True, where: str | None = None) -> Record:
    """Load one record; an unreadable, foreign, malformed, newer-schema or tampered file, or
    one that is not the cell its name says (:func:`check_cell`), raises :class:`BadRecord`
    naming it (as ``where``, default its path)."""
    where = where or str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise BadRecord(where, f"cannot be read as JSON ({err})", FORCE_FIX) from None
    record = parse_record(data, where, verify)
    check_cell(record, Path(path).stem, where)
    return record


def _folder(run_dir: Path) -> Path:
    folder = Path(run_dir) / RECORDS_DIR
    if not folder.is_dir():
        raise BenchError(
            f"{run_dir} has no {RECORDS_DIR}/ folder: it is not a `bench run` output folder"
        )
    return folder


def scan_records(run_dir: Path, verify: bool = True, name: str | None = None
                 ) -> tuple[list[Record], list[BadRecord]]:
    """The usable records of a run folder, sorted by (dataset, K, method order of the run,
    seed), and a :class:`BadRecord` for each file that cannot be used (``name``: what to call
    the folder in those messages, e.g. ``hf:ORG/NAME`` for a downloaded copy)."""
    records, bad = [], []
    for path in sorted(_folder(run_dir).glob("*.json")):
        where = f"{name}/{RECORDS_DIR}/{path.name}" if name else None
        try:
            records.append(read_record(path, verify, where))
        except BadRecord as err:
            bad.append(err)
    records.sort(key=lambda r: (r.dataset.name, r.cell.shots or 0, r.cell.order, r.method.name,
                                r.cell.seed))
    return records, bad


def load_records(run_dir: Path, verify: bool = True) -> list[Record]:
    """All records of a run folder (sorted as :func:`scan_records`); the first file that
    cannot be used raises its :class:`BadRecord`."""
    records, bad = scan_records(run_dir, verify)
    if bad:
        raise bad[0]
    return records


def set_aside_bad_records(run_dir: Path) -> list[tuple[Path, Path, str]]:
    """Rename every unusable record of ``run_dir`` to ``<name>.unusable-<time>`` (kept, no
    longer read), so its cell is recomputed; returns ``(path, new path, reason)`` each."""
    folder = Path(run_dir) / RECORDS_DIR
    if not folder.is_dir():
        return []
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    moved = []
    for path in sorted(folder.glob("*.json")):
        try:
            read_record(path)
        except BadRecord as err:
            kept = path.with_name(f"{path.name}.unusable-{stamp}")
            os.replace(path, kept)
            moved.append((path, kept, err.reason))
    return moved
