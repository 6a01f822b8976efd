"""``--backbone auto`` and other defaults that depend on what this machine has."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path

PAPER_BACKBONE = "wide_resnet50_2"
EMBEDDED_BACKBONE = "mobilenet_v2"
PROBE_HOST = ("download.pytorch.org", 443)


def online(timeout_s: float = 1.5) -> bool:
    """Can we open a TCP connection to PyTorch's download host? Gives up after ``timeout_s``.

    Runs in a thread so a hanging DNS lookup cannot stall the caller beyond the timeout.
    """
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection(PROBE_HOST, timeout=timeout_s):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s + 0.2)
    return bool(result and result[0])


def resolve_backbone(
    spec: str,
    weights: str,
    echo: Callable[[str], None] = print,
    probe: Callable[[], bool] = online,
) -> tuple[str, str]:
    """``auto``: the paper's wide_resnet50_2 with ImageNet weights when they are cached (or
    fetchable right now), else the embedded mobilenet_v2; prints one line saying which and why.
    A named backbone is checked against the registry and returned as is.
    """
    import torch

    from baselines.components.backbones import get_spec, imagenet_available, torchvision_cache_path
    from leaderboard.errors import BenchError

    if spec != "auto":
        get_spec(spec)  # unknown names raise with the list of known ones
        return spec, weights
    if weights != "imagenet":
        raise BenchError("--backbone auto chooses the weights itself; with --weights PATH also "
                         "name the backbone, e.g. --backbone wide_resnet50_2 --weights PATH")
    paper = get_spec(PAPER_BACKBONE)
    if imagenet_available(PAPER_BACKBONE):
        echo(f"Backbone: {PAPER_BACKBONE} with ImageNet weights (the paper's).")
        return PAPER_BACKBONE, "imagenet"
    cache = torchvision_cache_path(paper.imagenet_url)
    if probe():
        try:
            echo(f"Backbone: fetching the paper's {PAPER_BACKBONE} ImageNet weights once...")
            torch.hub.load_state_dict_from_url(paper.imagenet_url, progress=True, check_hash=True)
            echo(f"Backbone: {PAPER_BACKBONE} with ImageNet weights (the paper's).")
            return PAPER_BACKBONE, "imagenet"
        except (OSError, RuntimeError) as err:
            why = f"fetching them failed ({type(err).__name__}: {err})"
    else:
        why = "this machine is offline"
    echo(
        f"Backbone: embedded {EMBEDDED_BACKBONE} (ImageNet weights shipped with the package, runs "
        f"offline). The paper's {PAPER_BACKBONE} ImageNet weights are not in {cache} and {why}; "
        f"with network access run `bench run --backbone {PAPER_BACKBONE}` once (it downloads "
        f"them), or pass a local copy with `--backbone {PAPER_BACKBONE} --weights PATH`."
    )
    return EMBEDDED_BACKBONE, "imagenet"


def default_out(dataset: str, backbone: str, weights: str) -> Path:
    """``runs/<dataset>-<backbone>`` (plus the weights file's stem when not ImageNet)."""
    tag = backbone if weights == "imagenet" else f"{backbone}-{Path(weights).stem}"
    return Path("runs") / re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{dataset}-{tag}")


def parse_seeds(text: str) -> list[int]:
    """``"0"``, ``"0,1,2"`` or ``"0-4"`` -> a list of distinct ints, in order."""
    from leaderboard.errors import BenchError

    seeds: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            if re.fullmatch(r"\d+-\d+", part):
                lo, hi = map(int, part.split("-"))
                seeds += list(range(lo, hi + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise BenchError(f"--seeds {text!r}: write e.g. 0 or 0,1,2 or 0-4") from None
    if not seeds or min(seeds) < 0:
        raise BenchError(f"--seeds {text!r}: give at least one non-negative seed")
    return list(dict.fromkeys(seeds))


def parse_params(items: tuple[str, ...] | list[str], methods: list[str]) -> dict[str, dict]:
    """``--param METHOD.KEY=VALUE`` (or ``KEY=VALUE`` for every method); values are JSON when
    they parse (numbers, true/false), else strings."""
    import json

    from leaderboard.errors import BenchError

    out: dict[str, dict] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        if not eq or not key:
            raise BenchError(f"--param {item!r}: write METHOD.KEY=VALUE, e.g. patchcore.coreset_ratio=0.1")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        method, dot, name = key.rpartition(".")
        targets = [method] if dot else methods
        if dot and method not in methods:
            raise BenchError(f"--param {item!r}: {method!r} is not among --methods")
        for m in targets:
            out.setdefault(m, {})[name] = value
    return out
