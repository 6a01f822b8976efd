"""`bench push`: publish a run folder as a Hugging Face dataset repository (and, with
``--models``, each saved model as a model repository).

The dataset repo holds every record (``records/*.json``, as written, with absolute local paths
cut to their last component), ``results.parquet`` (one row per cell, no per-image scores),
``plots/`` and ``README.md``: the run's leaderboard under a dataset-card header. Each repo also
gets ``cadsd-bench-push.json``, the list of files this tool wrote there: a re-push updates them
in place, deletes only those of its own files the run no longer has, and never touches a file
someone else added. A push whose files are already on the Hub makes no commit.

The token comes from ``--token``, ``HF_TOKEN`` or the stored login; it goes to the client only
and is scrubbed from every message (as ``cadsd push``).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cadsd.publishing.repo_id import MAX_NAME, describe, repo_id_problem
from leaderboard.errors import BenchError, UsageError
from leaderboard.hub import cards
from leaderboard.records import RECORDS_DIR, Record, parse_record, scan_records
from leaderboard.reporting.plots import PLOT_FILES, PLOTS_DIR
from leaderboard.reporting.public import public_json, public_text
from leaderboard.reporting.report import render_markdown
from leaderboard.reporting.results_csv import results_frame

MANIFEST = "cadsd-bench-push.json"
MANIFEST_FORMAT = "cadsd-bench/push"
MODEL_FILE = "model.safetensors"


@dataclass
class Repo:
    """One repository's files as they will be uploaded (path in repo -> bytes)."""

    repo_id: str
    repo_type: str  # "dataset" or "model"
    files: dict[str, bytes] = field(default_factory=dict)
    status: str = ""  # after a push: created | updated | unchanged; dry run: written
    url: str | None = None


@dataclass
class PushResult:
    repos: list[Repo]
    dry_run_dir: Path | None = None
    warnings: list[str] = field(default_factory=list)


def check_repo_id(repo_id: str, option: str = "--repo-id") -> str:
    """``ORG/NAME`` by the Hub's rule (:func:`cadsd.publishing.repo_id.repo_id_problem`, the
    one shared with `cadsd push`), or a UsageError naming the fix."""
    if repo_id_problem(repo_id) is not None:
        raise UsageError(describe(repo_id, option))
    return repo_id


def split_hf(spec: str, option: str) -> tuple[str, str | None]:
    """``hf:ORG/NAME[@REVISION]`` -> the checked repo id and the revision (None: main)."""
    from cadsd.format.hf import HF_PREFIX

    repo_id, _, revision = spec.removeprefix(HF_PREFIX).partition("@")
    return check_repo_id(repo_id, option), revision or None


def model_repo_id(repo_id: str, record: Record) -> str:
    """The model repo of one cell: ``ORG/NAME-<cell>`` (``--`` and odd characters squeezed).
    A name over the Hub's 96 characters is cut and ends in ``-`` + the first 8 hex digits of
    the sha256 of the full cell id, so cells that differ only in what was cut (the seed, say)
    never share a repo."""
    org, name = repo_id.split("/")
    slug = re.sub(r"[^A-Za-z0-9._]+|__+", "-", f"{name}-{record.cell.id}").strip("-.")
    slug = re.sub(r"-{2,}", "-", re.sub(r"\.{2,}", ".", slug))
    if len(slug) > MAX_NAME:
        tag = hashlib.sha256(record.cell.id.encode()).hexdigest()[:8]
        slug = f"{slug[:MAX_NAME - len(tag) - 1].rstrip('-.')}-{tag}"
    return f"{org}/{slug}"


def _model_repo(repo_id: str, record: Record, taken: dict[str, str]) -> str:
    """:func:`model_repo_id` of ``record``, checked: a UsageError (before anything is written)
    when the Hub would refuse it or another cell (in ``taken``: repo -> cell) already has it,
    as one model would overwrite the other."""
    mid = model_repo_id(repo_id, record)
    if mid in taken:
        raise UsageError(f"--models: cells {taken[mid]} and {record.cell.id} would both be "
                         f"pushed to {mid}; pick a shorter --repo-id")
    taken[mid] = record.cell.id
    return check_repo_id(mid, f"--models: the model repo of {record.cell.id}")


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=1, allow_nan=False) + "\n").encode()


def _parquet(records: list[Record]) -> bytes:
    """``results.csv``'s table as parquet; a column whose cells mix types (a method setting
    that is a number in one record and a string in another) is stored as JSON text."""
    import pandas as pd

    frame = results_frame(records)
    for col in frame.columns[frame.dtypes == object]:
        kinds = {type(v) for v in frame[col] if not pd.isna(v)}
        if len(kinds) > 1:
            frame[col] = [None if pd.isna(v) else json.dumps(v) for v in frame[col]]
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def _public_model(data: bytes) -> bytes:
    """A safetensors file whose header metadata (the detector's settings: a weights file's
    path, say) holds no absolute local path; the tensors' bytes are untouched. The header is a
    little-endian u64 length, then JSON (spaces pad it to 8 bytes), then the data."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    meta = header.get("__metadata__") or {}
    cleaned = {k: public_text(v) for k, v in meta.items()}
    if cleaned == meta:
        return data
    text = json.dumps({**header, "__metadata__": cleaned}, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + size:]


def _public_records(run_dir: Path) -> tuple[list[Record], dict[str, bytes]]:
    """The run's records (every file must be usable) and their public JSON files."""
    records, bad = scan_records(run_dir)
    if bad:
        raise BenchError(f"{len(bad)} record file(s) of {run_dir} cannot be used, so the run is "
                         f"not pushed: {bad[0]}. Fix or recompute them (`bench run --force`) "
                         "first; `bench leaderboard RUN_DIR` lists them all.")
    if not records:
        raise BenchError(f"{run_dir} has no records yet: run `bench run --out {run_dir}` first")
    files, public = {}, []
    for path in sorted((run_dir / RECORDS_DIR).glob("*.json")):
        raw = path.read_bytes()
        data = json.loads(raw)
        cleaned = public_json(data)
        files[f"{RECORDS_DIR}/{path.name}"] = raw if cleaned == data else _json_bytes(cleaned)
        # scan_records verified these scores; the public copy differs in strings only
        public.append(parse_record(cleaned, path.name, verify=False))
    order = {r.cell.id: i for i, r in enumerate(records)}
    public.sort(key=lambda r: order[r.cell.id])
    return public, files


def _manifest(files: dict[str, bytes], **extra: Any) -> bytes:
    return _json_bytes({"format": MANIFEST_FORMAT, "version": 1, **extra,
                        "files": sorted(p for p in files if p != MANIFEST)})


def build(run_dir: str | Path, repo_id: str, *, models: bool = False,
          license: str | None = None, dataset_repo_id: str | None = None
          ) -> tuple[list[Repo], list[str]]:
    """Every repository a push of ``run_dir`` writes (the results dataset first, then one
    model repo per saved model with ``models``), and warnings (cells without a saved model)."""
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise BenchError(f"run folder not found: {run_dir} (written by `bench run --out DIR`)")
    check_repo_id(repo_id)
    if dataset_repo_id:
        check_repo_id(dataset_repo_id, "--dataset-repo-id")
    records, files = _public_records(run_dir)
    warnings: list[str] = []
    model_repos: list[Repo] = []
    taken: dict[str, str] = {}  # model repo -> the cell pushed there
    if models:
        for r in records:
            saved = r.model.saved if r.ok and r.model else None
            if not saved or not (run_dir / saved).is_file():
                if r.ok:
                    warnings.append(f"{r.cell.id}: no saved model (run with --save-models)")
                continue
            mid = _model_repo(repo_id, r, taken)
            weights = r.backbone.weights
            if weights not in (None, "imagenet", "none"):
                warnings.append(f"{mid}: fitted on the backbone weights file "
                                f"{public_text(weights)}; loading it elsewhere needs that file")
            repo = Repo(mid, "model", {
                MODEL_FILE: _public_model((run_dir / saved).read_bytes()),
                "README.md": cards.model_card(r, mid, repo_id, dataset_repo_id,
                                              license).encode()})
            repo.files[MANIFEST] = _manifest(repo.files, results=repo_id, cell=r.cell.id)
            model_repos.append(repo)
        if not model_repos:
            raise BenchError(f"--models: no cell of {run_dir} saved its model; rerun with "
                             "`bench run --save-models --force` (or push without --models)")
    plots = [f"{PLOTS_DIR}/{f}" for f in PLOT_FILES if (run_dir / PLOTS_DIR / f).is_file()]
    files.update({p: (run_dir / p).read_bytes() for p in plots})
    files[cards.RESULTS_TABLE] = _parquet(records)
    board = render_markdown(records, plots)
    files["README.md"] = cards.results_card(records, board, repo_id, license,
                                            [m.repo_id for m in model_repos]).encode()
    files[MANIFEST] = _manifest(files, records=len(records),
                                models=[m.repo_id for m in model_repos])
    return [Repo(repo_id, "dataset", files), *model_repos], warnings


def write_dry_run(repos: list[Repo], out: str | Path) -> Path:
    """Write each repo's files to ``out/<datasets|models>/ORG/NAME/`` (``out`` absent or
    empty), through a staging folder renamed into place."""
    from cadsd.files import new_folder

    with new_folder(out) as staging:
        for repo in repos:
            for rel, data in repo.files.items():
                path = staging / f"{repo.repo_type}s" / repo.repo_id / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            repo.status = "written"
    return Path(out).expanduser().absolute()


def dry_run_folder(out: Path, repo: Repo) -> Path:
    """Where :func:`write_dry_run` put ``repo``'s files."""
    return Path(out) / f"{repo.repo_type}s" / repo.repo_id


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _same(remote: Any, data: bytes) -> bool:
    """Whether a file on the Hub (a ``RepoFile``) already has these bytes."""
    if remote is None:
        return False
    lfs = getattr(remote, "lfs", None)
    if lfs is not None:
        return lfs.sha256 == hashlib.sha256(data).hexdigest()
    return remote.blob_id == _git_blob_sha1(data)


def _upload(api: Any, repo: Repo, private: bool) -> None:
    """Create the repo if needed, then one commit: our files that changed, and deletions of
    files that our previous push wrote (its manifest) and this one does not."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, RepoFile

    url = api.create_repo(repo.repo_id, repo_type=repo.repo_type, private=private,
                          exist_ok=True)
    repo.url = str(url)
    remote = {f.path: f for f in api.list_repo_tree(repo.repo_id, repo_type=repo.repo_type,
                                                    recursive=True) if isinstance(f, RepoFile)}
    before: set[str] = set()
    if MANIFEST in remote:
        from huggingface_hub import hf_hub_download

        old = json.loads(Path(hf_hub_download(repo.repo_id, MANIFEST, repo_type=repo.repo_type,
                                              token=api.token)).read_text())
        before = set(old.get("files", [])) if old.get("format") == MANIFEST_FORMAT else set()
    changed = [p for p, data in repo.files.items() if not _same(remote.get(p), data)]
    gone = sorted(p for p in before - set(repo.files) if p in remote)
    if not changed and not gone:
        repo.status = "unchanged"
        return
    repo.status = "updated" if remote.keys() - {".gitattributes"} else "created"
    ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=repo.files[p]) for p in changed]
    ops += [CommitOperationDelete(path_in_repo=p) for p in gone]
    api.create_commit(repo.repo_id, ops, repo_type=repo.repo_type,
                      commit_message=f"bench push: {len(changed)} file(s) written, "
                                     f"{len(gone)} removed")


def push_run(run_dir: str | Path, repo_id: str, *, models: bool = False,
             dry_run: str | Path | None = None, private: bool = False,
             token: str | None = None, license: str | None = None,
             dataset_repo_id: str | None = None) -> PushResult:
    """Publish ``run_dir`` to ``repo_id`` (a dataset repo) and, with ``models``, its saved
    models; ``dry_run``: write the repos' files to that folder instead."""
    from cadsd.publishing.push import client_errors, describe_error, resolve_token, scrub

    repos, warnings = build(run_dir, repo_id, models=models, license=license,
                            dataset_repo_id=dataset_repo_id)
    if dry_run is not None:
        return PushResult(repos, write_dry_run(repos, dry_run), warnings)
    token = resolve_token(token)
    if not token:
        raise BenchError("no Hugging Face token: pass --token, set HF_TOKEN, or run "
                         "`hf auth login` (or use --dry-run DIR to see what would be uploaded)")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    for repo in repos:
        try:
            _upload(api, repo, private)
        except client_errors() as err:  # HTTP, auth and connection errors of the client
            done = ", ".join(f"{r.repo_id} ({r.status})" for r in repos if r.status) or "none"
            raise BenchError(
                f"push to {repo.repo_id} failed ({scrub(describe_error(err), token)}); repos "
                f"already pushed: {done}. Check the repo id, that the token may write to it, "
                "and your network, then rerun: a re-push updates in place.") from None
    return PushResult(repos, None, warnings)
