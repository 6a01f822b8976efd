"""anomalib's image models as Detectors: ``baselines.anomalib_zoo:Patchcore`` wraps
``anomalib.models.Patchcore`` (anomalib 2.7, the optional extra ``cadsd-bench[anomalib]``).

The harness supplies what every method gets (decoded images at the model's input, its seeds,
device and budget) and the backbone; the model is anomalib's, unchanged:

* **Backbone.** anomalib builds its CNNs with ``timm.create_model(name, pretrained=True)``. For
  a harness backbone that timm also builds (``efficientnet_lite2`` = timm's
  ``tf_efficientnet_lite2``, ``resnet18``, ``wide_resnet50_2``) the bridge hands timm the
  harness's own checked weights as that name's pretrained state dict while the model is built
  (:func:`harness_weights`), so the models run offline with real ImageNet weights; the
  weights' sha256 is recorded as for the built-in methods. A model's default layers (ResNet
  names) map to the backbone's layers of the same stride (``layer2`` -> ``blocks.2`` on
  EfficientNet-Lite2). ``mobilenet_v2`` (no timm name) goes in as the harness's module
  itself, which anomalib's ``TimmFeatureExtractor`` accepts, for the models that pass their
  backbone only to it (``takes_module``). Fastflow names its CNN from a fixed list (ResNets) but reads
  everything else (channels, strides, its LayerNorms and flow blocks) from the features it is
  given: the harness's backbone is built in the ResNet's place, at the ResNet's strides
  (:func:`in_place_of`), and the record says so. Models whose architecture depends on the
  ResNet itself (Cfa's torchvision graph, ReverseDistillation's mirrored decoder) run where
  those weights are cached and are refused otherwise.
* **Input.** The model's anomalib default resize and centre crop, decoded once by the harness;
  the normalisation is the backbone's own (EfficientNet-Lite2 wants [-1, 1]), applied by the
  model's anomalib ``PreProcessor`` with its resize left out (already done).
* **Scores.** anomalib's raw model output (``model.model(x)`` in eval mode): its
  post-processor (normalisation, thresholds), evaluator and visualizer are off; every metric
  comes from the harness.
* **Training.** anomalib's own ``training_step``, optimizer and trainer arguments through a
  Lightning ``Trainer`` with no validation loop, no early stopping and no checkpoint choice
  (anomalib's folder datasets validate on the test split: never here). ``max_epochs`` is
  anomalib's example config's value (``budget paper``); ``quick`` and ``smoke`` cap
  ``max_steps``. Progress (step, loss, ETA) goes to the harness's bars.

Each model becomes a class here on first use (``module.__getattr__``), with settings = the
harness's run settings, ``image_size``, ``max_epochs``/``max_steps`` for trained models and the
anomalib constructor's own keyword arguments of plain types (``--param
anomalib:Stfpm.KEY=VALUE``). What a model needs that cannot be had offline is in :data:`ZOO`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import logging
import types
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from baselines.base import BackboneInfo, Detector, Prediction, Train
from baselines.device import resolve_device
from baselines.errors import DetectorError
from baselines.preprocess import InputSpec
from baselines.settings import Setting
from baselines.training import Progress, TrainingSet

VERSIONS = ">=2.7,<2.8"
INSTALL = "pip install 'cadsd-bench[anomalib]'"
#: harness backbone -> the timm architecture anomalib builds for it
TIMM_NAMES = {"efficientnet_lite2": "tf_efficientnet_lite2", "resnet18": "resnet18",
              "wide_resnet50_2": "wide_resnet50_2"}
#: the ResNets anomalib's ResNet-only models name (their harness weights are torchvision's)
RESNETS = ("resnet18", "wide_resnet50_2")
#: harness backbones timm does not build: ``takes_module`` models get the module itself
MODULES = ("mobilenet_v2",)
#: the settings the bridge handles itself (the rest go to the anomalib constructor)
BRIDGE_SETTINGS = ("backbone", "weights", "device", "seed", "image_size", "crop", "resample",
                   "max_epochs", "max_steps")
_STRIDES = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}
_COMPONENTS = ("pre_processor", "post_processor", "evaluator", "visualizer")


@dataclass(frozen=True)
class ZooModel:
    """What the bridge knows of one anomalib model beyond its signature."""

    trained: bool
    #: anomalib's example config's max_epochs (``examples/configs/model/*.yaml``); trained only
    epochs: int | None = None
    #: the constructor argument naming the CNN backbone (None: the model has none)
    backbone_arg: str | None = "backbone"
    #: harness backbones the model accepts by name (None: any timm CNN)
    backbones: tuple[str, ...] | None = None
    #: (module, ResNet name): the model accepts ResNet names only, but reads every size from
    #: the features it gets; another harness backbone is built in that ResNet's place
    stands_in: tuple[str, str] | None = None
    #: the model passes its backbone only to anomalib's TimmFeatureExtractor, which takes an
    #: ``nn.Module`` too: harness backbones timm does not build (mobilenet_v2) go in as modules
    takes_module: bool = False
    #: what it needs that this machine may lack, and how to get it (refused when missing)
    needs: str = ""
    #: the ``quick`` budget: about 5 minutes of training on this project's 2-core CPU at the
    #: model's default input, batch 32 (measured per step; steps are Lightning's optimizer
    #: steps, so a model stepping two optimizers per batch counts two)
    quick: Mapping[str, Any] = dataclasses.field(default_factory=lambda: {"max_steps": 250})


ZOO: dict[str, ZooModel] = {
    "Patchcore": ZooModel(trained=False, takes_module=True),
    "Padim": ZooModel(trained=False, takes_module=True),
    "Dfkde": ZooModel(trained=False, takes_module=True),
    "Dfm": ZooModel(trained=False, takes_module=True),
    # quick: measured median step times here, 300 s / step time
    "Stfpm": ZooModel(trained=True, epochs=100, quick={"max_steps": 250}),  # 1.2 s/step
    # Cflow steps its optimizer once per fiber batch (672 per image batch): budget by epoch,
    # 8.5 s per batch of 32, 3 epochs of the synthetic CAD-SD's 13 batches
    "Cflow": ZooModel(trained=True, epochs=50, quick={"max_epochs": 3}),
    "Fre": ZooModel(trained=True, epochs=220, quick={"max_steps": 800}),  # 0.37 s/step
    # two optimizers (generator, discriminator): two steps per batch of 8.9 s
    "Ganomaly": ZooModel(trained=True, epochs=100, backbone_arg=None,
                         quick={"max_steps": 68}),
    "Supersimplenet": ZooModel(trained=True, epochs=300, quick={"max_steps": 88}),  # 3.4 s
    "Patchflow": ZooModel(trained=True, epochs=200, quick={"max_steps": 43}),  # 7 s at 768
    # 2.3 s per batch of 32 at 256 px with efficientnet_lite2 in resnet18's place
    "Fastflow": ZooModel(trained=True, epochs=500, quick={"max_steps": 130},
                         stands_in=("anomalib.models.image.fastflow.torch_model", "resnet18")),
    "Cfa": ZooModel(trained=True, epochs=30, backbones=RESNETS),
    "ReverseDistillation": ZooModel(trained=True, epochs=200, backbones=RESNETS),
}
#: models the bridge does not run here, and why (shown by ``bench list``, said when named)
REFUSED = {
    "EfficientAd": "its pretrained teacher (pretrained_teacher_small.pth from anomalib's "
                   "GitHub release, unpacked to ./pre_trained/) and ImageNette "
                   "(./datasets/imagenette) must be downloaded",
    "Draem": "the DTD texture dataset (./datasets/dtd) must be downloaded",
    "Dsr": "its pretrained VQ-VAE weights (anomalib's GitHub release) must be downloaded",
    "Csflow": "timm's efficientnet_b5 ImageNet weights must be downloaded",
    "Uflow": "timm's CaiT (mcait) ImageNet weights must be downloaded",
    "Glass": "not run by this bridge yet: with a non-ResNet backbone its layers are not "
             "mapped (the ResNet weights it expects must be downloaded)",
    "MHPatchcore": "not run by this bridge yet: its fit hook was not reached through the "
                   "bridge's trainer (and its wide_resnet50_2.tv2_in1k weights must be "
                   "downloaded)",
    "UniNet": "timm's wide_resnet50_2 ImageNet weights must be downloaded",
    **{m: "DINOv2/DINOv3 ViT weights (Hugging Face Hub) must be downloaded"
       for m in ("Dinomaly", "AnomalyDINO", "InpFormer", "FoundAD", "Rad", "SuperADD",
                 "GeneralAD", "AnomalyVFM", "CFM", "L2BT")},
    "WinClip": "OpenAI CLIP weights (open_clip) must be downloaded",
    "VlmAd": "a vision-language model service (Ollama, OpenAI or Hugging Face) is needed",
    "AiVad": "a video model: this harness scores still images",
    "Fuvas": "a video model: this harness scores still images",
}


def available() -> str | None:
    """anomalib's version when a usable one is installed, else None."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        found = version("anomalib")
    except PackageNotFoundError:
        return None
    return found if found.startswith("2.7") else None


def require() -> str:
    """anomalib's version, or a DetectorError naming the install command."""
    found = available()
    if found is None:
        raise DetectorError(f"anomalib models need anomalib {VERSIONS}: {INSTALL}")
    return found


# -- the backbone ------------------------------------------------------------------------------
@contextlib.contextmanager
def harness_weights(arch: str, state: Mapping[str, torch.Tensor] | None) -> Iterator[None]:
    """While the block runs, ``timm.create_model(arch, pretrained=True)`` loads ``state`` (the
    harness's checked weights) instead of downloading timm's; restored afterwards."""
    if state is None:
        yield
        return
    from timm.models import _registry

    cfgs = _registry._model_pretrained_cfgs
    keys = [k for k in cfgs if k.split(".")[0] == arch]
    saved = {k: cfgs[k] for k in keys}
    for k in keys:
        cfgs[k] = dataclasses.replace(cfgs[k], state_dict=dict(state), hf_hub_id=None, url=None,
                                      file=None, source=None)
    try:
        yield
    finally:
        cfgs.update(saved)


@contextlib.contextmanager
def in_place_of(module: str, resnet: str, arch: str, notes: dict[str, Any]) -> Iterator[None]:
    """While the block runs, ``timm.create_model(resnet, features_only=True, out_indices=...)``
    in anomalib's ``module`` builds ``arch`` instead, with the feature layers of the same
    strides (what it builds is written to ``notes``). Only the backbone changes: the model
    reads channels and strides from the features it gets."""
    import importlib

    import timm

    target = importlib.import_module(module)

    def create_model(name: str, *args: Any, **kwargs: Any) -> nn.Module:
        if name != resnet or not kwargs.get("features_only"):
            return timm.create_model(name, *args, **kwargs)
        stride = {n: i["reduction"] for n, i in enumerate(_feature_info(resnet))}
        wanted = [stride[i] for i in kwargs.get("out_indices") or range(len(stride))]
        mine = {i["reduction"]: n for n, i in enumerate(_feature_info(arch))}
        kwargs["out_indices"] = [mine[s] for s in wanted]
        notes["backbone_in_place_of"] = (
            f"{resnet} (anomalib's choice list): {arch} features at strides "
            f"{', '.join(map(str, wanted))} ({', '.join(_feature_info(arch)[mine[s]]['module'] for s in wanted)})")
        return timm.create_model(arch, *args, **kwargs)

    saved = target.timm
    target.timm = types.SimpleNamespace(**{k: getattr(timm, k) for k in dir(timm)
                                           if not k.startswith("__")})
    target.timm.create_model = create_model
    try:
        yield
    finally:
        target.timm = saved


@functools.cache
def _feature_info(arch: str) -> tuple[dict[str, Any], ...]:
    """timm's feature layers of ``arch`` (module name, channels, stride), built once."""
    import timm

    info = timm.create_model(arch, pretrained=False, features_only=True).feature_info.info
    return tuple(dict(i) for i in info)


def map_layers(layers: Sequence[str], arch: str) -> list[str]:
    """ResNet layer names -> ``arch``'s feature layers of the same stride (timm's names)."""
    if not all(layer in _STRIDES for layer in layers):
        return list(layers)
    by_stride = {i["reduction"]: i["module"] for i in _feature_info(arch)}
    return [by_stride[_STRIDES[layer]] for layer in layers]


def channels(arch: str, layers: Sequence[str]) -> int:
    """The summed channels of ``arch``'s feature layers ``layers``."""
    return sum(i["num_chs"] for i in _feature_info(arch) if i["module"] in layers)


def _module_channels(model: nn.Module, layers: Sequence[str]) -> int:
    """The summed channels of ``model``'s nodes ``layers`` (one small dry run)."""
    from torchvision.models.feature_extraction import create_feature_extractor

    with torch.no_grad():
        out = create_feature_extractor(model, return_nodes=list(layers))(torch.zeros(1, 3, 64, 64))
    return sum(int(v.shape[1]) for v in out.values())


def feature_strides(arch: str) -> dict[str, int]:
    """``arch``'s feature layers and their strides."""
    return {i["module"]: i["reduction"] for i in _feature_info(arch)}


# -- the settings a generated class gets -------------------------------------------------------
def _plain(hint: Any, default: Any) -> tuple[Any, Any] | None:
    """An anomalib annotation and default as a setting's (hint, default), or None when the
    argument is not a plain value (a module, a callable: not settable from the command line)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(default, Enum):
        return Literal[tuple(e.value for e in type(default))], default.value  # type: ignore[misc]
    if hint in (int, float, bool, str):
        return hint, default
    if origin in (typing.Union, types.UnionType):
        parts = [a for a in args if a is not type(None)]
        if len(parts) == 1:
            inner = _plain(parts[0], default)
            return (inner[0] | None, inner[1]) if inner else None
        if all(p in (int, float, bool, str) for p in parts):
            return hint, default
        return None
    if origin in (list, tuple, Sequence, typing.Sequence) or hint in (list, tuple):
        item = args[0] if args and args[0] is not Ellipsis else str
        if item in (int, float, str):
            return tuple[item, ...], tuple(default) if default is not None else None
    if hint is inspect.Parameter.empty and isinstance(default, (int, float, bool, str)):
        return type(default), default
    return None


@functools.cache
def anomalib_class(name: str) -> type:
    require()
    with _quiet():
        from anomalib import models

    if name not in getattr(models, "__all__", ()):
        raise DetectorError(f"anomalib {available()} has no model {name!r}; its models: "
                            f"{', '.join(models.__all__)}")
    return getattr(models, name)


@functools.cache
def model_settings(name: str) -> dict[str, Setting]:
    """The settings of ``anomalib:NAME`` in order: run settings, the bridge's, then the anomalib
    constructor's plain keyword arguments (its backbone and components left out). Read once
    per process: callers get copies (:func:`baselines.settings.settings_of`)."""
    facts = ZOO.get(name, ZooModel(trained=True))
    out: dict[str, Setting] = {}
    if facts.backbone_arg:
        out["backbone"] = Setting("backbone", "efficientnet_lite2", str)
        out["weights"] = Setting("weights", "imagenet", str)
    out["device"] = Setting("device", "cpu", str)
    out["seed"] = Setting("seed", 0, int)
    out["image_size"] = Setting("image_size", None, int | None)
    out["crop"] = Setting("crop", None, int | None)
    out["resample"] = Setting("resample", "bilinear",
                              Literal["bilinear", "bicubic", "lanczos", "nearest"])
    if facts.trained:
        out["max_epochs"] = Setting("max_epochs", facts.epochs, int | None)
        out["max_steps"] = Setting("max_steps", -1, int)
    klass = anomalib_class(name)
    hints = typing.get_type_hints(klass.__init__) if klass.__init__ else {}
    for arg, p in inspect.signature(klass.__init__).parameters.items():
        if arg in ("self", facts.backbone_arg, "pre_trained", *_COMPONENTS) or arg in out \
                or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or hasattr(nn.Module, arg):
            continue
        default = None if p.default is p.empty else p.default
        plain = _plain(hints.get(arg, p.annotation), default)
        if plain is None:
            continue
        if arg in ("layers", "layer"):  # None: the backbone's layers of anomalib's strides
            plain = (plain[0] | None, None)
        out[arg] = Setting(arg, plain[1], plain[0])
    return out


def default_layers(name: str) -> dict[str, Any]:
    """anomalib's default ``layers``/``layer`` for model ``name`` (ResNet names)."""
    sig = inspect.signature(anomalib_class(name).__init__)
    return {k: sig.parameters[k].default for k in ("layers", "layer") if k in sig.parameters}


@contextlib.contextmanager
def _no_bars() -> Iterator[None]:
    """anomalib's own tqdm bars (its coreset selection draws one per fit) off while the block
    runs: the harness draws the cell's progress itself."""
    import sys

    from tqdm import tqdm

    silent = functools.partial(tqdm, disable=True)
    patched = [m for name, m in list(sys.modules.items())
               if name.startswith("anomalib") and getattr(m, "tqdm", None) is tqdm]
    for module in patched:
        module.tqdm = silent
    try:
        yield
    finally:
        for module in patched:
            module.tqdm = tqdm


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """anomalib's and Lightning's import-time and trainer chatter off."""
    loggers = [logging.getLogger(n) for n in ("lightning", "lightning.pytorch", "timm",
                                                "lightning.fabric", "anomalib")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


# -- the Detector --------------------------------------------------------------------------
class AnomalibDetector(Detector):
    """An anomalib model run by the harness (see the module docstring); one subclass per
    model, made by :func:`detector_class`."""

    anomalib_name: ClassVar[str] = ""
    fit_batch_size: ClassVar[int] = 32  # anomalib's train_batch_size default

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        require()
        known = type(self).settings()
        unknown = set(kwargs) - set(known)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown settings {sorted(unknown)}")
        for key, setting in known.items():
            setattr(self, key, kwargs.get(key, setting.default))
        self._check_settings()  # get_params hands tuples on as lists
        self.device = resolve_device(self.device)
        self.backbone_sha256: str | None = None
        self.built_notes: dict[str, Any] = {}  # settings the bridge had to choose
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.module = self._build()
        self.module.to(self.device)  # in the modes anomalib built it in, until fit ends

    @classmethod
    def declared_settings(cls) -> dict[str, Setting]:
        """The settings (read by :func:`baselines.settings.settings_of`): not a signature."""
        return model_settings(cls.anomalib_name)

    @classmethod
    def facts(cls) -> ZooModel:
        return ZOO.get(cls.anomalib_name, ZooModel(trained=True))

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        facts = cls.facts()
        size = params.get("image_size")
        if size is not None and not 32 <= size <= 2048:
            raise DetectorError(f"image_size must be in [32, 2048], got {size}")
        crop = params.get("crop")
        if crop is not None and not 32 <= crop <= (size or _default_size(cls.anomalib_name)[0]):
            raise DetectorError(f"crop must be in [32, the resize], got {crop}")
        if facts.trained:
            if params.get("max_epochs") is None and params.get("max_steps", -1) < 1:
                raise DetectorError("set max_epochs or max_steps (>= 1): training must end")
            if params.get("max_epochs") is not None and params["max_epochs"] < 1:
                raise DetectorError(f"max_epochs must be >= 1, got {params['max_epochs']}")

    @classmethod
    def check_backbone(cls, backbone: str) -> None:
        """A DetectorError when the model cannot take harness backbone ``backbone``."""
        facts = cls.facts()
        able = facts.backbones or (*TIMM_NAMES, *(MODULES if facts.takes_module else ()))
        if facts.backbone_arg and backbone not in able:
            raise DetectorError(f"anomalib's {cls.anomalib_name} builds its backbone by timm "
                                f"name; the harness can give it {', '.join(able)}")

    @classmethod
    def cost_note(cls, params: Mapping[str, Any], n_images: int) -> str | None:
        ratio = params.get("coreset_sampling_ratio")
        if cls.anomalib_name != "Patchcore" or ratio is None or ratio <= 0.01:
            return None
        patches = n_images * (cls.input_for(params).size // 8) ** 2
        return (f"anomalib:Patchcore keeps a {ratio:g} coreset (anomalib's default is 0.1; the "
                f"paper's 0.01): its greedy selection makes {int(patches * ratio)} passes over "
                f"{patches} patches, {ratio / 0.01:.0f}x the time of 0.01 (measured on 2 CPU "
                f"cores: 516 s at 0.01 on the synthetic CAD-SD). `--param "
                f"anomalib:Patchcore.coreset_sampling_ratio=0.01` compares at the paper's ratio.")

    # -- input ------------------------------------------------------------------------------
    @classmethod
    def input_for(cls, params: Mapping[str, Any]) -> InputSpec:
        resize, crop = _default_size(cls.anomalib_name)
        if params.get("image_size"):
            resize, crop = int(params["image_size"]), None
        if params.get("crop"):
            crop = int(params["crop"])
        return InputSpec(resize=resize, crop=crop, resample=params.get("resample", "bilinear"),
                         normalization=_normalization_text(cls, params))

    # -- building ---------------------------------------------------------------------------
    def _build(self) -> nn.Module:
        facts = self.facts()
        side = type(self).input_for(self.get_params()).size
        kwargs = {k: getattr(self, k) for k in self.settings() if k not in BRIDGE_SETTINGS}
        state, arch, mean_std = None, None, None
        stand_in: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if facts.backbone_arg:
            type(self).check_backbone(self.backbone)
            from baselines.components.backbones import build_model, get_spec

            spec = get_spec(self.backbone)
            model, self.backbone_sha256 = build_model(self.backbone, self.weights, self.seed)
            mean_std = (list(spec.mean), list(spec.std))
            if self.backbone in MODULES:  # the harness's module itself, its layers by stride
                return self._build_with_module(model, kwargs, mean_std, side)
            arch = TIMM_NAMES[self.backbone]
            state = model.state_dict() if str(self.weights) != "none" else None
            kwargs[facts.backbone_arg] = arch
            if facts.stands_in and arch not in RESNETS:
                kwargs[facts.backbone_arg] = facts.stands_in[1]
                stand_in = in_place_of(*facts.stands_in, arch, self.built_notes)
            if "pre_trained" in inspect.signature(anomalib_class(self.anomalib_name)).parameters:
                kwargs["pre_trained"] = state is not None
            self._fill_layers(kwargs, lambda names: map_layers(names, arch))
            if (self.anomalib_name == "Fre" and kwargs.get("input_dim") == 65536
                    and arch != "resnet50"):
                # anomalib's default is resnet50's layer3 pooled by 2 at 256 px: the flattened
                # pooled features of the backbone given here instead
                stride = feature_strides(arch)[kwargs["layer"]]
                cells = (side // stride // kwargs["pooling_kernel_size"]) ** 2
                kwargs["input_dim"] = channels(arch, [kwargs["layer"]]) * cells
                self.built_notes["input_dim"] = kwargs["input_dim"]
            if (self.anomalib_name == "Padim" and kwargs.get("n_features") is None
                    and arch not in RESNETS):
                # anomalib has a default only for its two ResNets: keep every dim (as the
                # built-in PaDiM does when a backbone has fewer than 550)
                kwargs["n_features"] = channels(arch, kwargs["layers"])
                self.built_notes["n_features"] = kwargs["n_features"]
        with _quiet(), harness_weights(arch or "", state), stand_in:
            return self._construct(kwargs, mean_std, side)

    def _fill_layers(self, kwargs: dict[str, Any],
                     mapping: Callable[[list[str]], list[str]]) -> None:
        """``layers``/``layer`` left unset: anomalib's defaults (ResNet names) through
        ``mapping`` to the given backbone's layers of the same strides."""
        for key, value in default_layers(self.anomalib_name).items():
            if kwargs.get(key) is None:
                mapped = mapping([value] if isinstance(value, str) else list(value))
                kwargs[key] = mapped[0] if isinstance(value, str) else mapped

    def _build_with_module(self, model: nn.Module, kwargs: dict[str, Any],
                           mean_std: tuple[list[float], list[float]], side: int) -> nn.Module:
        """anomalib's model around the harness's backbone module (``takes_module`` models):
        its ResNet layer names become the module's layers of the same stride."""
        from baselines.components.backbones import get_spec

        spec = get_spec(self.backbone)
        by_name = {"layer1": spec.layer1, "layer2": spec.layer2, "layer3": spec.layer3,
                   "layer4": spec.flow}
        kwargs[self.facts().backbone_arg] = model.eval()
        kwargs.pop("pre_trained", None)
        self._fill_layers(kwargs, lambda names: [by_name.get(n, n) for n in names])
        if self.anomalib_name == "Padim" and kwargs.get("n_features") is None:
            kwargs["n_features"] = _module_channels(model, kwargs["layers"])
            self.built_notes["n_features"] = kwargs["n_features"]
        taps = kwargs.get("layers") or [kwargs.get("layer")]
        self.built_notes["backbone_module"] = (
            f"the harness's {self.backbone} module, layers {', '.join(map(str, taps))}")
        with _quiet():
            return self._construct(kwargs, mean_std, side)

    def _construct(self, kwargs: dict[str, Any], mean_std: tuple[list[float], list[float]] | None,
                   side: int) -> nn.Module:
        """anomalib's class with ``kwargs``, its components off, and a PreProcessor that
        normalises as the backbone wants (``mean_std``; None: anomalib's own)."""
        from torchvision.transforms.v2 import Compose, Normalize, Resize

        klass = anomalib_class(self.anomalib_name)
        base = klass.configure_pre_processor()
        # the harness decoded the images at the model's input already: the resize that stays
        # is to that same size (a no-op that tells size-aware models their input)
        steps = [Resize((side, side), antialias=True)]
        for t in getattr(base.transform, "transforms", [base.transform]):
            if type(t).__name__ in ("Resize", "CenterCrop"):
                continue
            if type(t).__name__ == "Normalize" and mean_std is not None:
                t = Normalize(*mean_std)  # the backbone's own normalisation
            steps.append(t)
        from anomalib.pre_processing import PreProcessor

        pre = PreProcessor(transform=Compose(steps))
        return klass(**kwargs, pre_processor=pre, post_processor=False, evaluator=False,
                     visualizer=False)

    # -- the contract ------------------------------------------------------------------------
    def fit(self, train: Train, progress: Progress | None = None) -> AnomalibDetector:
        import lightning

        data = TrainingSet.of(train)
        progress = progress or Progress()
        facts = self.facts()
        loader = torch.utils.data.DataLoader(_Batches(data, shuffle=facts.trained),
                                             batch_size=None)
        args = {k: v for k, v in self.module.trainer_arguments.items()
                if k in ("gradient_clip_val", "gradient_clip_algorithm")}
        if facts.trained:
            args.update(max_epochs=self.max_epochs if self.max_epochs is not None else -1,
                        max_steps=self.max_steps)
            total = self.max_steps if self.max_steps > 0 else data.num_batches * self.max_epochs
            if self.max_steps > 0 and self.max_epochs is not None:
                total = min(total, data.num_batches * self.max_epochs)
        else:
            args.update(max_epochs=1)
            total = data.num_batches
        progress.stage("train" if facts.trained else "extract", total)
        logger = _Log(progress, self.training_log, facts.trained)
        accelerator = "gpu" if self.device.type == "cuda" else "cpu"
        with _quiet(), _no_bars(), torch.random.fork_rng(devices=[]), self.timed("train"):
            torch.manual_seed(self.seed)
            trainer = lightning.Trainer(
                accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                limit_val_batches=0, callbacks=[logger], deterministic=False,
                default_root_dir=None, **args)
            self.module.train()  # as anomalib's Engine gets it: built, never evaluated
            trainer.fit(self.module, train_dataloaders=loader)
        self.module.to(self.device).eval()
        self.fit_notes.update(self.built_notes)
        self.fit_notes["steps"] = int(trainer.global_step)
        self.fit_notes["epochs"] = int(trainer.current_epoch)
        if logger.last_loss is not None and facts.trained:
            self.fit_notes["final_loss"] = logger.last_loss
        return self

    def predict(self, images: torch.Tensor) -> Prediction:
        images = self.check_images(images).to(self.device)
        self.module.eval()
        with self.timed("model"):
            x = self.module.pre_processor(images) if self.module.pre_processor else images
            out = self.module.model(x)
        scores = torch.as_tensor(out.pred_score).float().reshape(images.shape[0], -1)[:, 0]
        amap = getattr(out, "anomaly_map", None)
        size = tuple(images.shape[-2:])
        if amap is None:  # an image-level model: its score everywhere (no localisation)
            maps = scores.view(-1, 1, 1).expand(-1, *size).clone()
        else:
            amap = torch.as_tensor(amap).float()
            amap = amap.reshape(images.shape[0], 1, *amap.shape[-2:])
            if tuple(amap.shape[-2:]) != size:
                amap = torch.nn.functional.interpolate(amap, size=size, mode="bilinear",
                                                       align_corners=False)
            maps = amap[:, 0]
        return Prediction(scores=scores.cpu(), maps=maps.cpu())

    # -- records ----------------------------------------------------------------------------
    def backbone_info(self) -> BackboneInfo | None:
        if not self.facts().backbone_arg:
            return None
        return BackboneInfo(self.backbone, str(self.weights), self.backbone_sha256)

    def _extra_metadata(self) -> dict[str, str]:
        return {"anomalib_version": str(available()), "anomalib_class": self.anomalib_name}

    def _after_load(self, meta: dict[str, str]) -> None:
        saved = meta.get("anomalib_version")
        if saved != available():
            raise DetectorError(f"the model was fitted with anomalib {saved}, this is "
                                f"{available()}: install anomalib=={saved} or fit again")
        self.module.eval()


class _Batches(torch.utils.data.IterableDataset):
    """The training images as anomalib ``ImageBatch``es, reshuffled (seeded) each epoch for a
    trained model as anomalib's train dataloader does."""

    def __init__(self, data: TrainingSet, shuffle: bool) -> None:
        super().__init__()
        self.data, self.shuffle, self.epoch = data, shuffle, 0

    def __iter__(self) -> Iterator[Any]:
        from anomalib.data import ImageBatch

        for batch in self.data.batches(shuffle=self.shuffle, epoch=self.epoch):
            images = Detector.check_images(batch)
            n, size = images.shape[0], images.shape[-2:]
            # normal images, as anomalib's datasets give them: label 0 and an empty mask
            yield ImageBatch(image=images, gt_label=torch.zeros(n, dtype=torch.bool),
                             gt_mask=torch.zeros(n, *size, dtype=torch.bool))
        self.epoch += 1


class _Log:
    """A Lightning callback (made lazily: Lightning is imported only when a model trains) that
    reports each step's loss to the harness's progress and logs one entry per epoch."""

    def __new__(cls, progress: Progress, log: list[dict[str, float]], trained: bool) -> Any:
        import lightning

        class Log(lightning.Callback):  # type: ignore[misc]
            last_loss: float | None = None

            def __init__(self) -> None:
                self.losses: list[float] = []

            def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any,
                                   batch_idx: int) -> None:
                loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
                metrics = {}
                if isinstance(loss, torch.Tensor) and trained:
                    self.last_loss = float(loss.detach())
                    self.losses.append(self.last_loss)
                    metrics["loss"] = self.last_loss
                progress.advance(1, **metrics)

            def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
                if not trained:
                    return
                entry = {"epoch": float(trainer.current_epoch + 1), "step": float(
                    trainer.global_step)}
                if self.losses:
                    entry["loss"] = sum(self.losses) / len(self.losses)
                    progress.log(**entry)
                log.append(entry)
                self.losses = []

        return Log()


@functools.cache
def _default_size(name: str) -> tuple[int, int | None]:
    """anomalib's default input of model ``name``: (resize, centre crop or None)."""
    base = anomalib_class(name).configure_pre_processor()
    resize, crop = 256, None
    for t in getattr(base.transform, "transforms", [base.transform]):
        size = getattr(t, "size", None)
        if size is None:
            continue
        side = int(size[0] if isinstance(size, (list, tuple)) else size)
        if type(t).__name__ == "Resize":
            resize = side
        elif type(t).__name__ == "CenterCrop":
            crop = side
    return resize, crop


def _normalization_text(cls: type[AnomalibDetector], params: Mapping[str, Any]) -> str:
    backbone = params.get("backbone")
    if cls.facts().backbone_arg and backbone:
        try:
            from baselines.components.backbones import get_spec

            spec = get_spec(str(backbone))
            return (f"the backbone's ({backbone}: mean {list(spec.mean)}, std "
                    f"{list(spec.std)}), in anomalib's PreProcessor")
        except DetectorError:
            pass
    return "anomalib's default PreProcessor normalisation"


@functools.cache
def detector_class(name: str) -> type[AnomalibDetector]:
    """The Detector class of ``anomalib.models.NAME`` (made once per process)."""
    if name in REFUSED:
        raise DetectorError(f"anomalib's {name} is not run by this bridge: {REFUSED[name]}")
    klass = anomalib_class(name)
    facts = ZOO.get(name)
    if facts is None:
        raise DetectorError(f"anomalib's {name} is not run by this bridge yet; it runs: "
                            f"{', '.join(ZOO)}")
    doc = (klass.__doc__ or "").strip().split("\n")[0]
    attrs: dict[str, Any] = {
        "__module__": __name__, "__qualname__": name, "anomalib_name": name,
        "name": f"anomalib-{name.lower()}",
        "description": f"anomalib's {name}: {doc}".rstrip(": "),
        "paper": f"anomalib {available()} (anomalib.models.{name})",
        "backbone_role": None,
    }
    if facts.backbone_arg:
        needs_stride4 = any(v == "layer1" or (isinstance(v, (list, tuple)) and "layer1" in v)
                            for v in default_layers(name).values())
        attrs["backbone_role"] = "padim" if needs_stride4 else "patchcore"
        default = inspect.signature(klass.__init__).parameters[facts.backbone_arg].default
        default = str(default).split(".")[0]
        attrs["paper_backbone"] = default if default in TIMM_NAMES else "efficientnet_lite2"
        # offline: the built-in methods' fallback where the model takes it (so `patchcore`
        # and `anomalib:Patchcore` of one run share a backbone), else Lite2
        attrs["fallback_backbone"] = (facts.backbones[0] if facts.backbones else
                                      "mobilenet_v2" if facts.takes_module
                                      else "efficientnet_lite2")
    if facts.trained:
        attrs["budgets"] = {"paper": {}, "quick": dict(facts.quick),
                            "smoke": {"max_steps": 2}}
    return type(name, (AnomalibDetector,), attrs)


def __getattr__(name: str) -> Any:
    """``baselines.anomalib_zoo:Stfpm`` -> the Detector class of anomalib's Stfpm (import paths,
    saved models and Ray workers name the classes this way)."""
    if name.startswith("_") or not name[:1].isupper():
        raise AttributeError(name)
    try:
        return detector_class(name)
    except DetectorError as err:
        raise AttributeError(f"{name}: {err}") from None


__all__ = ["REFUSED", "ZOO", "AnomalibDetector", "available", "detector_class",
           "harness_weights", "map_layers", "require"]
