"""Links inside a dataset folder: followed while they stay inside the dataset, refused (a
:class:`~cadsd.errors.LinkError` naming the link and its target) when they leave it.

Every reader goes through here: the CAD-SD indexer (:func:`cadsd.format.layout.index`), the
benchmarks' (:meth:`cadsd.zoo.base.Benchmark.samples`), ``cadsd validate`` and the folder
copies of ``cadsd download --source DIR``. A link to ``/`` or to the home folder is therefore
never read or copied, and a folder link that loops back above itself is refused before a copy
nests it until the path is too long.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cadsd.errors import LinkError


def _target(link: Path) -> str:
    try:
        return os.readlink(link)
    except OSError:
        return str(link.resolve())


def link_out(path: Path, root: Path) -> tuple[Path, str] | None:
    """``(link, its target)`` when ``path`` (under ``root``) resolves outside ``root``: the
    first link on the way down from ``root`` that leaves it (``path`` itself or a folder above
    it). None when ``path`` stays inside."""
    real_root = root.resolve()
    if path.resolve().is_relative_to(real_root):
        return None
    step = root
    for part in path.relative_to(root).parts:
        step = step / part
        if step.is_symlink() and not step.resolve().is_relative_to(real_root):
            return step, _target(step)
    return path, str(path.resolve())


def leaving_message(link: Path, target: str, root: Path) -> str:
    """The one message for a link that leaves the dataset."""
    return (f"{link} is a link to {target}, outside the dataset {root}; links may not leave "
            "the dataset: copy the file in, or remove the link")


def check_inside(path: Path, root: Path) -> Path:
    """``path`` when it resolves inside ``root``, else :class:`LinkError`."""
    found = link_out(path, root)
    if found is not None:
        raise LinkError(leaving_message(*found, root))
    return path


class Inside:
    """:func:`check_inside` for many paths under one ``root``, cheaply: each folder is
    resolved once, and a file only when it is a link itself."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._real = root.resolve()
        self._folders: dict[Path, bool] = {}  # folder -> resolves inside root

    def __call__(self, path: Path) -> Path:
        inside = self._folders.get(path.parent)
        if inside is None:
            inside = self._folders[path.parent] = path.parent.resolve().is_relative_to(self._real)
        if not inside or path.is_symlink():
            check_inside(path, self.root)  # the slow way, which names the link
        return path


def copy_dataset(src: Path, dst: Path) -> Path:
    """Copy the folder ``src`` to ``dst`` (new), following links that stay inside ``src``
    (they become plain files and folders) and refusing, before anything is copied, a link
    that leaves it, a folder link that loops back above itself, or a broken link."""
    root = src.resolve()
    plan: list[tuple[Path | None, Path]] = []  # (source file or None for a folder, where)

    def walk(folder: Path, rel: Path, above: tuple[Path, ...]) -> None:
        for entry in sorted(folder.iterdir(), key=lambda p: p.name):
            check_inside(entry, src)
            if entry.is_symlink() and not entry.exists():
                raise LinkError(f"{entry} is a broken link (to {_target(entry)}); remove it")
            if entry.is_dir():
                real = entry.resolve()
                if real in above:
                    raise LinkError(f"{entry} is a link to {_target(entry)}, a folder that holds "
                                    "it: a loop; remove the link")
                plan.append((None, rel / entry.name))
                walk(entry, rel / entry.name, (*above, real))
            elif entry.is_file():
                plan.append((entry, rel / entry.name))

    walk(src, Path(), (root,))
    dst.mkdir(parents=True)
    for file, rel in plan:  # parents come before their contents
        if file is None:
            (dst / rel).mkdir()
        else:
            shutil.copy2(file, dst / rel)
    return dst
