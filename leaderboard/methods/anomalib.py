"""anomalib's models in a run: ``--methods anomalib:Patchcore,anomalib:Stfpm`` or the group
``anomalib:all-offline`` (every model the bridge runs with the offline backbones).

Each becomes a :class:`~leaderboard.methods.entry.MethodEntry` named ``anomalib-patchcore``
(names file records and rows) with origin ``anomalib``, its class
``baselines.anomalib_zoo:Patchcore`` and its provenance: anomalib's version and the sha256 of
the anomalib file that defines the model, so a finished cell of another anomalib version is
never mixed with this run's. A model the bridge does not run, or a run without the extra
installed, is a :class:`~leaderboard.errors.UsageError` before the run folder exists.
"""

from __future__ import annotations

from collections.abc import Mapping

from leaderboard.errors import UsageError
from leaderboard.methods import outside
from leaderboard.methods.entry import ANOMALIB, MethodEntry

PREFIX = "anomalib:"
GROUP = "all-offline"


def named(item: str) -> bool:
    return item.startswith(PREFIX)


def entries(item: str, registry: Mapping[str, MethodEntry]) -> list[MethodEntry]:
    """The entries ``--methods anomalib:NAME`` (or ``anomalib:all-offline``) stands for."""
    from baselines import anomalib_zoo as zoo
    from baselines.errors import DetectorError

    model = item[len(PREFIX):]
    try:
        version = zoo.require()
    except DetectorError as err:
        raise UsageError(f"--methods {item}: {err}") from None
    if model == GROUP:
        names = [n for n, f in zoo.ZOO.items() if f.backbones is None]
    else:
        names = [model]
    out = []
    for name in names:
        if name in zoo.REFUSED:
            raise UsageError(f"--methods {item}: anomalib's {name} is refused here: "
                             f"{zoo.REFUSED[name]}; see `bench list`")
        if name not in zoo.ZOO:
            raise UsageError(f"--methods {item}: the bridge runs anomalib's {', '.join(zoo.ZOO)} "
                             f"(or {PREFIX}{GROUP}); see `bench list`")
        out.append(entry(name, version))
    return out


def entry(name: str, version: str) -> MethodEntry:
    from baselines.anomalib_zoo import anomalib_class

    rel, sha = outside.source_of(anomalib_class(name))  # anomalib's file defining the model
    return MethodEntry(f"anomalib-{name.lower()}", f"baselines.anomalib_zoo:{name}",
                       origin=ANOMALIB, distribution="anomalib", version=version,
                       source_file=rel, source_sha256=sha)


def aliases(entry: MethodEntry) -> list[str]:
    """Other names ``--param`` accepts for an anomalib entry: ``anomalib:Stfpm``, ``Stfpm``."""
    cls = (entry.target or "").partition(":")[2]
    return [PREFIX + cls, cls]


def list_rows() -> tuple[list[tuple[str, str, str, str]], list[str]]:
    """``bench list``'s anomalib rows: what runs here, and for the rest why not."""
    from baselines import anomalib_zoo as zoo
    from baselines.components.backbones import imagenet_available

    version = zoo.available()
    if version is None:
        return [], [f"anomalib's models: not installed ({zoo.INSTALL})."]
    rows = []
    for name, facts in zoo.ZOO.items():
        cached = [b for b in facts.backbones or () if imagenet_available(b)]
        if facts.backbone_arg is None:
            status = "ready (no pretrained backbone)"
        elif facts.backbones is None:
            status = ("ready (offline: mobilenet_v2, efficientnet_lite2)" if facts.takes_module
                      else "ready (offline: efficientnet_lite2)")
        elif cached:
            status = f"ready (--backbone {cached[0]}, its weights are cached)"
        else:
            status = (f"needs the ImageNet weights of {' or '.join(facts.backbones)} "
                      "(downloaded where there is internet; refused offline)")
        kind = "trained (budgets: paper, quick, smoke)" if facts.trained else "training-free"
        rows.append((f"{PREFIX}{name}", status, f"anomalib's {name}, {kind}",
                     f"anomalib {version}"))
    for name, why in zoo.REFUSED.items():
        rows.append((f"{PREFIX}{name}", f"refused: {why}", f"anomalib's {name}",
                     f"anomalib {version}"))
    modules = ", ".join(n for n, f in zoo.ZOO.items() if f.takes_module)
    note = (f"anomalib {version}'s models run under this harness's protocol: name them "
            f"(`--methods patchcore,anomalib:Patchcore`) or `{PREFIX}{GROUP}`; rows read "
            "`patchcore · anomalib VERSION`; `--param anomalib:Stfpm.KEY=VALUE` sets the "
            "model's constructor arguments; `--backbone efficientnet_lite2` (or mobilenet_v2 "
            f"for {modules}) runs them offline.")
    return rows, [note]
