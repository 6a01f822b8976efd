"""`cadsd download`: get CAD-SD into the cache (or ``--dest``) safely.

Sources: the authors' public Google Drive folder (default), a published copy ``hf:ORG/NAME``, a
URL of a .zip/.tar (HTTP Range resume, optional sha256), a local .zip/.tar (safe extraction) or
a local folder (copied). Everything lands in a staging folder beside the destination; only a
complete tree in the official layout, with its checksum manifest written, is renamed into
place, so a failed or interrupted run never leaves something that passes for a dataset.
Network staging (``.<dest>.download/``) is kept between runs: a rerun fetches what is missing.

After placing the files, the dataset is validated. Problems found there (say, lacking has 44
images where the paper says 40) do not undo a complete download: the files stay, the report is
returned, and ``cadsd download`` exits 1 naming what to check.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cadsd.errors import CadsdError, DownloadError, LayoutError, short_message
from cadsd.files import Output, check_output, replace_folder
from cadsd.format.cache import real_dataset_dir
from cadsd.format.layout import index, mask_path, resolve_root
from cadsd.format.links import copy_dataset
from cadsd.getting.archive import Limits, archive_kind, extract, safe_relpath
from cadsd.getting.fetch import Offline, Policy, check_reachable, fetch_gdrive, fetch_url
from cadsd.getting.manifest import MANIFEST_NAME, read_manifest, sha256_file, verify, write_manifest

if TYPE_CHECKING:
    from cadsd.checking.validate import ValidationReport

#: The authors' Drive folder (IshidaKengo/SA-PatchCore README).
GDRIVE_FOLDER_ID = "1yeampzTiB4uoTmmqIZkeCdMIXGujl3cU"
GDRIVE_URL = f"https://drive.google.com/drive/folders/{GDRIVE_FOLDER_ID}"
_DRIVE_FOLDER = re.compile(r"https://drive\.google\.com/drive/(?:u/\d+/)?folders/([-\w]{10,})")


@dataclass
class DownloadResult:
    """Where the dataset is, what was placed, and the validation report (None if skipped)."""

    dest: Path
    source: str
    files: int
    nbytes: int
    report: ValidationReport | None = None
    already_present: bool = False

    @property
    def ok(self) -> bool:
        return self.report is None or self.report.ok


def classify(source: str) -> tuple[str, str]:
    """``(kind, value)``: gdrive (folder id), hf (``hf:ORG/NAME``), url, archive or dir (path)."""
    if source in ("gdrive", "drive", "google-drive"):
        return "gdrive", GDRIVE_FOLDER_ID
    match = _DRIVE_FOLDER.match(source)
    if match:
        return "gdrive", match.group(1)
    if source.startswith("hf:"):
        return "hf", source
    if re.match(r"^https?://", source):
        return "url", source
    path = Path(source).expanduser()
    if path.is_dir():
        return "dir", str(path)
    if path.is_file():
        return "archive", str(path)
    raise CadsdError(
        f"--source {source!r} is not gdrive, hf:ORG/NAME, an http(s) URL, or an existing "
        ".zip/.tar file or folder"
    )


def _has_files(folder: Path | None) -> bool:
    return folder is not None and folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


def _offline_message(err: Offline, stage: Path | None) -> str:
    kept = f" Partial files are kept in {stage}; rerun to resume." if _has_files(stage) else ""
    return (
        f"{err}. This machine looks offline, or the site is blocked. If you have a copy of "
        "CAD-SD obtained elsewhere (a folder, or a .zip/.tar of it), import it with "
        f"`cadsd download --source PATH`.{kept}"
    )


def output(dest: str | Path, force: bool = False, sources: tuple[str | Path, ...] = ()) -> Output:
    """The folder ``cadsd download`` writes: ``--force`` replaces only an earlier download (its
    :data:`MANIFEST_NAME`), never a local source or a folder inside or around it."""
    return Output.of(dest, MANIFEST_NAME, "`cadsd download`", option="--dest", force=force,
                     sources=sources)


def _already_there(out: Output) -> bool:
    """True when ``out`` already holds a verified download (nothing to do without --force)."""
    dest = out.path
    if out.force or not dest.is_dir() or not (dest / MANIFEST_NAME).is_file():
        return False
    report = verify(dest)
    if not report.ok:
        raise CadsdError(
            f"{dest} holds a download that no longer matches its manifest "
            f"({len(report.changed)} changed, {len(report.missing)} missing, "
            f"{len(report.extra)} extra; see `cadsd verify {dest}`). Pass --force to replace it."
        )
    return True


def _stage_for(dest: Path, kind: str, value: str) -> Path:
    """The kept staging folder of a network source: ``.<dest>.download/<kind>-<hash>``."""
    tag = hashlib.sha1(value.encode()).hexdigest()[:10]
    return dest.parent / f".{dest.name}.download" / f"{kind}-{tag}"


def _write_from_hf(source: str, out: Path) -> None:
    """Write a published copy back into the official folder layout, bytes unchanged."""
    from cadsd.format import hf

    try:
        dd = hf.load(source)
    except DownloadError as err:
        raise DownloadError(
            f"{err} If you have a copy of CAD-SD obtained elsewhere, import it with "
            "`cadsd download --source PATH`."
        ) from err
    for split, ds in dd.items():
        cols = ["image", "file_name"] + (["mask"] if "mask" in ds.column_names else [])
        table = ds.select_columns(cols).with_format("arrow")
        for batch in table.iter(batch_size=64):
            rows = batch.to_pylist()
            for row in rows:
                rel = safe_relpath(row["file_name"])
                if rel.parts[0] != split or len(rel.parts) != 3:
                    raise DownloadError(
                        f"{source}: file_name {row['file_name']!r} is not <split>/<folder>/<file>"
                    )
                image = row["image"] or {}
                if image.get("bytes") is None:
                    raise DownloadError(f"{source}: {rel} has no embedded image bytes")
                target = out.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(image["bytes"])
                mask = row.get("mask")
                if mask and mask.get("bytes") is not None:
                    mpath = mask_path(out, rel.parts[1], Path(rel.name))
                    mpath.parent.mkdir(parents=True, exist_ok=True)
                    mpath.write_bytes(mask["bytes"])


def _tree_stats(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST_NAME]
    return len(files), sum(p.stat().st_size for p in files)


def _place(tree: Path, out: Output, label: str) -> Path:
    """Find the dataset root in ``tree``, write its manifest, rename it to ``out``."""
    try:
        root = resolve_root(tree)
        if not index(root):
            raise LayoutError(f"{root} holds no images in the CAD-SD folders")
    except LayoutError as err:
        raise DownloadError(f"{label} does not hold CAD-SD in the official layout: {err}") from err
    write_manifest(root, source=label)
    return replace_folder(root, out)  # --force: the old download is moved aside, then deleted


def _fetch_tree(
    kind: str,
    value: str,
    kept: Path | None,
    work: Path,
    sha256: str | None,
    policy: Policy,
    limits: Limits | None,
) -> Path:
    """Bring the source's files into a local folder (in ``kept`` or ``work``) and return it."""
    if kind == "gdrive":
        return fetch_gdrive(value, kept, policy=policy)
    tree = work / "tree"
    if kind == "url":
        archive = fetch_url(value, kept, sha256=sha256, policy=policy)
        try:
            return extract(archive, tree, limits)
        except DownloadError:
            archive.unlink()  # corrupt or unsafe: a rerun must fetch it again, not reuse it
            raise
    if kind == "archive":
        if archive_kind(value) is None:
            raise DownloadError(f"{value} is not a .zip or .tar archive (nor a folder)")
        if sha256 and sha256_file(value) != sha256.strip().lower():
            raise DownloadError(
                f"checksum mismatch for {value}: expected sha256 {sha256.strip().lower()}, "
                f"got {sha256_file(value)}"
            )
        return extract(value, tree, limits)
    if kind == "dir":  # links that leave the folder are refused, never followed
        return copy_dataset(resolve_root(value), tree)
    if not os.environ.get("HF_HUB_OFFLINE"):  # offline mode reads the local HF cache
        from huggingface_hub import constants

        check_reachable(constants.ENDPOINT, policy)
    _write_from_hf(value, tree)
    return tree


def download(
    source: str = "gdrive",
    dest: str | Path | None = None,
    *,
    sha256: str | None = None,
    expect: dict[str, int] | None = None,
    force: bool = False,
    policy: Policy | None = None,
    limits: Limits | None = None,
    run_validation: bool = True,
) -> DownloadResult:
    """Fetch CAD-SD from ``source`` into ``dest`` (default: the cache's ``CAD-SD`` folder).

    Returns a :class:`DownloadResult`; ``result.report`` is the validation of the placed files
    (``expect`` overrides the paper's counts). Raises :class:`DownloadError` when the source
    cannot be fetched (offline: the message names ``--source PATH``) or is not CAD-SD, and
    :class:`CadsdError` when ``dest`` holds something else (``force`` replaces it).
    """
    kind, value = classify(source)
    out = output(real_dataset_dir(dest), force, (value,) if kind in ("dir", "archive") else ())
    dest = out.path
    if _already_there(out):
        doc = read_manifest(dest)
        files = doc["files"]
        return DownloadResult(
            dest,
            doc.get("source", ""),
            len(files),
            sum(m["size"] for m in files.values()),
            already_present=True,
        )
    check_output(out)  # before anything is fetched or copied
    policy = policy or Policy()
    label = GDRIVE_URL if kind == "gdrive" and value == GDRIVE_FOLDER_ID else source
    kept = _stage_for(dest, kind, value) if kind in ("gdrive", "url") else None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.import-", dir=dest.parent))
        try:
            _place(_fetch_tree(kind, value, kept, work, sha256, policy, limits), out, label)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    except Offline as err:
        message = _offline_message(err, kept)
        if kept is not None and not _has_files(kept):
            shutil.rmtree(kept, ignore_errors=True)  # nothing fetched: leave no trace
            with contextlib.suppress(OSError):
                kept.parent.rmdir()
        raise DownloadError(message) from None
    except OSError as err:  # disk full, permissions: the user's to fix, not a traceback
        raise DownloadError(f"cannot write the dataset to {dest}: {short_message(str(err))}") from err
    if kept is not None:
        # Placed: the fetched files moved into dest (gdrive) or are no longer needed (url).
        shutil.rmtree(kept, ignore_errors=True)
        with contextlib.suppress(OSError):
            kept.parent.rmdir()  # only when empty: another source may still be resuming
    files, nbytes = _tree_stats(dest)
    report = None
    if run_validation:
        from cadsd.checking.validate import validate

        report = validate(dest, expect)
    return DownloadResult(dest, label, files, nbytes, report)
