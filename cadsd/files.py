"""File chores, one definition each, used by the dataset toolkit, the detectors and the harness.

* :func:`atomic_write_bytes` / :func:`atomic_write_text`: a unique temp file in the target's
  folder, then ``os.replace``; the file gets the permissions any new file gets (0666 minus the
  umask: records, cards, manifests and reports are meant to be shared); nothing is half-written.
* :func:`atomic_file`: the same for writers that need a path (safetensors, matplotlib).
* :func:`swap_into_place`: rename a finished folder to its destination, moving an old one aside
  first (a directory rename cannot replace a non-empty directory), then deleting it.
* :func:`new_folder`: fill a folder that must be absent or empty (a ``--dry-run DIR``) through
  a staging folder beside it, renamed into place once complete.
* :func:`sha256_file`: the hex sha256 of a file, read in 1 MiB blocks.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_CHUNK = 1 << 20


def _shared_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A unique temp path beside ``path``; renamed onto ``path`` when the block ends without an
    error, deleted otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _shared_mode())  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """UTF-8 text, atomically (newlines as given)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def swap_into_place(src: str | Path, dest: str | Path) -> Path:
    """Rename the finished folder ``src`` to ``dest``, replacing what ``dest`` held."""
    src, dest = Path(src), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_dir() and not any(dest.iterdir()):
        dest.rmdir()
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        os.replace(dest, old / dest.name)
        os.replace(src, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dest)
    return dest


@contextlib.contextmanager
def new_folder(out: str | Path, option: str = "--dry-run") -> Iterator[Path]:
    """Yield a staging folder beside ``out``, which must be absent or empty; when the block
    ends it becomes ``out``, and on any error it is deleted. A non-empty ``out`` raises
    ``FileExistsError`` naming ``option`` (callers turn it into their own error)."""
    out = Path(out).expanduser().absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{option} {out} exists and is not empty; pick another folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        yield staging
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()
