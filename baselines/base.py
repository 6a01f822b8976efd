"""The Detector contract shared by every method (DESIGN.md, "Contracts").

A detector is an ``nn.Module``:

* ``__init__`` stores its settings as attributes of the same name (paper defaults as keyword
  arguments; :meth:`Detector.get_params` reads them back) and builds structure only;
* ``fit(train, progress=None)`` learns from a :class:`~baselines.training.TrainingSet` of normal
  images (re-iterable: a trained method runs epochs over it; a tensor or a list of batches is
  accepted too) and returns ``self``; it reports steps, epochs and losses to ``progress``;
* ``predict(images)`` returns a :class:`Prediction`; higher means more anomalous (PyOD's sign);
* everything learned lives in buffers or parameters, so ``state_dict()`` is the whole model and
  ``save``/``load`` go through safetensors (never pickle).

What the harness reads, declared here: :meth:`input_for` (the images a method wants: size,
crop, resampling, normalisation), ``fit_batch_size``, ``budgets`` (named sets of setting
overrides, e.g. ``quick`` for a CPU), ``fit_timings`` / ``last_timings`` (seconds per stage of
the last fit / predict), :meth:`backbone_info`, :meth:`state_summary`, ``training_log`` (one
entry per epoch or logging interval of a trained method, empty for the others), ``fit_notes``
(other facts of the fit worth recording) and :meth:`training_verdict`.

Images are float RGB in [0, 1], already resized and cropped as :meth:`input_for` says
(``baselines.preprocess``); each detector applies its own normalisation.

A subclass only has to write ``__init__``, ``fit`` and ``predict`` (``docs/adding-a-method.md``):
the base class wraps them (:meth:`Detector.__init_subclass__`) and does the bookkeeping once, so
no method repeats it: ``fit`` starts with fresh ``fit_notes``, marks the model fitted when it
returns, and leaves ``fit_timings`` = the stages the method timed with :meth:`Detector.timed`
plus ``total`` (the call's wall time); ``predict`` refuses an unfitted model, runs without
autograd and leaves its stages in ``last_timings`` (``{"predict": wall time}`` when it timed
none). A class without its own ``name`` is named after itself.

For benchmarks (``python -m leaderboard.perf``), two optional hooks expose a method's parts
without reaching into it: :meth:`Detector.timing_probes` (named parts of ``predict`` that can be
timed on their own, e.g. the backbone forward) and :meth:`Detector.diagnostics` (facts about the
fitted model measured on given images, e.g. an approximate search's recall).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from baselines.errors import DetectorError, InputError, NotFittedError
from baselines.preprocess import DEFAULT_INPUT, InputSpec
from baselines.settings import Setting, settings_of
from baselines.training import Progress, TrainingSet
from cadsd.files import atomic_file

if TYPE_CHECKING:  # typing.Self is Python 3.11+
    from typing_extensions import Self

FORMAT_VERSION = "1"
#: what ``fit`` accepts: a TrainingSet, a tensor of images, or an iterable of batches
Train = TrainingSet | torch.Tensor | Iterable[torch.Tensor]


@dataclass(frozen=True)
class Prediction:
    """Image scores ``(B,)`` and anomaly maps ``(B, H, W)`` at the input resolution."""

    scores: torch.Tensor
    maps: torch.Tensor


@dataclass(frozen=True)
class BackboneInfo:
    """Which pretrained network a detector's features come from, and the weights' sha256
    (for random init, ``init:`` + a digest of the initial weights)."""

    name: str
    weights: str
    sha256: str | None


@dataclass(frozen=True)
class StateSummary:
    """What ``fit`` learned, for records: learned buffers' shapes, the number of trained
    parameters (0 for frozen-feature methods) and the memory bank's shape where there is one."""

    buffers: dict[str, list[int]]
    parameters: int = 0
    memory_bank: list[int] | None = None


class Detector(nn.Module):
    """Base class: settings as attributes, learned state in buffers/parameters, safetensors."""

    #: registry name, one-line description and paper citation (shown by ``bench list``)
    name: ClassVar[str] = "detector"
    description: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    #: named budgets: setting overrides of the paper defaults (``paper`` is the defaults)
    budgets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: which backbone layers the method taps (a role of the backbone registry), or None
    backbone_role: ClassVar[str | None] = None
    #: the paper's backbone, and the offline one ``--backbone auto`` falls back to
    paper_backbone: ClassVar[str | None] = None
    fallback_backbone: ClassVar[str | None] = None
    #: images per batch the harness feeds ``fit`` with
    fit_batch_size: ClassVar[int] = 8

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Wrap the subclass's own ``fit`` and ``predict`` (see the module docstring), and name
        a class that sets no ``name`` after itself."""
        super().__init_subclass__(**kwargs)
        if cls.name == Detector.name:
            cls.name = cls.__name__
        if "fit" in cls.__dict__:
            cls.fit = _wrap_fit(cls.__dict__["fit"])  # type: ignore[method-assign]
        if "predict" in cls.__dict__:
            cls.predict = _wrap_predict(cls.__dict__["predict"])  # type: ignore[method-assign]

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("fitted_", torch.zeros((), dtype=torch.bool), persistent=True)
        self.fit_timings: dict[str, float] = {}
        self.last_timings: dict[str, float] = {}
        self.training_log: list[dict[str, float]] = []
        self.fit_notes: dict[str, Any] = {}  # facts for the record (an index's measured recall)
        self._stages: dict[str, float] | None = None  # the running fit's or predict's stages

    # -- settings ----------------------------------------------------------------------------
    @classmethod
    def settings(cls) -> dict[str, Setting]:
        """The keyword settings of ``__init__``, with defaults and annotations."""
        return settings_of(cls)

    def get_params(self) -> dict[str, Any]:
        """The settings this detector was built with (JSON-ready: tuples become lists)."""
        out = {}
        for name in self.settings():
            value = getattr(self, name)
            if isinstance(value, torch.device):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        """Check a full set of settings' values (ranges, combinations); raise DetectorError
        naming the fix. Runs in ``__init__`` and, through the harness, before any cell."""

    @classmethod
    def check_data(cls, params: Mapping[str, Any], n_images: int) -> None:
        """Check settings that depend on how many training images a fit gets (``n_images``:
        the smallest training set of the run); raise DetectorError naming the fix. The harness
        calls it before any cell runs; ``fit`` meets the same limits later anyway."""

    def _check_settings(self) -> None:
        """Subclasses call this once their settings are stored, before building anything."""
        params = self.get_params()
        json.dumps(params)  # settings must be JSON-serialisable: they go into the file header
        type(self).validate(params)

    @classmethod
    def input_for(cls, params: Mapping[str, Any]) -> InputSpec:
        """The images this method wants with settings ``params`` (default: resize 256, crop
        224, as the official SA-PatchCore code)."""
        return DEFAULT_INPUT

    @property
    def input_spec(self) -> InputSpec:
        return type(self).input_for(self.get_params())

    @classmethod
    def training_flops(cls, params: Mapping[str, Any], n_images: int) -> float | None:
        """FLOPs that ``fit`` spends training with settings ``params`` on ``n_images`` images
        (None for methods that do not train): the harness states the cost of a budget."""
        return None

    @classmethod
    def cost_note(cls, params: Mapping[str, Any], n_images: int) -> str | None:
        """A line ``bench run`` prints before the first cell when settings ``params`` make
        fitting on ``n_images`` images unusually slow (None: nothing to say)."""
        return None

    # -- the contract -------------------------------------------------------------------------
    def fit(self, train: Train, progress: Progress | None = None) -> Self:  # pragma: no cover
        raise NotImplementedError

    def predict(self, images: torch.Tensor) -> Prediction:  # pragma: no cover - abstract
        raise NotImplementedError

    def backbone_info(self) -> BackboneInfo | None:
        """The pretrained backbone's identity; None for a method without one."""
        return None

    def state_summary(self) -> StateSummary:
        """Shapes of the learned buffers and the number of trained parameters."""
        saved = self.state_dict()
        buffers = {k: list(v.shape) for k, v in self.named_buffers()
                   if k in saved and k != "fitted_" and v.ndim > 0}
        params = sum(p.numel() for p in self.parameters())
        return StateSummary(buffers=buffers, parameters=params)

    def step_probe(self, train: Train) -> Callable[[], float] | None:
        """For benchmarks: prepare what one optimisation step needs from ``train`` (as ``fit``
        would) and return a function that runs one real step and returns its loss; None for
        methods that do not train. Running it changes the model: use a fresh one."""
        return None

    def training_verdict(self) -> str | None:
        """A warning when training ended before it taught the model anything measurable (its
        losses still at their untrained level), else None; shown beside the method's row."""
        return None

    def timing_probes(self) -> dict[str, Callable[[torch.Tensor], object]]:
        """Named parts of ``predict`` that a benchmark may time on their own, each a function
        of a batch of checked images (e.g. ``backbone``: the feature forward alone). None by
        default; a fitted model's probes may use what ``fit`` learned."""
        return {}

    def diagnostics(self, images: torch.Tensor) -> dict[str, Any]:
        """Facts about the fitted model measured on ``images`` (float RGB in [0, 1] at the
        method's input), for benchmarks: e.g. an approximate nearest-neighbour search's recall
        against exact search. None by default."""
        return {}

    # -- timing ------------------------------------------------------------------------------
    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the block's wall time to ``stage`` of the running ``fit`` or ``predict`` (GPU
        work synchronised); the base class hands the stages on as ``fit_timings`` /
        ``last_timings``. Blocks may nest (an outer stage includes its inner ones) and repeat
        (times add up); outside ``fit`` and ``predict`` nothing is recorded."""
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.fitted_.device.type == "cuda":
                torch.cuda.synchronize(self.fitted_.device)
            if self._stages is not None:
                self._stages[stage] = self._stages.get(stage, 0.0) + time.perf_counter() - start

    # -- helpers for subclasses -----------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted_.item())

    def check_fitted(self) -> None:
        """Raise a clear error when the model has not been fitted (or loaded) yet."""
        if not self.is_fitted:
            raise NotFittedError(
                f"{self.name}: predict() called before fit(). Call fit() on normal images, "
                "or load a saved model with load(path)."
            )

    @staticmethod
    def check_images(images: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Validate a batch: float ``(B, 3, H, W)`` in [0, 1]; grayscale ``(B, 1, H, W)`` is
        repeated to RGB, a single image ``(3, H, W)`` gets a batch axis; ``uint8`` is scaled."""
        if not isinstance(images, torch.Tensor):
            raise InputError(f"expected a torch.Tensor of images, got {type(images).__name__}")
        if images.ndim == 3:
            images = images.unsqueeze(0)
        if images.ndim != 4:
            raise InputError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        elif not images.is_floating_point():
            raise InputError(f"expected float images in [0, 1] (or uint8), got {images.dtype}")
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        elif images.shape[1] != 3:
            raise InputError(
                f"expected 3 (RGB) or 1 (grayscale) channels, got {images.shape[1]} "
                f"in shape {tuple(images.shape)}; convert images with PIL's .convert('RGB')"
            )
        if size is not None and tuple(images.shape[-2:]) != tuple(size):
            raise InputError(
                f"images are {tuple(images.shape[-2:])} but the model was fitted on {tuple(size)}; "
                "preprocess them the same way (baselines.preprocess, the method's input_spec)"
            )
        return images

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write settings and state to one safetensors file, atomically (temp file + rename)."""
        from safetensors.torch import save_file

        self.check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        meta = {
            "format": "cadsd-bench-detector",
            "format_version": FORMAT_VERSION,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "config": json.dumps(self.get_params(), sort_keys=True),
            **self._extra_metadata(),
        }
        with atomic_file(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None,
             classes: Callable[[str], type[Detector]] | None = None) -> Self:
        """Rebuild a detector saved with :meth:`save`; rejects corrupt, foreign or damaged
        files with a :class:`DetectorError` naming the file.

        The class the file's header names is never imported by this method: it must be ``cls``
        or a subclass of it that is already imported, unless ``classes`` (``"module:Class"`` ->
        class) resolves it (the harness resolves built-in methods, installed entry points and
        classes the user names). A file downloaded from anywhere can therefore not run code."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise DetectorError(f"model file not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            tensors = load_file(str(path))
        except Exception as err:  # noqa: BLE001 - safetensors raises several types for a damaged file
            raise DetectorError(
                f"{path} is not a valid saved model (corrupt or truncated safetensors file: {err})"
            ) from None
        if meta.get("format") != "cadsd-bench-detector":
            raise DetectorError(f"{path} is a safetensors file but not a cadsd-bench detector")
        target = str(meta.get("class", ""))
        klass = classes(target) if classes is not None else _loaded_subclass(cls, target, path)
        if not (isinstance(klass, type) and issubclass(klass, cls)):
            raise DetectorError(f"{path} holds a {target!r}, not a {cls.__name__}")
        try:
            model = klass(**_header_config(klass, meta, path, device))
        except (TypeError, ValueError) as err:  # a run setting of the wrong kind
            raise DetectorError(f"{path} has a damaged header ({err})") from None
        except DetectorError as err:  # values out of range, weights that cannot be had
            raise type(err)(f"{path}: {err}") from None
        model._prepare_for_state(tensors)
        try:
            model.load_state_dict(tensors, strict=True)
        except RuntimeError as err:
            raise DetectorError(f"{path} does not match {target}'s state: {err}") from None
        model._after_load(meta)
        return model

    def _extra_metadata(self) -> dict[str, str]:
        """Extra string metadata for the file header (e.g. the backbone weights' sha256)."""
        return {}

    def _after_load(self, meta: dict[str, str]) -> None:
        """Check the loaded model against the file header; raise DetectorError to refuse it."""

    def _prepare_for_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Give learned buffers the shapes in ``tensors`` before ``load_state_dict``.

        Buffers whose size is only known after ``fit`` (a memory bank) are created empty in
        ``__init__``, or declared ``register_buffer(name, None)``, or first registered in
        ``fit``; this gives each the saved shape so loading is strict.
        """
        own = dict(self.named_buffers())
        params = dict(self.named_parameters())
        device = self.fitted_.device
        for key, value in tensors.items():
            if key in params or (key in own and own[key].shape == value.shape):
                continue
            module_path, _, buf = key.rpartition(".")
            try:
                module = self.get_submodule(module_path) if module_path else self
            except AttributeError:
                continue  # not ours: load_state_dict names the unexpected key
            if key in own:
                module._buffers[buf] = torch.empty_like(value, device=own[key].device)
            elif buf in module._buffers or not hasattr(module, buf):
                module.register_buffer(buf, torch.empty_like(value, device=device))


def _loaded_subclass(cls: type[Detector], target: str, path: Path) -> type[Detector]:
    """``cls`` or an already imported subclass of it named ``module:qualname``."""
    todo, seen = [cls], set()
    while todo:
        klass = todo.pop()
        if f"{klass.__module__}:{klass.__qualname__}" == target:
            return klass
        seen.add(klass)
        todo += [k for k in klass.__subclasses__() if k not in seen]
    raise DetectorError(
        f"{path} holds a model of {target or 'no class'!r}, which is not {cls.__name__} or a "
        f"subclass of it imported in this process; import the module that defines it first "
        "(a model file never makes this loader import a module), or use `bench predict`, "
        "which resolves built-in methods and installed entry points"
    )


def _header_config(klass: type[Detector], meta: Mapping[str, str], path: Path,
                   device: str | torch.device | None) -> dict[str, Any]:
    """The settings in a file's header, checked against ``klass`` (a damaged header is a
    DetectorError naming the file, never a traceback)."""
    from baselines.settings import RUN_SETTINGS, check_settings

    bad = f"{path} has a damaged header ({klass.__name__}'s settings"
    try:
        config = json.loads(meta["config"])
    except KeyError:
        raise DetectorError(f"{bad} are missing); save the model again") from None
    except ValueError as err:
        raise DetectorError(f"{bad} are not JSON: {err}); save the model again") from None
    if not isinstance(config, dict):
        raise DetectorError(f"{bad} are not a JSON object); save the model again")
    run = {k: v for k, v in config.items() if k in RUN_SETTINGS}
    try:
        checked = check_settings(klass, {k: v for k, v in config.items() if k not in run})
    except DetectorError as err:
        raise DetectorError(f"{bad} do not fit: {err})") from None
    if device is not None and "device" in klass.settings():
        run["device"] = str(device)
    return {**run, **checked}


@contextmanager
def _stages(model: Detector) -> Iterator[dict[str, float] | None]:
    """Collect the stages :meth:`Detector.timed` records during the block: yields the dict in
    the outermost wrapped call, None in a nested one (a subclass calling ``super().fit``)."""
    if model._stages is not None:
        yield None
        return
    model._stages = {}
    try:
        yield model._stages
    finally:
        model._stages = None


def _wrap_fit(fit: Callable[..., Any]) -> Callable[..., Any]:
    """``fit`` with the bookkeeping of the module docstring."""

    @functools.wraps(fit)
    def wrapped(self: Detector, train: Train, progress: Progress | None = None) -> Any:
        with _stages(self) as stages:
            if stages is None:  # nested: the outermost call does the bookkeeping
                return fit(self, train, progress)
            self.fit_notes, self.fit_timings = {}, {}
            start = time.perf_counter()
            out = fit(self, train, progress)
            total = time.perf_counter() - start
            self.fitted_.fill_(True)
            # a method that fills fit_timings itself keeps its entries
            self.fit_timings = {**stages, **self.fit_timings, "total": total}
        return out

    wrapped.__cadsd_wrapped__ = True  # type: ignore[attr-defined]
    return wrapped


def _wrap_predict(predict: Callable[..., Prediction]) -> Callable[..., Prediction]:
    """``predict`` that refuses an unfitted model, runs without autograd and leaves its stages
    (or its wall time) in ``last_timings``."""

    @functools.wraps(predict)
    def wrapped(self: Detector, images: torch.Tensor, *args: Any, **kwargs: Any) -> Prediction:
        with _stages(self) as stages:
            if stages is None:
                return predict(self, images, *args, **kwargs)
            self.check_fitted()
            self.last_timings = {}
            start = time.perf_counter()
            with torch.no_grad():
                out = predict(self, images, *args, **kwargs)
            self.last_timings = ({**stages, **self.last_timings} if stages or self.last_timings
                                 else {"predict": time.perf_counter() - start})
        return out

    wrapped.__cadsd_wrapped__ = True  # type: ignore[attr-defined]
    return wrapped
