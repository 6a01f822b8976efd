"""The Detector contract shared by every method (DESIGN.md, "Contracts").

A detector is an ``nn.Module``:

* ``__init__`` only stores settings (paper defaults as keyword arguments) and builds structure;
* ``fit(batches)`` consumes an iterable of normal images ``(B, 3, H, W)`` and returns ``self``;
* ``predict(images)`` returns a :class:`Prediction`; higher means more anomalous (PyOD's sign);
* everything learned lives in buffers or parameters, so ``state_dict()`` is the whole model and
  ``save``/``load`` go through safetensors (never pickle).

Images are float RGB in [0, 1], already resized and centre-cropped (``baselines.preprocess``);
each detector applies its backbone's normalisation itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from baselines.errors import DetectorError, InputError, NotFittedError

if TYPE_CHECKING:  # typing.Self is Python 3.11+
    from typing_extensions import Self

FORMAT_VERSION = "1"


@dataclass(frozen=True)
class Prediction:
    """Image scores ``(B,)`` and anomaly maps ``(B, H, W)`` at the input resolution."""

    scores: torch.Tensor
    maps: torch.Tensor


class Detector(nn.Module):
    """Base class: settings in ``config``, learned state in buffers, safetensors persistence."""

    #: registry name, one-line description and paper citation (shown by ``bench list``)
    name: ClassVar[str] = "detector"
    description: ClassVar[str] = ""
    paper: ClassVar[str] = ""

    def __init__(self, **config: Any) -> None:
        super().__init__()
        json.dumps(config)  # settings must be JSON-serialisable: they go into the file header
        self.config: dict[str, Any] = dict(config)
        self.register_buffer("fitted_", torch.zeros((), dtype=torch.bool), persistent=True)

    # -- the contract ---------------------------------------------------------------------
    def fit(self, batches: Iterable[torch.Tensor]) -> Self:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, images: torch.Tensor) -> Prediction:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- helpers for subclasses -----------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted_.item())

    def _mark_fitted(self) -> None:
        self.fitted_.fill_(True)

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
                "preprocess them the same way (baselines.preprocess: resize 256, crop 224)"
            )
        return images

    def state_summary(self) -> dict[str, list[int]]:
        """Shapes of the learned buffers (e.g. the memory bank), for result records."""
        return {k: list(v.shape) for k, v in self.named_buffers() if k != "fitted_" and v.ndim > 0}

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
            "config": json.dumps(self.config, sort_keys=True),
            **self._extra_metadata(),
        }
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None) -> Self:
        """Rebuild a detector saved with :meth:`save`; rejects corrupt or foreign files."""
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
        module_name, _, qualname = meta["class"].partition(":")
        import importlib

        klass = getattr(importlib.import_module(module_name), qualname)
        if not issubclass(klass, cls):
            raise DetectorError(f"{path} holds a {qualname}, not a {cls.__name__}")
        config = json.loads(meta["config"])
        if device is not None:
            config["device"] = str(device)
        model = klass(**config)
        model._prepare_for_state(tensors)
        try:
            model.load_state_dict(tensors, strict=True)
        except RuntimeError as err:
            raise DetectorError(f"{path} does not match {qualname}'s state: {err}") from None
        model._after_load(meta)
        return model

    def _extra_metadata(self) -> dict[str, str]:
        """Extra string metadata for the file header (e.g. the backbone weights' sha256)."""
        return {}

    def _after_load(self, meta: dict[str, str]) -> None:
        """Check the loaded model against the file header; raise DetectorError to refuse it."""

    def _prepare_for_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Resize learned buffers to the shapes in ``tensors`` before ``load_state_dict``.

        Buffers whose size is only known after ``fit`` (a memory bank) are created empty in
        ``__init__``; this gives them the saved shape so loading is strict.
        """
        own = dict(self.named_buffers())
        for key, value in tensors.items():
            if key in own and own[key].shape != value.shape:
                module_path, _, buf = key.rpartition(".")
                module = self.get_submodule(module_path) if module_path else self
                module._buffers[buf] = torch.empty_like(value, device=own[key].device)
