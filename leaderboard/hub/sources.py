"""Where `bench leaderboard` reads records from: a run folder, or a run published with
`bench push` (``hf:ORG/NAME``, optionally ``hf:ORG/NAME@REVISION``), downloaded into the Hub
cache (records, plots and the push manifest only). Every record is checked as a local one is:
a newer schema, a foreign file or per-image scores that disagree with the metrics leave the
file out, named by where it came from (``hf:ORG/NAME/records/<cell>.json``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cadsd.format.hf import HF_PREFIX
from leaderboard.errors import BenchError, UsageError
from leaderboard.records import RECORDS_DIR, BadRecord, Record, scan_records
from leaderboard.reporting.plots import PLOT_FILES, PLOTS_DIR


@dataclass
class Source:
    """One run's records as read, with the files it could not use and its plots."""

    label: str  # as the user wrote it: hf:ORG/NAME or the folder
    folder: Path  # the run folder, or the downloaded snapshot
    records: list[Record] = field(default_factory=list)
    unusable: list[BadRecord] = field(default_factory=list)
    remote: bool = False

    def plots(self) -> list[Path]:
        return [self.folder / PLOTS_DIR / f for f in PLOT_FILES
                if (self.folder / PLOTS_DIR / f).is_file()]


def _snapshot(spec: str, token: str | None) -> Path:
    """Download the records, plots and manifest of a pushed run; a clear error when the repo
    or revision is missing, private without a token, or the Hub unreachable."""
    from huggingface_hub import snapshot_download

    from cadsd.publishing.push import client_errors, describe_error, resolve_token, scrub
    from leaderboard.hub.push import MANIFEST, split_hf

    repo_id, revision = split_hf(spec, "source")
    token = resolve_token(token)
    try:
        folder = snapshot_download(repo_id, repo_type="dataset", revision=revision,
                                   token=token or None,
                                   allow_patterns=[f"{RECORDS_DIR}/*.json", f"{PLOTS_DIR}/*",
                                                   MANIFEST])
    except client_errors() as err:
        raise BenchError(f"cannot read {spec} ({scrub(describe_error(err), token)}): check the "
                         "repo id (a dataset repo written by `bench push`), the revision, "
                         "your network, and a token (--token or HF_TOKEN) for a private "
                         "repo") from None
    path = Path(folder)
    if not (path / RECORDS_DIR).is_dir():
        raise BenchError(f"{spec} holds no {RECORDS_DIR}/ folder: it is not a run published "
                         "with `bench push`")
    return path


def read_source(spec: str, token: str | None = None) -> Source:
    """The records of one source (``hf:ORG/NAME[@REV]`` or a run folder)."""
    if spec.startswith(HF_PREFIX):
        source = Source(spec, _snapshot(spec, token), remote=True)
        name = spec
    else:
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            raise BenchError(f"run folder not found: {spec} (written by `bench run --out DIR`; "
                             "a published run is hf:ORG/NAME)")
        source, name = Source(spec, folder), None
    source.records, source.unusable = scan_records(source.folder, name=name)
    return source


def _local_labels(folders: list[Path]) -> list[str]:
    """Row labels for run folders that hold no absolute path (a leaderboard travels) and
    tell the folders apart: the path under the working folder, else its last components
    (``…/lab/run``), as many as it takes to make every label unique."""
    cwd = Path.cwd().resolve()
    full = [f.resolve() for f in folders]
    labels = [str(f.relative_to(cwd)) if f.is_relative_to(cwd) and f != cwd else None
              for f in full]
    for depth in range(1, max((len(f.parts) for f in full), default=1) + 1):
        tails = [lab or "…/" + "/".join(f.parts[-depth:]) for f, lab in zip(full, labels)]
        if len(set(tails)) == len(tails):
            return tails
    return [str(f) for f in full]  # unreachable: distinct folders differ somewhere


def read_sources(specs: list[str], token: str | None = None) -> list[Source]:
    """Every source, each once (a repeated one is a usage error); run folders are labelled
    by :func:`_local_labels`."""
    seen = [s.rstrip("/") if s.startswith(HF_PREFIX) else str(Path(s).expanduser().resolve())
            for s in specs]
    if len(set(seen)) != len(seen):
        twice = next(s for s, k in zip(specs, seen) if seen.count(k) > 1)
        raise UsageError(f"{twice} is given twice; name each run once")
    sources = [read_source(s, token) for s in specs]
    local = [s for s in sources if not s.remote]
    for source, label in zip(local, _local_labels([s.folder for s in local])):
        source.label = label
    return sources


def model_file(model: str | Path, token: str | None = None) -> Path:
    """A local model file: ``model`` itself, or ``hf:ORG/NAME[@REVISION]``'s
    ``model.safetensors`` downloaded into the Hub cache."""
    if not str(model).startswith(HF_PREFIX):
        return Path(model)
    from huggingface_hub import hf_hub_download

    from cadsd.publishing.push import client_errors, describe_error, resolve_token, scrub
    from leaderboard.hub.push import MODEL_FILE, split_hf

    repo_id, revision = split_hf(str(model), "--model")
    token = resolve_token(token)
    try:
        return Path(hf_hub_download(repo_id, MODEL_FILE, revision=revision, token=token or None))
    except client_errors() as err:
        raise BenchError(f"cannot download {model} ({scrub(describe_error(err), token)}): "
                         "check the model repo id (pushed with `bench push --models`), your "
                         "network, and a token for a private repo") from None
