"""A checksum manifest of a downloaded dataset, and `cadsd verify`.

The upstream Drive folder publishes no checksums, so `cadsd download` records the sha256 and
size of every file it placed (``cadsd-manifest.json`` at the dataset root). ``cadsd verify``
re-hashes the tree later and names each file that changed, went missing or appeared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from cadsd.errors import CadsdError
from cadsd.files import atomic_write_text, sha256_file, walk_files
from cadsd.format.links import link_out

MANIFEST_NAME = "cadsd-manifest.json"
SCHEMA_VERSION = 1
_CHUNK = 1 << 20


def _walk(root: Path) -> list[str]:
    """Every regular file under ``root`` (POSIX paths, sorted), except the manifest itself."""
    return [rel for rel in walk_files(root) if rel != MANIFEST_NAME]


def write_manifest(root: str | Path, *, source: str = "") -> Path:
    """Hash every file under ``root`` and write ``root/cadsd-manifest.json`` atomically."""
    root = Path(root)
    files = {
        rel: {"sha256": sha256_file(root / rel), "size": (root / rel).stat().st_size}
        for rel in _walk(root)
    }
    doc = {
        "schema_version": SCHEMA_VERSION,
        "algorithm": "sha256",
        "source": source,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": files,
    }
    return atomic_write_text(root / MANIFEST_NAME, json.dumps(doc, indent=1, sort_keys=True) + "\n")


def read_manifest(root: str | Path) -> dict:
    """The manifest of ``root``; a missing or unreadable one raises :class:`CadsdError`."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise CadsdError(
            f"no {MANIFEST_NAME} in {root}: only folders written by `cadsd download` have one. "
            "Run `cadsd download --source PATH --dest DIR` to import a copy with a manifest."
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        files = doc["files"]
        if not isinstance(files, dict):
            raise TypeError("files is not a mapping")
    except (ValueError, KeyError, TypeError) as err:
        raise CadsdError(
            f"{path} is not a valid manifest ({err}); download the dataset again"
        ) from err
    return doc


@dataclass
class VerifyReport:
    """What :func:`verify` found; ``ok`` when nothing changed, went missing or appeared."""

    root: Path
    checked: int = 0
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing or self.extra)

    def lines(self) -> list[str]:
        """One line per finding, e.g. ``changed  test/2_paint/003.jpg``."""
        return (
            [f"changed  {p}" for p in self.changed]
            + [f"missing  {p}" for p in self.missing]
            + [f"extra    {p}" for p in self.extra]
        )


def manifest_root(path: str | Path) -> Path:
    """The folder holding the manifest: ``path`` itself or its one wrapping folder."""
    path = Path(path).expanduser()
    if (path / MANIFEST_NAME).is_file():
        return path
    if path.is_dir():
        inner = [p for p in path.iterdir() if p.is_dir() and (p / MANIFEST_NAME).is_file()]
        if len(inner) == 1:
            return inner[0]
    if not path.exists():
        raise CadsdError(f"dataset folder not found: {path}. Run `cadsd download` first.")
    return path  # read_manifest names the problem


def verify(path: str | Path) -> VerifyReport:
    """Re-hash the files under ``path`` against its manifest (size first, then sha256)."""
    root = manifest_root(path)
    expected = read_manifest(root)["files"]
    report = VerifyReport(root=root)
    present = set(_walk(root))
    for rel, meta in sorted(expected.items()):
        target = root / rel
        if rel not in present:
            report.missing.append(rel)
            continue
        report.checked += 1
        if link_out(target, root) is not None:  # now a link out of the dataset: never read
            report.changed.append(rel)
            continue
        if target.stat().st_size != meta.get("size") or sha256_file(target) != meta.get("sha256"):
            report.changed.append(rel)
    report.extra = sorted(present - set(expected))
    return report
