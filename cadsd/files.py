"""File chores, one definition each, used by the dataset toolkit, the detectors and the harness.

* :func:`atomic_write_bytes` / :func:`atomic_write_text`: a unique temp file in the target's
  folder, then ``os.replace``; the file gets the permissions any new file gets (0666 minus the
  umask: records, cards, manifests and reports are meant to be shared); nothing is half-written.
* :func:`atomic_file`: the same for writers that need a path (safetensors, matplotlib).
* :func:`swap_into_place`: rename a finished folder to its destination, moving an old one aside
  first (a directory rename cannot replace a non-empty directory), then deleting it.
* :func:`new_folder`: fill a folder that must be absent or empty (a ``--dry-run DIR``) through
  a staging folder beside it, renamed into place once complete.
* :class:`Output`, :func:`check_output`, :func:`output_folder`, :func:`replace_folder`: the one
  rule for a folder a tool writes and ``--force`` replaces (build, synth, downloads). The tool
  writes a marker file of its own into it, listing the files it wrote; ``--force`` replaces a
  folder only when it is empty or holds that marker and no file the marker does not list, and
  never the source, a folder inside the source or a folder that holds the source.
* :func:`walk_files`: every regular file under a folder, as sorted POSIX paths.
* :func:`sha256_file`: the hex sha256 of a file, read in 1 MiB blocks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cadsd.errors import OutputError

_CHUNK = 1 << 20


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _shared_mode() -> int:
    return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A unique temp path beside ``path``; renamed onto ``path`` when the block ends without an
    error, deleted otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:  # name the file being written, not the temp file
        raise OSError(err.errno, err.strerror, str(path)) from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _shared_mode())  # mkstemp makes 0600
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        if err.filename is not None and Path(err.filename) == Path(tmp):
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise
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
    """Yield a staging folder beside ``out``, which must be absent or empty (a folder that is
    never replaced: no marker); when the block ends it becomes ``out``, and on any error it is
    deleted. A non-empty ``out`` raises :class:`OutputError` naming ``option``."""
    with output_folder(Output.of(out, None, "this command", option=option)) as staging:
        yield staging


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def walk_files(root: str | Path) -> list[str]:
    """Every regular file under ``root`` (links to files included, folder links not followed),
    as POSIX paths relative to it, sorted."""
    root = Path(root)
    out = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_file():
                out.append(path.relative_to(root).as_posix())
    return sorted(out)


def _entries(root: Path) -> list[str]:
    """Everything under ``root`` but its folders: files, links (to folders too, not
    followed), special files; POSIX paths relative to it, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        links = [d for d in dirnames if (here / d).is_symlink()]
        out += [(here / name).relative_to(root).as_posix() for name in [*filenames, *links]]
    return sorted(out)


def marker_files(folder: Path, marker: str) -> set[str] | None:
    """The files ``folder/marker`` says its tool wrote (its ``files``: a list, or a mapping
    keyed by path), None when there is no readable marker listing them."""
    try:
        doc = json.loads((folder / marker).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = doc.get("files") if isinstance(doc, dict) else None
    return {str(f) for f in files} if isinstance(files, (list, dict)) else None


@dataclass(frozen=True)
class Output:
    """A folder a tool writes: where (``option`` names it to the user), the marker file the
    tool writes into it, the tool's name for messages, whether ``--force`` was given, and the
    folders the tool reads from (never replaced, never written into). ``owned`` overrides how
    the marker is read (a marker format that predates its file list)."""

    path: Path
    marker: str | None  # None: a folder never replaced (a --dry-run DIR), and no marker
    tool: str
    option: str = "--out"
    force: bool = False
    sources: tuple[Path, ...] = ()
    owned: Callable[[Path], set[str] | None] | None = None

    @classmethod
    def of(cls, path: str | Path, marker: str | None, tool: str, *, option: str = "--out",
           force: bool = False, sources: Iterable[str | Path] = (),
           owned: Callable[[Path], set[str] | None] | None = None) -> Output:
        """An :class:`Output` with ``path`` and ``sources`` made absolute (``~`` expanded)."""
        return cls(Path(path).expanduser().absolute(), marker, tool, option, force,
                   tuple(Path(s).expanduser().absolute() for s in sources), owned)


def _check_sources(out: Output) -> None:
    dest = out.path.resolve()
    where = f"{out.option} {out.path}"
    for source in out.sources:
        src = source.resolve()
        if dest == src:
            raise OutputError(f"{where} is the source; pick an {out.option} outside it")
        if src.is_relative_to(dest):
            raise OutputError(f"{where} holds the source {source}; pick an {out.option} that "
                              "neither holds the source nor is inside it")
        if dest.is_relative_to(src):
            raise OutputError(f"{where} is inside the source {source}; pick an {out.option} "
                              "outside it")


def check_output(out: Output) -> None:
    """Raise :class:`OutputError` (one line naming why and what to do) unless ``out.path`` may
    be written: absent, an empty folder, or (with ``force``) a folder this tool wrote."""
    _check_sources(out)
    path, where = out.path, f"{out.option} {out.path}"
    if path.is_symlink():
        raise OutputError(f"{where} is a link; pass the folder it points to, or another one")
    if not path.exists():
        return
    if not path.is_dir():
        raise OutputError(f"{where} is a file; pick a folder")
    if not any(path.iterdir()):
        return
    if out.marker is None:
        raise OutputError(f"{where} exists and is not empty; pick another folder")
    owned = (out.owned or (lambda p: marker_files(p, out.marker)))(path)
    if owned is None:
        raise OutputError(f"{where} is not empty and was not written by {out.tool} (it has no "
                          f"{out.marker}), so --force would not replace it either; pick another "
                          f"{out.option}, or empty that folder yourself")
    if not out.force:
        raise OutputError(f"{where} is not empty (written by {out.tool} earlier); pass --force "
                          f"to replace it, or pick another {out.option}")
    foreign = sorted(set(_entries(path)) - owned - {out.marker})
    if foreign:
        raise OutputError(f"{where} holds {len(foreign)} file(s) {out.tool} did not write (e.g. "
                          f"{foreign[0]}), so --force does not replace it; move them out first "
                          f"or pick another {out.option}")


def replace_folder(src: str | Path, out: Output) -> Path:
    """Check ``out`` again (something may have appeared meanwhile), then rename the finished
    folder ``src`` onto it (:func:`swap_into_place`)."""
    check_output(out)
    return swap_into_place(src, out.path)


@contextlib.contextmanager
def output_folder(out: Output) -> Iterator[Path]:
    """Check ``out``, yield a staging folder beside it to fill, then write the marker (unless
    the block wrote its own) and :func:`replace_folder`; on any error the staging folder is
    deleted and ``out`` is left as it was."""
    check_output(out)
    out.path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.path.name}.staging-", dir=out.path.parent))
    try:
        staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; outputs are shared
        yield staging
        if out.marker is not None and not (staging / out.marker).exists():
            doc = {"generator": out.tool.strip("`"), "files": walk_files(staging)}
            atomic_write_text(staging / out.marker, json.dumps(doc, indent=1) + "\n")
        replace_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
