"""Method registry: name -> "module:Class", imported only when a method is used.

Adding a method is one file (a :class:`baselines.base.Detector` subclass) plus one line here; the
contract tests (``tests/test_contract.py``) then cover it with no other change. A method not
implemented yet can be listed with ``target=None`` so ``bench list`` can say so; such entries are
never part of ``all``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from leaderboard.errors import BenchError

if TYPE_CHECKING:
    from baselines.base import Detector


@dataclass(frozen=True)
class MethodEntry:
    """One registered method. ``hidden`` methods (harness tests) are left out of ``all``.

    A *variant* is a registered method's class with some settings fixed (``preset``), e.g. an
    ablation of the paper: it runs as its own leaderboard row.
    """

    name: str
    target: str | None  # "module:Class"; None = planned, not implemented yet
    description: str = ""
    paper: str = ""
    hidden: bool = False
    preset: Mapping[str, Any] = field(default_factory=dict)
    variant_of: str | None = None
    suite: str | None = None  # the suite it belongs to (``bench run --suite NAME``)

    @property
    def implemented(self) -> bool:
        return self.target is not None


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


METHODS: dict[str, MethodEntry] = {
    e.name: e
    for e in (
        MethodEntry(
            "dummy",
            "leaderboard.dummy:PixelStats",
            "per-pixel z-score against the training images (harness tests only)",
            hidden=True,
        ),
        MethodEntry(
            "dummy_trained",
            "leaderboard.dummy:ToyTrained",
            "per-cell Gaussian fitted by gradient descent over epochs (harness tests only)",
            hidden=True,
        ),
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
    """The names ``all`` stands for: implemented, not hidden, not a variant, in registry order."""
    return [n for n, e in _registry(registry).items()
            if e.implemented and not e.hidden and e.variant_of is None]


#: suite name -> what it is, for ``bench run --suite`` and ``bench list``
SUITES = {"ablations": "SA-PatchCore's default and the paper's Table 7 and Table 8 variants, "
                       "for both attention variants"}


def suite(name: str, registry: Mapping[str, MethodEntry] | None = None) -> list[str]:
    """The methods of suite ``name``: each variant's base method first, then its variants."""
    reg = _registry(registry)
    if name not in SUITES:
        raise BenchError(f"unknown suite {name!r}; suites: {', '.join(SUITES)}")
    out: list[str] = []
    for n, e in reg.items():
        if e.suite == name and e.implemented:
            if e.variant_of and e.variant_of not in out:
                out.append(e.variant_of)
            out.append(n)
    return sorted(out, key=lambda n: (reg[n].variant_of or n, reg[n].variant_of is not None))


def select(spec: str, registry: Mapping[str, MethodEntry] | None = None) -> list[str]:
    """Parse ``--methods``: ``all`` or a comma-separated list of names (order kept, no repeats)."""
    reg = _registry(registry)
    if spec.strip() == "all":
        names = runnable(reg)
        if not names:
            raise BenchError("no method is registered yet; see `bench list`")
        return names
    names = list(dict.fromkeys(n.strip() for n in spec.split(",") if n.strip()))
    if not names:
        raise BenchError("--methods is empty; pass `all` or names from `bench list`")
    for name in names:
        if name not in reg:
            known = ", ".join(runnable(reg))
            raise BenchError(f"unknown method {name!r}; known methods: {known} (or `all`)")
        if not reg[name].implemented:
            raise BenchError(
                f"method {name!r} ({reg[name].paper}) is not implemented yet; "
                f"implemented: {', '.join(runnable(reg))}"
            )
    return names


def load_class(name: str, registry: Mapping[str, MethodEntry] | None = None) -> type[Detector]:
    """Import and return the Detector class registered as ``name``."""
    from baselines.base import Detector

    reg = _registry(registry)
    if name not in reg or not reg[name].implemented:
        raise BenchError(f"method {name!r} is not registered or not implemented; see `bench list`")
    module_name, _, attr = reg[name].target.partition(":")  # type: ignore[union-attr]
    klass = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(klass, type) and issubclass(klass, Detector)):
        raise BenchError(f"{reg[name].target} is not a baselines.base.Detector subclass")
    return klass
