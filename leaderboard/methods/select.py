"""``--methods`` and ``--suite``: which methods a run names, and their classes.

``all`` is the built-in methods (:mod:`.builtin`) that are not variants: the paper's methods
and baselines and this project's own method, never outside ones (installing a package does not
change the table). Outside methods join a run's registry by import path ``module:Class`` or an
installed entry point's name (:mod:`.outside`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from leaderboard.errors import UsageError
from leaderboard.methods import anomalib, outside
from leaderboard.methods.builtin import METHODS, SUITES
from leaderboard.methods.entry import BUILTIN, PROJECT, MethodEntry

if TYPE_CHECKING:
    from baselines.base import Detector


def builtin_or(registry: Mapping[str, MethodEntry] | None) -> Mapping[str, MethodEntry]:
    """``registry``, or the built-in methods when it is None."""
    return METHODS if registry is None else registry


def runnable(registry: Mapping[str, MethodEntry] | None = None) -> list[str]:
    """The names ``all`` stands for: implemented built-in methods that are not variants, in
    registry order (this project's method among them; its study variants run with
    ``--suite dual``)."""
    return [n for n, e in builtin_or(registry).items()
            if e.implemented and e.origin in (BUILTIN, PROJECT) and e.variant_of is None]


def suite(name: str, registry: Mapping[str, MethodEntry] | None = None) -> list[str]:
    """The methods of suite ``name``: each variant's base method first, then its variants."""
    reg = builtin_or(registry)
    if name not in SUITES:
        raise UsageError(f"unknown suite {name!r}; suites: {', '.join(SUITES)}")
    out: list[str] = []
    for n, e in reg.items():
        if e.suite == name and e.implemented:
            if e.variant_of and e.variant_of not in out:
                out.append(e.variant_of)
            out.append(n)
    return sorted(out, key=lambda n: (reg[n].variant_of or n, reg[n].variant_of is not None))


def resolve(spec: str, registry: Mapping[str, MethodEntry] | None = None
            ) -> tuple[list[str], dict[str, MethodEntry]]:
    """Parse ``--methods``: a comma-separated list (order kept, no repeats) of ``all``,
    registered names, import paths ``module:Class`` and installed entry points' names. Returns
    the names and the registry with the outside methods added."""
    reg = dict(builtin_or(registry))
    items = list(dict.fromkeys(n.strip() for n in spec.split(",") if n.strip()))
    if not items:
        raise UsageError("--methods is empty; pass `all` or names from `bench list`")
    plugins: dict[str, outside.Plugin] | None = None
    names: list[str] = []
    for item in items:
        if item == "all":
            found = runnable(reg)
            if not found:
                raise UsageError("no method is registered yet; see `bench list`")
            names += found
            continue
        if anomalib.named(item):
            for entry in anomalib.entries(item, reg):
                reg[entry.name] = entry
                names.append(entry.name)
            continue
        if ":" in item:
            entry = outside.from_import_path(item, reg)
        else:
            if plugins is None:
                plugins = outside.entry_points()
            if item in plugins:
                entry = outside.from_entry_point(plugins[item], reg)
            elif item in reg:
                entry = reg[item]
                if not entry.implemented:
                    raise UsageError(f"method {item!r} is not implemented yet; implemented: "
                                     f"{', '.join(runnable(reg))}")
            else:
                extra = f"; installed entry points: {', '.join(plugins)}" if plugins else ""
                raise UsageError(
                    f"unknown method {item!r}; built-in methods: {', '.join(runnable(reg))} (or "
                    f"`all`){extra}; an outside method is named by its import path "
                    "module:Class (see `bench list`)"
                )
        if entry.name in reg and reg[entry.name] != entry:
            raise UsageError(f"--methods {item}: two methods are named {entry.name!r} "
                             f"({reg[entry.name].target} and {entry.target}); rename one")
        reg[entry.name] = entry
        names.append(entry.name)
    return list(dict.fromkeys(names)), reg


def load_class(name: str, registry: Mapping[str, MethodEntry] | None = None) -> type[Detector]:
    """Import and return the Detector class registered as ``name``."""
    reg = builtin_or(registry)
    if name not in reg or not reg[name].implemented:
        raise UsageError(f"method {name!r} is not registered or not implemented; see `bench list`")
    return outside.import_class(reg[name].target or "", f"method {name!r} ({reg[name].target})")


def saved_classes(trusted: Sequence[str] = ()) -> Callable[[str], type[Detector]]:
    """What a saved model file's header may name (``Detector.load(path, classes=...)``): a
    built-in method's class, an installed entry point's, or one the user names (``trusted``:
    ``module:Class`` import paths or method names). Anything else is refused before any
    module is imported, so a downloaded file cannot run code."""
    def resolve_target(target: str) -> type[Detector]:
        allowed = {e.target for e in METHODS.values() if e.target}
        allowed |= {p.target for p in outside.entry_points().values()}
        if target.startswith("baselines.anomalib_zoo:"):  # the bridge's classes: named, not paths
            from baselines.anomalib_zoo import ZOO

            allowed |= {f"baselines.anomalib_zoo:{n}" for n in ZOO}
        for item in trusted:
            allowed.add(METHODS[item].target if item in METHODS else item)
        if target not in allowed:
            raise UsageError(
                f"the model file names the class {target!r}, which is neither a built-in method "
                "nor an installed entry point, so it is not imported (a file could run code "
                f"that way); if you trust it, name it: bench predict --method {target} ...")
        return outside.import_class(target, f"the model file's class {target!r}")

    return resolve_target


def describe(entry: MethodEntry, klass: type[Detector]) -> tuple[str, str]:
    """``(description, paper)`` of a method: its class's, and for a variant what it changes."""
    if entry.variant_of:
        return entry.description or f"{klass.description} with {dict(entry.preset)}", \
            entry.paper or klass.paper
    return (klass.description or entry.description
            or (klass.__doc__ or "").strip().split("\n")[0]), klass.paper or entry.paper
