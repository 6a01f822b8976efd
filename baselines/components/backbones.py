"""Backbone registry: name -> architecture, weights, input normalisation and feature layers.

``wide_resnet50_2`` is the paper's backbone (torchvision IMAGENET1K_V1, layer2 + layer3).
``resnet18`` is a small ResNet for fast tests. ``mobilenet_v2`` uses the ImageNet weights
embedded in this package (``baselines/weights``), so everything runs offline.

Weights are ``"imagenet"`` (torchvision's hash-checked cache/download; the embedded file for
``mobilenet_v2``), a path to a state-dict file (``.safetensors``, ``.pth``/``.pt``), or ``"none"``
(seeded random init: plumbing tests only, random features score at chance).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
import torchvision
from torch import nn

from baselines.components.tf_same import TFSameConv2d, use_tf_same_padding
from baselines.errors import WeightsUnavailableError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EMBEDDED_MOBILENET = "mobilenet_v2_imagenet_int8dq.safetensors"
EMBEDDED_MOBILENET_SHA256 = "c540b3bf630b97088484b237853c44d0c9a8028067184d40b8d2428ca1a38fb6"


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone and which of its nodes play the roles of layer1..layer3."""

    name: str
    build: Callable[[], nn.Module]
    layer1: str  # stride 4 (PaDiM)
    layer2: str  # stride 8
    layer3: str  # stride 16
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    imagenet_url: str | None  # torchvision's download URL, None for embedded weights
    prepare: Callable[[nn.Module], None] | None = None  # architecture fix-ups before loading

    @property
    def layers(self) -> tuple[str, str]:
        """The two PatchCore layers (paper: layer2 + layer3)."""
        return (self.layer2, self.layer3)


def _mobilenet() -> nn.Module:
    model = torchvision.models.mobilenet_v2(weights=None)
    use_tf_same_padding(model)
    return model


REGISTRY: dict[str, BackboneSpec] = {
    "wide_resnet50_2": BackboneSpec(
        "wide_resnet50_2",
        lambda: torchvision.models.wide_resnet50_2(weights=None),
        "layer1", "layer2", "layer3",
        IMAGENET_MEAN, IMAGENET_STD,
        torchvision.models.Wide_ResNet50_2_Weights.IMAGENET1K_V1.url,
    ),
    "resnet18": BackboneSpec(
        "resnet18",
        lambda: torchvision.models.resnet18(weights=None),
        "layer1", "layer2", "layer3",
        IMAGENET_MEAN, IMAGENET_STD,
        torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url,
    ),
    "mobilenet_v2": BackboneSpec(
        "mobilenet_v2", _mobilenet,
        "features.3", "features.6", "features.13",
        (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
        None,
    ),
}


def get_spec(name: str) -> BackboneSpec:
    """The registry entry for ``name``; a clear error lists the known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise WeightsUnavailableError(
            f"unknown backbone {name!r}; choose one of {', '.join(REGISTRY)}"
        ) from None


def embedded_weights_path() -> Path:
    """Path of the embedded MobileNetV2 ImageNet weights (package data)."""
    return Path(str(resources.files("baselines") / "weights" / EMBEDDED_MOBILENET))


def sha256_file(path: str | Path) -> str:
    """sha256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def torchvision_cache_path(url: str) -> Path:
    """Where torch.hub caches the checkpoint at ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def imagenet_available(name: str) -> bool:
    """True when ``name``'s ImageNet weights load without a download (embedded or cached)."""
    spec = get_spec(name)
    return spec.imagenet_url is None or torchvision_cache_path(spec.imagenet_url).is_file()


def _offline_message(name: str, url: str, err: BaseException) -> str:
    return (
        f"ImageNet weights for {name} are not cached and could not be downloaded from {url} "
        f"({type(err).__name__}: {err}). You are probably offline. Use the embedded backbone "
        "(`--backbone mobilenet_v2`, works offline), or pass a local weights file with "
        f"`--weights PATH` (a state dict of torchvision's {name})."
    )


def _load_imagenet(spec: BackboneSpec) -> tuple[dict[str, torch.Tensor], str]:
    if spec.imagenet_url is None:
        return _load_file(embedded_weights_path(), expected_sha256=EMBEDDED_MOBILENET_SHA256)
    cached = torchvision_cache_path(spec.imagenet_url)
    if not cached.is_file():
        try:
            torch.hub.load_state_dict_from_url(spec.imagenet_url, progress=True, check_hash=True)
        except (OSError, RuntimeError) as err:  # URLError is an OSError; hash mismatch RuntimeError
            raise WeightsUnavailableError(_offline_message(spec.name, spec.imagenet_url, err)) from None
    digest = sha256_file(cached)
    prefix = cached.stem.rsplit("-", 1)[-1]  # torchvision names files <arch>-<sha256 prefix>.pth
    if not digest.startswith(prefix):
        raise WeightsUnavailableError(
            f"cached weights {cached} are corrupt (sha256 {digest[:12]}... does not start with "
            f"{prefix}); delete the file and run again to re-download it"
        )
    state = torch.load(cached, map_location="cpu", weights_only=True)
    return state, digest


def _load_file(path: Path, expected_sha256: str | None = None) -> tuple[dict[str, torch.Tensor], str]:
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file not found: {path}")
    digest = sha256_file(path)
    if expected_sha256 is not None and digest != expected_sha256:
        raise WeightsUnavailableError(
            f"{path} has sha256 {digest}, expected {expected_sha256}: the file is damaged; "
            "reinstall cadsd-bench"
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


def build_model(name: str, weights: str | Path = "imagenet", seed: int = 0) -> tuple[nn.Module, str | None]:
    """The full torchvision model for ``name`` with ``weights`` loaded, in eval mode.

    Returns the model and the sha256 of the weights file (``None`` for random init).
    """
    spec = get_spec(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # random init is deterministic too
        model = spec.build()
    digest: str | None = None
    if str(weights) == "imagenet":
        state, digest = _load_imagenet(spec)
    elif str(weights) == "none":
        state = None
    else:
        state, digest = _load_file(Path(weights).expanduser())
    if state is not None:
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise WeightsUnavailableError(
                f"weights do not fit {name}: {str(err).splitlines()[0]} "
                f"(pass a state dict of torchvision's {name})"
            ) from None
    model.eval().requires_grad_(False)
    return model, digest


class FeatureExtractor(nn.Module):
    """Backbone truncated after its deepest requested layer; returns ``{layer: (B, C, h, w)}``.

    Takes RGB images in [0, 1] and applies the backbone's own normalisation, so callers never
    need to know which backbone wants ImageNet mean/std and which wants [-1, 1].
    """

    def __init__(
        self,
        name: str,
        layers: Sequence[str],
        weights: str | Path = "imagenet",
        seed: int = 0,
    ) -> None:
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        self.spec = get_spec(name)
        self.layers = tuple(layers)
        model, self.weights_sha256 = build_model(name, weights, seed)
        self.body = create_feature_extractor(
            model,
            return_nodes={layer: layer for layer in self.layers},
            tracer_kwargs={"leaf_modules": [TFSameConv2d]},
        ).eval()
        self.register_buffer("mean", torch.tensor(self.spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.spec.std).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Always stays in eval mode: BatchNorm must never use batch statistics."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (images - self.mean) / self.std
        return self.body(x)

    @torch.no_grad()
    def channels(self, size: int = 224) -> dict[str, tuple[int, int, int]]:
        """Shape ``(C, h, w)`` of each layer for ``size`` x ``size`` inputs (one dry run)."""
        out = self.forward(torch.zeros(1, 3, size, size, device=self.mean.device))
        return {k: tuple(v.shape[1:]) for k, v in out.items()}
