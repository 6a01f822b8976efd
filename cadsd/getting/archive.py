"""Safe extraction of a dataset archive (.zip, .tar, .tar.gz/.bz2/.xz).

An archive from the internet may try to write outside the destination (``../x``, ``/etc/x``,
``C:\\x``, a symlink or hardlink to elsewhere) or expand to fill the disk (a "zip bomb").
Every member is checked before anything is written; links and special files are refused
outright (CAD-SD holds only regular files); bytes are counted while writing, so an archive
that lies about its sizes is stopped too. A refused archive raises :class:`DownloadError`.
"""

from __future__ import annotations

import posixpath
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from cadsd.errors import DownloadError

_CHUNK = 1 << 20
_GiB = 1 << 30


@dataclass(frozen=True)
class Limits:
    """What an archive may expand to: total bytes, compression ratio and member count.

    CAD-SD is about 776 JPEGs (tens of MB; JPEGs barely compress), so the defaults leave wide
    margins while stopping bombs. ``min_ratio_bytes``: below this many bytes the ratio is not
    checked (tiny text files compress well and are harmless).
    """

    max_total_bytes: int = 4 * _GiB
    max_ratio: float = 100.0
    max_members: int = 100_000
    min_ratio_bytes: int = 1 << 20


def safe_relpath(name: str) -> PurePosixPath:
    """``name`` as a relative POSIX path that stays inside its folder, or raise DownloadError.

    Backslashes count as separators (Windows-made zips), so ``..\\x`` is caught as well.
    """
    clean = name.replace("\\", "/")
    if "\0" in clean:
        raise DownloadError(f"unsafe path {name!r}: contains a NUL byte")
    if clean.startswith("/") or (len(clean) > 1 and clean[1] == ":" and clean[0].isalpha()):
        raise DownloadError(f"unsafe path {name!r}: absolute paths are not allowed")
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DownloadError(f"unsafe path {name!r}: '..' would leave the destination")
    if not parts:
        raise DownloadError(f"unsafe path {name!r}: empty name")
    return PurePosixPath(*parts)


def _target(out: Path, rel: PurePosixPath) -> Path:
    target = out.joinpath(*rel.parts)
    # Belt and braces: the resolved path must still be under out (e.g. no symlinked parent).
    if not target.resolve().is_relative_to(out.resolve()):
        raise DownloadError(f"unsafe path {rel}: resolves outside the destination")
    return target


def archive_kind(path: str | Path) -> str | None:
    """``"zip"``, ``"tar"`` or None, from the file's content (not its name)."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except (OSError, tarfile.TarError):
        return None
    return None


def _check_totals(name: str, total: int, packed: int, count: int, limits: Limits) -> None:
    if count > limits.max_members:
        raise DownloadError(f"{name}: {count} members, more than the limit of {limits.max_members}")
    if total > limits.max_total_bytes:
        raise DownloadError(
            f"{name}: expands to {total:,} bytes, more than the limit of "
            f"{limits.max_total_bytes:,} (an archive bomb?)"
        )
    if total > limits.min_ratio_bytes and total > limits.max_ratio * max(packed, 1):
        raise DownloadError(
            f"{name}: compression ratio {total / max(packed, 1):.0f}:1 exceeds "
            f"{limits.max_ratio:.0f}:1 (an archive bomb?)"
        )


def _copy(src: BinaryIO, target: Path, declared: int, budget: list[int], member: str) -> None:
    """Stream ``src`` to ``target``, refusing more than ``declared`` bytes or the budget."""
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(target, "wb") as f:
        for block in iter(lambda: src.read(_CHUNK), b""):
            written += len(block)
            budget[0] -= len(block)
            if written > declared or budget[0] < 0:
                raise DownloadError(f"{member}: holds more data than its header declares (a bomb?)")
            f.write(block)


def _write_members(out: Path, members: list[tuple[PurePosixPath, str, int | None,
                                                  Callable[[], BinaryIO]]],
                   limits: Limits) -> None:
    """Write checked members ``(path, name in the archive, declared size or None for a
    folder, open)`` under ``out``, all of them within one budget of bytes."""
    budget = [limits.max_total_bytes]
    for rel, name, size, open_ in members:
        target = _target(out, rel)
        if size is None:
            target.mkdir(parents=True, exist_ok=True)
            continue
        with open_() as src:
            _copy(src, target, size, budget, name)


def _extract_zip(archive: Path, out: Path, limits: Limits) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        plan = []
        for info in infos:
            rel = safe_relpath(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise DownloadError(
                    f"{info.filename}: symbolic links are not allowed in a dataset archive"
                )
            # Many zips carry permission bits only (type 0); a type other than file/dir is not.
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise DownloadError(f"{info.filename}: special files are not allowed")
            small = info.file_size <= limits.min_ratio_bytes
            if not small and info.file_size > limits.max_ratio * max(info.compress_size, 1):
                raise DownloadError(
                    f"{info.filename}: compression ratio too high (an archive bomb?)"
                )
            plan.append((info, rel))
        total = sum(i.file_size for i in infos)
        _check_totals(archive.name, total, archive.stat().st_size, len(infos), limits)
        _write_members(out, [(rel, info.filename, None if info.is_dir() else info.file_size,
                              lambda info=info: zf.open(info)) for info, rel in plan], limits)


def _link_reason(member: tarfile.TarInfo, rel: PurePosixPath) -> str:
    kind = "symbolic link" if member.issym() else "hard link"
    link = member.linkname.replace("\\", "/")
    # A symlink is relative to its own folder, a hardlink to the archive root.
    joined = posixpath.normpath(posixpath.join(str(rel.parent) if member.issym() else "", link))
    if link.startswith("/") or joined == ".." or joined.startswith("../"):
        return f"a {kind} to {member.linkname!r} points outside the destination"
    return f"a {kind} to {member.linkname!r}; links are not allowed in a dataset archive"


def _extract_tar(archive: Path, out: Path, limits: Limits) -> None:
    with tarfile.open(archive, "r:*") as tf:
        members = []
        total = 0
        for member in tf:  # headers only; a .tar.gz is decompressed once here
            rel = safe_relpath(member.name)
            if member.issym() or member.islnk():
                raise DownloadError(f"{member.name}: {_link_reason(member, rel)}")
            if not (member.isreg() or member.isdir()):
                raise DownloadError(
                    f"{member.name}: special files (devices, fifos) are not allowed"
                )
            total += member.size if member.isreg() else 0
            members.append((member, rel))
            if len(members) > limits.max_members or total > limits.max_total_bytes:
                break  # _check_totals names the problem
        _check_totals(archive.name, total, archive.stat().st_size, len(members), limits)

        def opener(member: tarfile.TarInfo) -> Callable[[], BinaryIO]:
            def open_() -> BinaryIO:
                src = tf.extractfile(member)
                if src is None:
                    raise DownloadError(f"{member.name}: cannot be read")
                return src

            return open_

        _write_members(out, [(rel, m.name, None if m.isdir() else m.size, opener(m))
                             for m, rel in members], limits)


def extract(archive: str | Path, out: str | Path, limits: Limits | None = None) -> Path:
    """Safely extract ``archive`` into the folder ``out`` (created; must be empty or absent).

    Raises :class:`DownloadError` naming the member and the reason when the archive is unsafe,
    corrupt or not an archive; ``out`` is then removed, and nothing is ever written outside it.
    """
    archive, out = Path(archive), Path(out)
    limits = limits or Limits()
    kind = archive_kind(archive)
    if kind is None:
        raise DownloadError(f"{archive} is not a .zip or .tar archive")
    out.mkdir(parents=True, exist_ok=True)
    try:
        (_extract_zip if kind == "zip" else _extract_tar)(archive, out, limits)
    except DownloadError as err:
        shutil.rmtree(out, ignore_errors=True)
        raise DownloadError(f"refusing to extract {archive.name}: {err}") from None
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        shutil.rmtree(out, ignore_errors=True)
        raise DownloadError(
            f"{archive.name} is corrupt or truncated ({err}); download it again"
        ) from err
    return out
