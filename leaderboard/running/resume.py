"""Which of a run's cells are finished: the run folder's records, checked against this run.

A run folder holds one dataset (or one benchmark's categories) and one backbone per method, so
its tables never mix them: a finished record of other data, or of one of this run's methods on
another backbone, is an error (naming ``--out``, and ``--force`` when it is one of this run's
cells, which ``--force`` replaces), and so is one of this run's cells computed with another
budget, other method settings or other code. Otherwise a finished cell is kept unless
``--force``; a failed one is retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from leaderboard.errors import BenchError
from leaderboard.records import RECORDS_DIR, Record, read_record
from leaderboard.running.cell import CellSpec
from leaderboard.running.data import BenchData
from leaderboard.running.plan import MethodPlan, describe_plan


def _same_setup(record: Record, data: BenchData,
                backbones: dict[str, tuple[str | None, str | None]], datasets: Sequence[str]
                ) -> bool:
    """Same data, and the same backbone for the same method."""
    name = record.dataset.name
    if name == data.name:
        if record.dataset.fingerprint != data.fingerprint:
            return False
    elif name not in datasets:
        return False
    if record.method.name not in backbones:
        return True
    return (record.backbone.name, record.backbone.weights) == backbones[record.method.name]


def _check_same_method(path: Path, record: Record, planned: MethodPlan) -> None:
    """A finished cell of this run must have been computed by this run's code and settings."""
    now = describe_plan(planned)
    if record.method.source_sha256 != now.source_sha256:
        raise BenchError(
            f"{path} was computed with another version of {record.method.name}'s code "
            f"({record.method.source_file} sha256 {str(record.method.source_sha256)[:12]}, "
            f"now {str(now.source_sha256)[:12]}); pass --force to recompute it with this "
            "code, or a new --out"
        )
    if record.method.distribution_version != now.distribution_version:
        raise BenchError(
            f"{path} was computed with {record.method.distribution} "
            f"{record.method.distribution_version} and this run has "
            f"{now.distribution_version}: cells of two versions are never mixed; pass --force "
            "to recompute it, or a new --out"
        )
    if record.method.settings_key() != now.settings_key():
        raise BenchError(
            f"{path} was computed with another budget or other method settings (budget "
            f"{record.method.budget}, {record.method.overrides}); pass --force to recompute "
            "it with these, or a new --out"
        )


def finished_cells(data: BenchData, specs: Sequence[CellSpec], out: Path, force: bool,
                   datasets: Sequence[str] = ()) -> dict[str, Record]:
    """The finished records of ``specs`` in the run folder ``out`` (by cell id), none when
    ``force``; raises :class:`BenchError` for a folder of other results (see the module)."""
    mine = {s.id: s.plan for s in specs}
    backbones = {s.plan.name: (s.plan.backbone, s.plan.weights) for s in specs}
    done: dict[str, Record] = {}
    folder = Path(out) / RECORDS_DIR
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        record = read_record(path)
        if not record.ok:
            continue
        cid = record.cell.id
        if cid in mine and force:
            continue
        if not _same_setup(record, data, backbones, datasets):
            hint = " or --force to replace it" if cid in mine else ""
            raise BenchError(
                f"{out} holds results of other data or another backbone ({path.name}: "
                f"dataset {record.dataset.name} {record.dataset.fingerprint[:12]}, "
                f"backbone {record.backbone.name}); pass a new --out{hint}"
            )
        if cid in mine:
            _check_same_method(path, record, mine[cid])
            done[cid] = record
    return done
