"""Methods from outside this repository: an import path (``mypkg.mymod:MyDetector``) or an
installed package's entry point in the group ``cadsd_bench.methods`` (``name = "module:Class"``).

Either becomes a :class:`~leaderboard.methods.entry.MethodEntry` like a built-in one, with its
provenance (import path, distribution and version where it has one, sha256 of its source file),
so it gets everything a built-in gets: ``--param``, seeds, shots, budgets, Ray, resume, records
and a leaderboard row marked as an outside method. Every mistake (a module or class that does
not exist, a class that is not a Detector or lacks ``fit``/``predict``, a name that collides with
a built-in, an entry point that fails to import) is a :class:`~leaderboard.errors.UsageError`
(exit 2) raised before the run folder is made.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leaderboard.errors import UsageError
from leaderboard.methods.entry import ENTRY_POINT, IMPORT_PATH, MethodEntry

if TYPE_CHECKING:
    from baselines.base import Detector

#: the entry-point group an installed package registers its methods in
GROUP = "cadsd_bench.methods"
DOCS = "docs/adding-a-method.md"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")


@dataclass(frozen=True)
class Plugin:
    """One entry point of the group: its name, target and the package that declares it."""

    name: str
    target: str
    distribution: str | None
    version: str | None


def entry_points() -> dict[str, Plugin]:
    """The installed entry points of :data:`GROUP`, by name (read, not imported)."""
    out: dict[str, Plugin] = {}
    for ep in metadata.entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        out.setdefault(ep.name, Plugin(ep.name, ep.value, dist.name if dist else None,
                                       dist.version if dist else None))
    return out


def package_text(plugin: Plugin) -> str:
    who = plugin.distribution or "an unknown distribution"
    return f"{who} {plugin.version}" if plugin.version else who


def import_class(target: str, what: str) -> type[Detector]:
    """Import ``module:Class`` and check that it is a usable Detector subclass; ``what`` starts
    every message (``--methods mypkg.mod:Cls``, ``entry point x of package y 1.0``)."""
    module_name, colon, attr = target.partition(":")
    if not colon or not module_name or not attr:
        raise UsageError(f"{what}: write an import path as module:Class, e.g. "
                         "mypkg.detectors:MyDetector")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise UsageError(
                f"{what}: no module named {module_name!r} on this Python's path. Install its "
                f"package, or put the folder that holds it on PYTHONPATH (e.g. "
                f"PYTHONPATH=/path/to/folder bench run ...)"
            ) from None
        raise UsageError(f"{what}: importing {module_name} failed: {err}") from None
    except Exception as err:  # noqa: BLE001 - the user's module can raise anything on import
        raise UsageError(f"{what}: importing {module_name} failed: "
                         f"{type(err).__name__}: {err}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            found = ", ".join(detectors_in(module)) or "none"
            raise UsageError(f"{what}: module {module_name} has no {attr!r} (its Detector "
                             f"subclasses: {found})")
        obj = getattr(obj, part)
    return check_class(obj, what)


def detectors_in(module: Any) -> list[str]:
    """Names of the Detector subclasses defined in ``module`` (for error messages)."""
    from baselines.base import Detector

    return [n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, Detector)
            and v is not Detector and v.__module__ == module.__name__]


def check_class(obj: Any, what: str) -> type[Detector]:
    """``obj`` as a Detector subclass that defines ``fit`` and ``predict``, else a UsageError."""
    from baselines.base import Detector

    if not isinstance(obj, type):
        raise UsageError(f"{what} is a {type(obj).__name__}, not a class: point it at a "
                         f"subclass of baselines.base.Detector ({DOCS})")
    if not issubclass(obj, Detector):
        raise UsageError(f"{what}: {obj.__name__} is not a subclass of baselines.base.Detector; "
                         f"subclass it ({DOCS})")
    for method, sig in (("fit", "fit(self, train, progress=None)"),
                        ("predict", "predict(self, images) -> Prediction")):
        if getattr(obj, method) is getattr(Detector, method):
            raise UsageError(f"{what}: {obj.__name__} does not define {sig} ({DOCS})")
    return obj


def check_name(name: str, what: str, builtins: Mapping[str, MethodEntry]) -> None:
    """A method name must be a plain word (it names files and rows) and not a built-in's."""
    if not _NAME.match(name):
        raise UsageError(f"{what}: the method name {name!r} must start with a letter and hold "
                         "only letters, digits, '_' and '-' (it names record files and rows)")
    if name in builtins:
        raise UsageError(f"{what}: its name {name!r} is the built-in method's; give the class "
                         f"another name (class attribute name = '...')")


def source_of(klass: type) -> tuple[str | None, str | None]:
    """``(file, sha256)`` of the file that defines ``klass``; the file relative to the folder
    its top-level package lives in (``mypkg/mymod.py``), never an absolute path."""
    try:
        path = Path(inspect.getsourcefile(klass) or "")
    except TypeError:
        return None, None
    if not path.is_file():
        return None, None
    depth = klass.__module__.count(".") + 1 + (path.stem == "__init__")
    rel = Path(*path.parts[-depth:]).as_posix()
    return rel, hashlib.sha256(path.read_bytes()).hexdigest()


def distribution_of(module_name: str) -> tuple[str | None, str | None]:
    """The installed distribution that provides ``module_name``'s top-level package, and its
    version; ``(None, None)`` for a module that is only on the path."""
    top = module_name.split(".")[0]
    names = metadata.packages_distributions().get(top, [])
    if not names:
        return None, None
    try:
        return names[0], metadata.version(names[0])
    except metadata.PackageNotFoundError:
        return names[0], None


def from_import_path(target: str, builtins: Mapping[str, MethodEntry]) -> MethodEntry:
    """The entry of ``--methods module:Class``: named by the class's ``name``."""

    what = f"--methods {target}"
    klass = import_class(target, what)
    for entry in builtins.values():  # a built-in named by its import path is the built-in
        if entry.target == target and entry.variant_of is None:
            return entry
    check_name(klass.name, what, builtins)
    dist, version = distribution_of(klass.__module__)
    return _entry(klass.name, target, klass, IMPORT_PATH, dist, version)


def from_entry_point(plugin: Plugin, builtins: Mapping[str, MethodEntry]) -> MethodEntry:
    """The entry of an installed entry point (imported now: a failure names the package)."""
    what = f"entry point {plugin.name!r} of package {package_text(plugin)} ({GROUP})"
    if plugin.name in builtins:
        raise UsageError(f"{what}: {plugin.name!r} is also a built-in method's name, so "
                         "--methods cannot tell them apart; rename the entry point in that "
                         "package's pyproject.toml, or uninstall it")
    check_name(plugin.name, what, builtins)
    klass = import_class(plugin.target, what)
    return _entry(plugin.name, plugin.target, klass, ENTRY_POINT, plugin.distribution,
                  plugin.version)


def _entry(name: str, target: str, klass: type[Detector], origin: str, dist: str | None,
           version: str | None) -> MethodEntry:
    source, sha = source_of(klass)
    return MethodEntry(name, target, klass.description or (klass.__doc__ or "").strip()
                       .split("\n")[0], klass.paper, origin=origin, distribution=dist,
                       version=version, source_file=source, source_sha256=sha)


def ray_pythonpath(entries: list[MethodEntry]) -> list[str]:
    """The folders Ray workers need on their path to import these outside methods (where
    their top-level packages live): a local Ray instance's workers get them."""
    out: list[str] = []
    for e in entries:
        if e.origin != IMPORT_PATH or not e.target:
            continue
        module = sys.modules.get(e.target.partition(":")[0])
        path = getattr(module, "__file__", None)
        if not path:
            continue
        folder = Path(path).resolve().parent
        for _ in range(e.target.partition(":")[0].count(".") + (Path(path).stem == "__init__")):
            folder = folder.parent
        out.append(str(folder))
    return list(dict.fromkeys(out))
