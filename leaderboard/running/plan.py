"""What each method of a run will be, decided and checked before the run folder is made.

For every selected method: its class, its budget (a named set of setting overrides; ``auto`` is
``paper`` on a GPU and ``quick`` on a CPU; methods that do not train have none), the user's
``--param`` overrides on top (every key checked against the method's settings, every value
against its type: a mistake exits 2 naming the valid keys), its backbone (``auto``: the paper's
where its weights load, else the offline fallback; weights resolved once, here) and its input.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from baselines.base import Detector
from baselines.errors import DetectorError
from baselines.preprocess import InputSpec
from baselines.settings import RUN_SETTINGS, SettingError, check_settings, describe
from leaderboard.errors import UsageError
from leaderboard.methods import MethodEntry, load_class
from leaderboard.methods.select import describe as describe_method
from leaderboard.records.schema import MethodInfo

BUDGETS = ("auto", "paper", "quick", "smoke")
#: what each budget is for, said when it is used
BUDGET_NOTES = {
    "paper": "the official settings",
    "quick": ("every part of the algorithm kept, at settings small enough to train in minutes on "
              "a CPU: shorter training and, where a method needs it, smaller inputs and "
              "narrower layers (each method's changes are listed below)"),
    "smoke": "seconds of training at tiny settings: checks the plumbing only, never a result",
}


@dataclass(frozen=True)
class MethodPlan:
    """One method of the run, as its cells will build it."""

    name: str
    entry: MethodEntry
    klass: type[Detector]
    budget: str | None  # None: the method does not train, budgets do not apply
    budget_overrides: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # --param, on top of the budget
    backbone: str | None = None
    weights: str | None = None

    @property
    def params(self) -> dict[str, Any]:
        """The settings that differ from the class defaults: budget, then --param."""
        return {**dict(self.entry.preset), **self.budget_overrides, **self.overrides}

    def settings(self) -> dict[str, Any]:
        """Every setting (defaults with :attr:`params` applied), run settings left out."""
        out = {k: s.default for k, s in self.klass.settings().items() if k not in RUN_SETTINGS}
        return {**out, **self.params}

    def settings_with_backbone(self) -> dict[str, Any]:
        """:meth:`settings` and the run's backbone: what the class's classmethods (input,
        training cost, cost notes) read before any detector is built."""
        return {**self.settings(), "backbone": self.backbone}

    @property
    def input(self) -> InputSpec:
        """The method's input; its normalisation may name the run's backbone."""
        return self.klass.input_for(self.settings_with_backbone())

    def build(self, device: str, seed: int) -> Detector:
        """The cell's detector."""
        run = {"device": device, "seed": seed}
        if self.klass.backbone_role is not None:
            run.update(backbone=self.backbone, weights=self.weights)
        accepted = self.klass.settings()
        return self.klass(**{k: v for k, v in run.items() if k in accepted}, **self.params)


def parse_param_items(items: tuple[str, ...] | list[str]) -> list[tuple[str | None, str, Any]]:
    """``--param METHOD.KEY=VALUE`` or ``KEY=VALUE`` -> ``(method or None, key, value)``;
    values are JSON when they parse (numbers, true/false, lists), else strings."""
    out = []
    for item in items:
        key, eq, raw = item.partition("=")
        if not eq or not key:
            raise UsageError(f"--param {item!r}: write METHOD.KEY=VALUE, e.g. "
                             "patchcore.coreset_ratio=0.1")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        method, dot, name = key.rpartition(".")
        out.append((method if dot else None, name, value))
    return out


def assign_params(items: list[tuple[str | None, str, Any]],
                  classes: Mapping[str, type[Detector]],
                  aliases: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Give each ``--param`` to its method, checked and converted. A key without a method
    prefix is for every selected method, so each of them must have it. Unknown keys exit 2
    naming the valid ones (and the prefixed form when only some methods have the key).
    ``aliases`` maps other names of a method (an outside method's class name) to its name."""
    out: dict[str, dict[str, Any]] = {m: {} for m in classes}
    for method, key, value in items:
        method = (aliases or {}).get(method, method) if method is not None else None
        if method is not None and method not in classes:
            raise UsageError(f"--param {method}.{key}: {method!r} is not among --methods "
                             f"({', '.join(classes)})")
        if method is None:
            having = [m for m, k in classes.items() if key in k.settings() and key not in RUN_SETTINGS]
            lacking = [m for m in classes if m not in having]
            if lacking and key not in RUN_SETTINGS:
                valid = "; ".join(f"{m}: {_keys(k)}" for m, k in classes.items())
                hint = (f" To set it for {' and '.join(having)} only, write "
                        f"{having[0]}.{key}={json.dumps(value)}." if having else "")
                raise UsageError(
                    f"--param {key}={json.dumps(value)} is for every selected method, but "
                    f"{', '.join(lacking)} {'has' if len(lacking) == 1 else 'have'} no setting "
                    f"{key!r}.{hint} Valid keys: {valid}"
                )
        for m in [method] if method is not None else list(classes):
            try:
                out[m].update(check_settings(classes[m], {key: value}, "--param "))
            except SettingError as err:
                raise UsageError(str(err)) from None
    return out


def _keys(klass: type[Detector]) -> str:
    return describe(s for k, s in klass.settings().items() if k not in RUN_SETTINGS) or "none"


def resolve_budget(budget: str, device: str) -> str:
    """``auto`` -> ``paper`` on a GPU, ``quick`` on a CPU; other names are checked."""
    if budget not in BUDGETS:
        raise UsageError(f"--budget {budget!r}: choose one of {', '.join(BUDGETS)}")
    if budget == "auto":
        return "paper" if device.startswith("cuda") else "quick"
    return budget


def plan_methods(
    names: list[str],
    registry: Mapping[str, MethodEntry],
    param_items: tuple[str, ...] | list[str],
    budget: str,
) -> list[MethodPlan]:
    """Plans with budgets and --param applied and validated (backbones not resolved yet)."""
    parsed = parse_param_items(param_items)
    classes = {n: load_class(n, registry) for n in names}
    params = assign_params(parsed, classes, param_aliases(names, registry, classes))
    plans = []
    for name in names:
        klass, entry = classes[name], registry[name]
        chosen: str | None = None
        over: dict[str, Any] = {}
        if klass.budgets:
            if budget not in klass.budgets and budget != "paper":
                raise UsageError(f"--budget {budget}: {name} has budgets "
                                 f"{', '.join(klass.budgets)}")
            chosen, over = budget, dict(klass.budgets.get(budget, {}))
        plan = MethodPlan(name, entry, klass, chosen, over, params[name])
        try:
            klass.validate(plan.settings())
        except DetectorError as err:
            raise UsageError(f"{name}: {err}") from None
        plans.append(plan)
    return plans


def check_data(plans: list[MethodPlan], n_images: int) -> None:
    """Settings that depend on the training set's size (``n_images``: the smallest training
    set any cell of the run fits on), checked before the run folder is made."""
    for p in plans:
        try:
            p.klass.check_data(p.settings(), n_images)
        except DetectorError as err:
            raise UsageError(f"{p.name}: {err}") from None


def param_aliases(names: list[str], registry: Mapping[str, MethodEntry],
                  classes: Mapping[str, type[Detector]]) -> dict[str, str]:
    """``--param`` prefixes that also name an outside method: its class's name and
    ``__name__`` (``--param MyDetector.k=1``) and its import path. A prefix that names two
    selected methods is left out (it is ambiguous)."""
    found: dict[str, set[str]] = {}
    from leaderboard.methods import anomalib
    from leaderboard.methods.entry import ANOMALIB

    for n in names:
        if registry[n].origin == ANOMALIB:
            for alias in anomalib.aliases(registry[n]):
                found.setdefault(alias, set()).add(n)
        if registry[n].outside:
            klass = classes[n]
            for alias in (klass.__name__, klass.name, registry[n].target or ""):
                found.setdefault(alias, set()).add(n)
    return {a: next(iter(ns)) for a, ns in found.items() if len(ns) == 1 and a not in names}


def budget_lines(plans: list[MethodPlan], budget: str, device: str, n_train: int,
                 gemm_gflops: Callable[[], float]) -> list[str]:
    """What the budget changes and what training will cost, one line per trained method, for
    ``bench run`` to print before it starts (nothing when no selected method trains)."""
    trained = [p for p in plans if p.budget is not None]
    if not trained:
        return []
    why = {"quick": " (the default on a CPU; `--budget paper` runs the official settings)"
           }.get(budget, "")
    lines = [f"Budget: {budget}{why}: {BUDGET_NOTES.get(budget, '')}. Recorded in every result."]
    rate = None
    for p in trained:
        defaults = p.klass.settings()
        changes = ", ".join(
            f"{k} {defaults[k].default!r} -> {v!r}" for k, v in p.budget_overrides.items()
        ) or "the official settings"
        if p.overrides:
            changes += "; then --param " + ", ".join(f"{k}={v!r}" for k, v in p.overrides.items())
        flops = p.klass.training_flops(p.settings_with_backbone(), n_train)
        cost = ""
        if flops:
            rate = rate or gemm_gflops()
            hours = flops / (rate * 1e9) / 3600
            when = f"{hours:.0f} h" if hours >= 2 else f"{hours * 60:.0f} min"
            cost = (f"; trains {_flops(flops)}: about {when} at this {device}'s "
                    f"{rate:.0f} GFLOP/s matrix rate")
            if budget == "paper" and device == "cpu" and hours >= 2:
                cost += (" (about 20-70 minutes on a GPU of 10-30 TFLOP/s; `--budget quick` "
                         "trains in about 5 minutes)")
        lines.append(f"  {p.name}: {changes}{cost}")
    return lines


def cost_lines(plans: list[MethodPlan], n_train: int) -> list[str]:
    """The methods' own warnings about slow settings (:meth:`Detector.cost_note`)."""
    notes = (p.klass.cost_note(p.settings_with_backbone(), n_train) for p in plans)
    return [f"Note: {note}" for note in notes if note]


def _flops(x: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9)):
        if x >= scale:
            return f"{x / scale:.1f} {unit}"
    return f"{x:.0f} FLOP"


def describe_plan(plan: MethodPlan) -> MethodInfo:
    """The ``method`` block of a record, before the detector is built."""
    description, paper = describe_method(plan.entry, plan.klass)
    return MethodInfo(name=plan.name, target=plan.entry.target,
                      description=description, paper=paper,
                      variant_of=plan.entry.variant_of, budget=plan.budget,
                      budget_overrides=dict(plan.budget_overrides),
                      preset=dict(plan.entry.preset), overrides=dict(plan.overrides),
                      params=dict(plan.params), origin=plan.entry.origin,
                      distribution=plan.entry.distribution,
                      distribution_version=plan.entry.version,
                      source_file=plan.entry.source_file,
                      source_sha256=plan.entry.source_sha256)


def check_backbone_role(plan: MethodPlan, backbone: str) -> None:
    """A named ``--backbone`` must offer the layers the method taps."""
    from baselines.components.backbones import get_spec

    try:
        get_spec(backbone).role_layers(plan.klass.backbone_role or "")
        check = getattr(plan.klass, "check_backbone", None)
        if check is not None:  # a model that builds its backbone by name (anomalib's)
            check(backbone)
    except DetectorError as err:
        raise UsageError(f"--backbone {backbone} cannot run {plan.name}: {err}") from None


__all__ = ["BUDGETS", "MethodPlan", "budget_lines", "plan_methods"]
