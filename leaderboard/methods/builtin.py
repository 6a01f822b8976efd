"""The built-in methods as data: name -> ``module:Class``, imported only when a method is used.

Adding a method is one file (a :class:`baselines.base.Detector` subclass, which says what it
is: ``description``, ``paper``) plus one line here; the contract check
(:func:`leaderboard.testing.check_detector`) then covers it with no other change. A variant
(an ablation, a study row) is a line with a ``preset`` of settings and a description of what it
changes. A method not implemented yet can be listed with ``target=None`` so ``bench list`` can
say so; it is never part of ``all``.
"""

from __future__ import annotations

from leaderboard.methods.entry import PROJECT, MethodEntry

SA = "sa_patchcore.model:SAPatchCore"
SA_EQ4 = "sa_patchcore.model:SAPatchCoreEq4"
DUAL = "sa_patchcore_dual"
DUAL_TARGET = "sa_patchcore.dual:DualPatchCore"


def _ablations(base: str, target: str, attention: str) -> tuple[MethodEntry, ...]:
    """The paper's sec. V-B ablations of one attention variant, as registered variants."""
    rows = (
        ("avgpool", "with 3x3 average pooling before the attention (Table 8)",
         {"sa_pooling": "avg"}),
        ("nopool", "with no pooling before the attention (Table 8)", {"sa_pooling": "none"}),
        ("layer2and3", "over PatchCore's layer2+layer3 embedding, both average-pooled (Table 7)",
         {"sa_layers": "layer2+layer3", "sa_pooling": "avg"}),
    )
    return tuple(MethodEntry(f"{base}-{tag}", target, f"{attention} {what}", preset=preset,
                             variant_of=base, suite="ablations") for tag, what, preset in rows)


def _dual_study() -> tuple[MethodEntry, ...]:
    """This project's dual method and the variants its study compares (``--suite dual``)."""
    rows = (
        ("local", "its local branch alone (scores as PatchCore)", {"branches": "local"}),
        ("global", ("its global branch alone (Mahalanobis distance of the mean attended "
                   "embedding; map: each patch's share of it)"), {"branches": "global"}),
        ("maxglobal", ("SA-PatchCore's own bank, image score (largest patch distance) and map "
                      "as the global branch's"), {"global_score": "max"}),
        ("uncalibrated", "fused by max of the raw distances (no fold calibration)",
         {"calibrate": False}),
        ("zscore", ("calibrated with the held-out folds' mean and std (z-score) instead of "
                   "their 0.95 quantile"), {"calibration": "zscore"}),
    )
    return (MethodEntry(DUAL, DUAL_TARGET, origin=PROJECT, suite="dual"),
            *(MethodEntry(f"{DUAL}-{tag}", DUAL_TARGET, f"Dual PatchCore: {what}",
                          preset=preset, variant_of=DUAL, suite="dual", origin=PROJECT)
              for tag, what, preset in rows))


METHODS: dict[str, MethodEntry] = {
    e.name: e
    for e in (
        MethodEntry("padim", "baselines.padim:PaDiM"),
        MethodEntry("patchcore", "baselines.patchcore:PatchCore"),
        MethodEntry("sa_patchcore", SA),
        MethodEntry("sa_patchcore_eq4", SA_EQ4),
        *_ablations("sa_patchcore", SA, "SA-PatchCore (per-channel attention)"),
        *_ablations("sa_patchcore_eq4", SA_EQ4, "SA-PatchCore (eq. 4 attention)"),
        *_dual_study(),
        MethodEntry("patchsvdd", "baselines.patchsvdd:PatchSVDD"),
        MethodEntry("cs_flow", "baselines.cs_flow:CSFlow"),
    )
}

#: suite name -> what it is, for ``bench run --suite`` and ``bench list``
SUITES = {"ablations": "SA-PatchCore's default and the paper's Table 7 and Table 8 variants, "
                       "for both attention variants",
          "dual": "this project's sa_patchcore_dual and its study: local branch alone, global "
                  "branch alone, uncalibrated fusion, z-score and quantile calibration"}
