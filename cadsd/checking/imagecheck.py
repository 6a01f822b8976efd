"""Reading, hashing and fully decoding image files in parallel (used by ``cadsd validate``).

A truncated JPEG must fail here, so PIL's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left at False
and checked: when some other library has switched it on, decoding refuses to run.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cadsd.errors import CadsdError
from cadsd.format.images import is_16bit, mode_problem


@dataclass(frozen=True)
class FileInfo:
    """One file's byte size, sha256 and, when it decodes, its size, mode and format."""

    nbytes: int
    sha256: str | None = None
    size: tuple[int, int] | None = None
    mode: str | None = None
    format: str | None = None
    error: str | None = None
    orientation: int | None = None  # the EXIF orientation tag, None when absent


def inspect_file(path: Path) -> FileInfo:
    """Read ``path`` once, hash the bytes and decode every pixel (``Image.load``); an error
    names the file, never the in-memory buffer it was decoded from."""
    from PIL import Image

    from cadsd.checking.notes import ORIENTATION_TAG

    try:
        data = path.read_bytes()
    except OSError as err:
        return FileInfo(0, error=f"cannot read: {err}")
    if not data:
        return FileInfo(0)
    digest = hashlib.sha256(data).hexdigest()
    buffer = io.BytesIO(data)
    try:
        with Image.open(buffer) as im:
            im.load()  # decodes every pixel; raises on truncated data
            tag = im.getexif().get(ORIENTATION_TAG)
            return FileInfo(len(data), digest, im.size, im.mode, im.format,
                            orientation=tag if isinstance(tag, int) else None)
    except Exception as err:  # noqa: BLE001 - any decode failure of user data is a finding
        message = str(err).replace(repr(buffer), path.name)  # PIL quotes its file object
        return FileInfo(len(data), digest, error=f"{type(err).__name__}: {message}")


def inspect_files(paths: Sequence[Path], workers: int | None = None) -> list[FileInfo]:
    """:func:`inspect_file` over ``paths`` with a thread pool (PIL and hashlib release the GIL)."""
    from PIL import ImageFile

    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise CadsdError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process, so truncated images "
            "would pass unnoticed; run validation in a process that leaves it False."
        )
    workers = workers or min(8, os.cpu_count() or 1)
    if workers == 1 or len(paths) < 2:
        return [inspect_file(p) for p in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(inspect_file, paths, chunksize=8))


def mode_findings(images: Sequence[tuple[str, str, str | None]]) -> list[tuple[str, str, str, bool]]:
    """Findings on image modes, ``images`` being ``(path, mode, format)``: a list of
    ``(kind, path, message, is_problem)``.

    RGB is fine. A mode that loaders convert (:mod:`cadsd.format.images`: 8-bit modes, 16-bit
    greyscale scaled to 8 bits) gives one warning per mode (naming an example); any other mode
    (32-bit, float) is a problem per image, as loaders refuse it.
    """
    by_mode: dict[tuple[str, str | None], list[str]] = defaultdict(list)
    for path, mode, fmt in images:
        if mode != "RGB":
            by_mode[(mode, fmt)].append(path)
    out = []
    for (mode, fmt), paths in sorted(by_mode.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        problem = mode_problem(mode, fmt)
        if problem is None:
            how = ("16-bit; loaders scale them to 8 bits (v / 257)" if is_16bit(mode, fmt)
                   else "not RGB; loaders convert them to RGB")
            out.append(("mode", paths[0], f"{len(paths)} image(s) in mode {mode}, {how}", False))
        else:
            for path in paths:
                out.append(("mode", path, problem, True))
    return out
