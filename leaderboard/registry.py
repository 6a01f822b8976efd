"""Method registry: name -> "module:Class", imported only when a method is used.

The built-in methods are listed here: adding one is one file (a :class:`baselines.base.Detector`
subclass) plus one line; the contract check (:func:`leaderboard.testing.check_detector`) then
covers it with no other change. A method not implemented yet can be listed with ``target=None``
so ``bench list`` can say so; such entries are never part of ``all``. Methods from outside the
repository (an import path ``module:Class``, or an installed package's entry point in the group
``cadsd_bench.methods``) join a run's registry through :func:`resolve`
(:mod:`leaderboard.outside`); ``all`` is always the built-in methods only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from leaderboard.errors import UsageError

if TYPE_CHECKING:
    from baselines.base import Detector


@dataclass(frozen=True)
class MethodEntry:
    """One method a run can name.

    A *variant* is a registered method's class with some settings fixed (``preset``), e.g. an
    ablation of the paper: it runs as its own leaderboard row. ``origin`` says where the method
    comes from: ``builtin`` (the paper's methods and baselines), ``project`` (a method of this
    project's own, not from any paper), or, for outside methods, ``import path`` / ``entry
    point`` with their provenance (distribution, version, source file and its sha256).
    """

    name: str
    target: str | None  # "module:Class"; None = planned, not implemented yet
    description: str = ""
    paper: str = ""
    preset: Mapping[str, Any] = field(default_factory=dict)
    variant_of: str | None = None
    suite: str | None = None  # the suite it belongs to (``bench run --suite NAME``)
    origin: str = "builtin"
    distribution: str | None = None
    version: str | None = None
    source_file: str | None = None
    source_sha256: str | None = None

    @property
    def implemented(self) -> bool:
        return self.target is not None

    @property
    def outside(self) -> bool:
        """From outside this repository (an import path or an entry point)."""
        return self.origin in ("import path", "entry point")


SA_PAPER = "Ishida et al., IEEE Access 2023"


def _ablations(base: str, target: str, attention: str) -> tuple[MethodEntry, ...]:
    """The paper's sec. V-B ablations of one attention variant, as registered variants."""
    return (
        MethodEntry(f"{base}-avgpool", target,
                    f"{attention} with 3x3 average pooling before the attention (Table 8)",
                    SA_PAPER, preset={"sa_pooling": "avg"}, variant_of=base, suite="ablations"),
        MethodEntry(f"{base}-nopool", target,
                    f"{attention} with no pooling before the attention (Table 8)",
                    SA_PAPER, preset={"sa_pooling": "none"}, variant_of=base, suite="ablations"),
        MethodEntry(f"{base}-layer2and3", target,
                    f"{attention} over PatchCore's layer2+layer3 embedding, both average-pooled "
                    "(Table 7)", SA_PAPER, preset={"sa_layers": "layer2+layer3", "sa_pooling": "avg"},
                    variant_of=base, suite="ablations"),
    )


DUAL = "sa_patchcore_dual"
DUAL_TARGET = "sa_patchcore.dual:DualPatchCore"


def _dual_study() -> tuple[MethodEntry, ...]:
    """This project's dual method and the variants its study compares (``--suite dual``)."""
    return (
        MethodEntry(DUAL, DUAL_TARGET,
                    "Dual PatchCore: PatchCore's local bank and SA-PatchCore's attended "
                    "embedding from one backbone pass (global image score: Mahalanobis "
                    "distance of the mean embedding), each scaled by held-out training folds' "
                    "scores, fused by max", origin="project", suite="dual"),
        MethodEntry(f"{DUAL}-local", DUAL_TARGET,
                    "Dual PatchCore's local branch alone (scores as PatchCore)",
                    preset={"branches": "local"}, variant_of=DUAL, suite="dual", origin="project"),
        MethodEntry(f"{DUAL}-global", DUAL_TARGET,
                    "Dual PatchCore's global branch alone (Mahalanobis distance of the mean "
                    "attended embedding; map: each patch's share of it)",
                    preset={"branches": "global"}, variant_of=DUAL, suite="dual",
                    origin="project"),
        MethodEntry(f"{DUAL}-maxglobal", DUAL_TARGET,
                    "Dual PatchCore with SA-PatchCore's own bank, image score (largest patch "
                    "distance) and map as the global branch's", preset={"global_score": "max"},
                    variant_of=DUAL, suite="dual", origin="project"),
        MethodEntry(f"{DUAL}-uncalibrated", DUAL_TARGET,
                    "Dual PatchCore fused by max of the raw distances (no fold calibration)",
                    preset={"calibrate": False}, variant_of=DUAL, suite="dual", origin="project"),
        MethodEntry(f"{DUAL}-zscore", DUAL_TARGET,
                    "Dual PatchCore calibrated with the held-out folds' mean and std (z-score) "
                    "instead of their 0.95 quantile", preset={"calibration": "zscore"},
                    variant_of=DUAL, suite="dual", origin="project"),
    )


METHODS: dict[str, MethodEntry] = {
    e.name: e
    for e in (
        MethodEntry(
            "padim",
            "baselines.padim:PaDiM",
            "Gaussian per patch position of layer1-3 features, Mahalanobis distance",
            "Defard et al., ICPR 2021",
        ),
        MethodEntry(
            "patchcore",
            "baselines.patchcore:PatchCore",
            "PatchCore: avg-pooled layer2+layer3 patches, 1% coreset, 1-NN distance",
            "Roth et al., CVPR 2022",
        ),
        MethodEntry(
            "sa_patchcore",
            "sa_patchcore.model:SAPatchCore",
            "SA-PatchCore (official code): layer3 max-pooled + per-channel self-attention",
            "Ishida et al., IEEE Access 2023",
        ),
        MethodEntry(
            "sa_patchcore_eq4",
            "sa_patchcore.model:SAPatchCoreEq4",
            "SA-PatchCore (paper eq. 4): layer3 max-pooled + attention over positions",
            "Ishida et al., IEEE Access 2023",
        ),
        *_ablations("sa_patchcore", "sa_patchcore.model:SAPatchCore",
                    "SA-PatchCore (per-channel attention)"),
        *_ablations("sa_patchcore_eq4", "sa_patchcore.model:SAPatchCoreEq4",
                    "SA-PatchCore (eq. 4 attention)"),
        *_dual_study(),
        MethodEntry(
            "patchsvdd",
            "baselines.patchsvdd:PatchSVDD",
            "Patch SVDD: self-supervised patch encoder, 1-NN distances at two scales",
            "Yi & Yoon, ACCV 2020",
        ),
        MethodEntry(
            "cs_flow",
            "baselines.cs_flow:CSFlow",
            "CS-Flow: cross-scale normalizing flow on 3-scale EfficientNet features",
            "Rudolph et al., WACV 2022",
        ),
    )
}


def _registry(registry: Mapping[str, MethodEntry] | None) -> Mapping[str, MethodEntry]:
    return METHODS if registry is None else registry


def runnable(registry: Mapping[str, MethodEntry] | None = None) -> list[str]:
    """The names ``all`` stands for: implemented built-in methods that are not variants, in
    registry order: the paper's methods and baselines and this project's own method (its row
    says so; its study variants run with ``--suite dual``), never outside methods (installing
    a package does not change the table)."""
    return [n for n, e in _registry(registry).items()
            if e.implemented and e.origin in ("builtin", "project") and e.variant_of is None]


#: suite name -> what it is, for ``bench run --suite`` and ``bench list``
SUITES = {"ablations": "SA-PatchCore's default and the paper's Table 7 and Table 8 variants, "
                       "for both attention variants",
          "dual": "this project's sa_patchcore_dual and its study: local branch alone, global "
                  "branch alone, uncalibrated fusion, z-score and quantile calibration"}


def suite(name: str, registry: Mapping[str, MethodEntry] | None = None) -> list[str]:
    """The methods of suite ``name``: each variant's base method first, then its variants."""
    reg = _registry(registry)
    if name not in SUITES:
        raise UsageError(f"unknown suite {name!r}; suites: {', '.join(SUITES)}")
    out: list[str] = []
    for n, e in reg.items():
        if e.suite == name and e.implemented:
            if e.variant_of and e.variant_of not in out:
                out.append(e.variant_of)
            out.append(n)
    return sorted(out, key=lambda n: (reg[n].variant_of or n, reg[n].variant_of is not None))


def select(spec: str, registry: Mapping[str, MethodEntry] | None = None) -> list[str]:
    """The names of ``--methods`` (see :func:`resolve`)."""
    return resolve(spec, registry)[0]


def resolve(spec: str, registry: Mapping[str, MethodEntry] | None = None
            ) -> tuple[list[str], dict[str, MethodEntry]]:
    """Parse ``--methods``: a comma-separated list (order kept, no repeats) of ``all`` (the
    built-in methods), registered names, import paths ``module:Class`` and installed entry
    points' names. Returns the names and the registry with the outside methods added."""
    from leaderboard import outside

    reg = dict(_registry(registry))
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
                    raise UsageError(f"method {item!r} ({entry.paper}) is not implemented yet; "
                                     f"implemented: {', '.join(runnable(reg))}")
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
    from leaderboard import outside

    reg = _registry(registry)
    if name not in reg or not reg[name].implemented:
        raise UsageError(f"method {name!r} is not registered or not implemented; see `bench list`")
    return outside.import_class(reg[name].target or "", f"method {name!r} ({reg[name].target})")


def list_rows(registry: Mapping[str, MethodEntry] | None = None
              ) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    """``bench list``: ``(name, status, description, paper or package)`` per method, the
    built-in ones first, then the installed entry points (marked as outside methods), and the
    lines that say how outside methods join a run."""
    from leaderboard import outside
    from leaderboard.errors import BenchError

    reg = _registry(registry)
    rows = []
    budget_notes: list[str] = []
    for name, entry in reg.items():
        desc, paper, status = entry.description, entry.paper, "not yet implemented"
        if entry.implemented:
            try:
                klass = load_class(name, reg)
                if entry.variant_of:
                    desc += f" (variant of {entry.variant_of}: {dict(entry.preset)})"
                else:
                    desc, paper = klass.description or desc, klass.paper or paper
                budgets = f" (budgets: {', '.join(klass.budgets)})" if klass.budgets else ""
                status = "ready" + budgets
                if klass.budgets and not entry.variant_of:
                    budget_notes.append(budget_line(name, klass))
            except BenchError as err:  # show a broken registration, go on
                status = f"import error: {err}"
            if entry.origin == "project":
                paper = "this project's method (not from a paper)"
        rows.append((name, status, desc, paper))
    plugins = outside.entry_points()
    for name, plugin in plugins.items():
        package = f"outside method: package {outside.package_text(plugin)}"
        try:
            entry = outside.from_entry_point(plugin, reg)
            klass = load_class(name, {name: entry})
            budgets = f" (budgets: {', '.join(klass.budgets)})" if klass.budgets else ""
            rows.append((name, "ready" + budgets, entry.description,
                         package + (f"; {klass.paper}" if klass.paper else "")))
        except BenchError as err:
            rows.append((name, f"refused: {err}", plugin.target, package))
    notes = [
        ("`--methods all` runs the paper's methods and baselines and this project's "
         "sa_patchcore_dual (marked \"this project's method\"; its study: `--suite dual`), "
         "never outside ones (the table does not change when a package is installed)."),
        ("Outside methods: name an installed entry point (`--methods all,NAME`), or any "
         "Detector subclass by import path (`--methods patchcore,mypkg.mymod:MyDetector`); "
         f"packages register them in the entry-point group `{outside.GROUP}`. See "
         f"{outside.DOCS}."),
    ]
    if not plugins:
        notes.insert(1, f"No package has registered a method in `{outside.GROUP}`.")
    return rows, budget_notes + notes


def budget_line(name: str, klass: type[Detector]) -> str:
    """What each of a method's budgets changes: ``cs_flow budgets: paper = the official
    settings; quick = input_size 768 -> 256, ...``."""
    defaults = klass.settings()
    parts = []
    for budget, changes in klass.budgets.items():
        what = ", ".join(f"{k} {defaults[k].default!r} -> {v!r}" for k, v in changes.items())
        parts.append(f"{budget} = {what or 'the official settings'}")
    return f"{name} budgets: " + "; ".join(parts) + "."
