"""``--backbone auto`` and other defaults that depend on what this machine has."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from baselines.errors import DetectorError

if TYPE_CHECKING:
    from leaderboard.running.plan import MethodPlan

#: where pretrained backbone weights come from (torchvision's and timm's hubs)
PROBE_URL = "https://download.pytorch.org/"


def online(timeout_s: float = 1.5) -> bool:
    """Can the weights' host be reached (:func:`cadsd.getting.fetch.reachable`)?"""
    from cadsd.getting.fetch import reachable

    return reachable(PROBE_URL, timeout_s)


def resolve_backbones(
    spec: str,
    weights: str,
    plans: list[MethodPlan],
    echo: Callable[[str], None] = print,
    probe: Callable[[], bool] = online,
) -> list[MethodPlan]:
    """Each plan with its backbone and weights, resolved once per backbone before any cell.

    ``auto``: each method's paper backbone when its ImageNet weights are available (cached,
    shipped, or fetchable right now), else its offline fallback; one printed line per choice.
    A named backbone goes to every method that taps one; it must offer the method's layers.
    Weights are fetched (or found missing: one clear error) here, not in every cell.
    """
    from baselines.components.backbones import ensure_weights, get_spec, imagenet_available
    from leaderboard.errors import BenchError, UsageError
    from leaderboard.running.plan import check_backbone_role

    users = [p for p in plans if p.klass.backbone_role is not None]
    if spec != "auto":
        try:
            get_spec(spec)
        except DetectorError as err:  # an unknown name: a command-line mistake
            raise UsageError(f"--backbone: {err}") from None
        for p in users:
            check_backbone_role(p, spec)
        if users:
            ensure_weights(spec, weights)
        return [replace(p, backbone=spec, weights=weights) if p in users else p for p in plans]
    if weights != "imagenet":
        raise BenchError("--backbone auto chooses the weights itself; with --weights PATH also "
                         "name the backbone, e.g. --backbone wide_resnet50_2 --weights PATH")
    chosen: dict[str, str] = {}  # method -> backbone
    reachable: list[bool] = []  # the probe, run at most once

    def usable(name: str) -> tuple[bool, str]:
        if imagenet_available(name):
            return True, ""
        if not reachable:
            reachable.append(probe())
        if not reachable[0]:
            return False, "this machine is offline"
        try:
            echo(f"Backbone: fetching the ImageNet weights of {name} once...")
            ensure_weights(name, "imagenet")
            return True, ""
        except DetectorError as err:
            return False, f"fetching them failed ({err})"

    verdicts: dict[str, tuple[bool, str]] = {}
    for p in users:
        paper = p.klass.paper_backbone or ""
        if paper not in verdicts:
            verdicts[paper] = usable(paper)
        ok, why = verdicts[paper]
        chosen[p.name] = paper if ok else (p.klass.fallback_backbone or "")
    by_backbone: dict[str, list[str]] = {}
    for name, bb in chosen.items():
        by_backbone.setdefault(bb, []).append(name)
    for bb, methods in by_backbone.items():
        ensure_weights(bb, "imagenet")
        klass = next(p.klass for p in users if p.name == methods[0])
        who = ", ".join(methods)
        if bb == klass.paper_backbone:
            echo(f"Backbone: {bb} with ImageNet weights (the paper's) for {who}.")
            continue
        paper = klass.paper_backbone or ""
        why = verdicts[paper][1]
        cache = get_spec(paper).source.cache_path()
        shipped = ("ImageNet weights shipped with the package" if get_spec(bb).offline
                   else "ImageNet weights")
        echo(
            f"Backbone: {bb} ({shipped}, runs offline) for {who}. The paper's {paper} "
            f"ImageNet weights are not in {cache} and {why}; with network access run "
            f"`bench run --backbone {paper}` once (it downloads them), or pass a local copy "
            f"with `--backbone {paper} --weights PATH`."
        )
    return [replace(p, backbone=chosen[p.name], weights="imagenet") if p.name in chosen else p
            for p in plans]


def run_tag(plans: list[MethodPlan]) -> str:
    """The backbones of a run, for its default folder name (``none`` when no method has one)."""
    names = []
    for p in plans:
        if p.backbone is None:
            continue
        tag = p.backbone if p.weights == "imagenet" else f"{p.backbone}-{Path(p.weights or '').stem}"
        names.append(tag)
    return "+".join(dict.fromkeys(names)) or "none"


def default_out(dataset: str, tag: str) -> Path:
    """``runs/<dataset>-<backbones>`` (see :func:`run_tag`)."""
    return Path("runs") / re.sub(r"[^A-Za-z0-9_.+-]+", "-", f"{dataset}-{tag}")


#: seeds are 32-bit (every generator a cell seeds takes them); a run has at most this many
SEED_LIMIT, MAX_SEEDS = 2**32, 10_000


def parse_seeds(text: str) -> list[int]:
    """``"0"``, ``"0,1,2"`` or ``"0-4"`` -> a list of distinct ints in [0, 2^32), in order
    (at most :data:`MAX_SEEDS`: a range is measured before it is expanded)."""
    from leaderboard.errors import UsageError

    seeds: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            if re.fullmatch(r"\d+-\d+", part):
                lo, hi = map(int, part.split("-"))
                if hi < lo:
                    raise UsageError(f"--seeds {text!r}: the range {part} runs backwards")
                if hi - lo + 1 + len(seeds) > MAX_SEEDS:
                    raise UsageError(f"--seeds {text!r}: {hi - lo + 1} seeds in {part}; a run "
                                     f"takes at most {MAX_SEEDS} (each seed is a cell per "
                                     "method)")
                seeds += list(range(lo, hi + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise UsageError(f"--seeds {text!r}: write e.g. 0 or 0,1,2 or 0-4") from None
    if not seeds or min(seeds) < 0:
        raise UsageError(f"--seeds {text!r}: give at least one non-negative seed")
    if max(seeds) >= SEED_LIMIT:
        raise UsageError(f"--seeds {text!r}: seeds must be below 2^32 = {SEED_LIMIT} (numpy's "
                         f"and torch's generators take 32-bit seeds), got {max(seeds)}")
    if len(seeds) > MAX_SEEDS:
        raise UsageError(f"--seeds {text!r}: {len(seeds)} seeds; a run takes at most "
                         f"{MAX_SEEDS}")
    return list(dict.fromkeys(seeds))


def parse_shots(text: str | None) -> list[int | None]:
    """``--shots``: ``all`` (default, the full training set), ``4`` or ``1,4,all`` -> a list
    of K (None = all), in order, no repeats."""
    from leaderboard.errors import UsageError

    if text is None:
        return [None]
    out: list[int | None] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part == "all":
            out.append(None)
            continue
        try:
            k = int(part)
        except ValueError:
            raise UsageError(f"--shots {text!r}: write e.g. 4 or 1,2,4,8 or all") from None
        if k < 1:
            raise UsageError(f"--shots {text!r}: K must be at least 1")
        out.append(k)
    if not out:
        raise UsageError(f"--shots {text!r}: give at least one K (or all)")
    return list(dict.fromkeys(out))
