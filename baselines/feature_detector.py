"""What every detector on a frozen pretrained backbone shares (PatchCore, SA-PatchCore, PaDiM).

The backbone is structure, not learned state: it is held outside the registered submodules, so
``state_dict()`` and saved files hold only what ``fit`` learned, and the weights' sha256 (or, for
random init, a digest of the initial weights) goes into the file header; ``load`` refuses a
file fitted with other weights. ``.to()`` moves the backbone too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence, Sized
from typing import Any

import torch

from baselines.base import BackboneInfo, Detector, Train
from baselines.components.anomaly_map import apply_map, map_matrices
from baselines.components.backbones import FeatureExtractor
from baselines.components.memory import HeapTrimmer
from baselines.device import resolve_device
from baselines.errors import DetectorError
from baselines.training import Progress, TrainingSet

#: the largest anomaly-map blur (pixels): wider than any map, so larger values mean nothing
MAX_SIGMA = 1000.0


def check_sigma(sigma: float) -> None:
    """The anomaly map's Gaussian blur: 0 < sigma <= :data:`MAX_SIGMA`."""
    if not 0 < sigma <= MAX_SIGMA:
        raise DetectorError(f"sigma (the anomaly map's blur, in pixels) must be in (0, "
                            f"{MAX_SIGMA:g}], got {sigma}")


class FeatureDetector(Detector):
    """A :class:`Detector` whose features come from a frozen backbone (``self.extractor``).

    Subclasses store the settings ``backbone``, ``weights``, ``device`` and ``seed`` (and may
    have ``channels_last``, ``precision`` and ``sigma``) before calling :meth:`_setup_backbone`.
    """

    paper_backbone = "wide_resnet50_2"
    fallback_backbone = "mobilenet_v2"
    backbone: str
    weights: str
    seed: int
    sigma: float
    #: defaults for subclasses without these settings (PaDiM has no bf16 option)
    channels_last: bool = False
    precision: str = "fp32"

    def _store_run_settings(self, backbone: str, weights: str, device: str, seed: int) -> None:
        """The settings the harness sets for every cell (``bench run --backbone/--weights/
        --device/--seeds``), stored as attributes like every other setting."""
        self.backbone = backbone
        self.weights = str(weights)
        self.device = device
        self.seed = seed

    def _setup_backbone(self, layers: Sequence[str]) -> None:
        """Build the frozen extractor for ``layers`` from the stored settings."""
        self.device = resolve_device(self.device)
        extractor = FeatureExtractor(self.backbone, layers, self.weights, self.seed)
        if self.channels_last:  # faster convolutions on CPU, same numbers
            extractor = extractor.to(memory_format=torch.channels_last)
        object.__setattr__(self, "extractor", extractor.to(self.device))  # not a submodule
        self.backbone_sha256: str | None = extractor.weights_sha256
        self._init_digest: str | None = None
        self.register_buffer("input_size_", torch.zeros(2, dtype=torch.long, device=self.device))
        self.images_embedded = 0  # images through the backbone so far (benchmarks read it)
        self._map_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _reset_caches(self) -> None:
        """Drop device-bound caches (after ``.to()`` or ``load``); subclasses extend this."""
        self._map_cache = {}

    def _apply(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> FeatureDetector:
        # .to()/.cuda() move the unregistered backbone too
        super()._apply(fn, *args, **kwargs)
        if "extractor" in self.__dict__:
            self.extractor._apply(fn, *args, **kwargs)
            self.device = self.fitted_.device
            self._reset_caches()
        return self

    @staticmethod
    def _fit_batches(train: Train, progress: Progress | None = None) -> Iterator[torch.Tensor]:
        """One pass over ``train`` (file order) for a fit loop, reported as the ``extract``
        stage, with the heap trimmed before the first batch and, once it has grown enough,
        after one: see :mod:`baselines.components.memory`."""
        progress = progress or Progress()
        total = train.num_batches if isinstance(train, TrainingSet) else (
            len(train) if isinstance(train, Sized) else 0)
        progress.stage("extract", total)
        trimmer = HeapTrimmer()
        for batch in train:
            yield batch
            trimmer.step()
            progress.advance()

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Float feature maps of the requested layers, in the backbone's memory format.
        ``images_embedded`` counts the images that went through the backbone."""
        self.images_embedded += images.shape[0]
        x = images.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.precision == "bf16":
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                feats = self.extractor(x)
        else:
            feats = self.extractor(x)
        # Keep channels_last: pooling, upsampling and concatenation are ~10x faster on it.
        return [f.float() for f in feats.values()]

    def timing_probes(self) -> dict[str, Callable[[torch.Tensor], object]]:
        """``backbone``: the frozen feature forward alone."""
        return {"backbone": self.features}

    def _anomaly_map(self, grid_scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``(B, h, w)`` scores -> ``(B, *size)`` map: upsample + Gaussian blur (sigma from
        the settings), as two matrix products cached per grid, size and device."""
        h, w = grid_scores.shape[-2:]
        key = (h, w, size, self.device)
        if key not in self._map_cache:
            self._map_cache[key] = map_matrices((h, w), size, self.sigma, self.device)
        return apply_map(grid_scores, self._map_cache[key])

    # -- the backbone's identity (records, persistence) -------------------------------------
    def backbone_info(self) -> BackboneInfo:
        return BackboneInfo(self.backbone, self.weights, self._backbone_digest())

    def _backbone_digest(self) -> str:
        """The weights file's sha256, or for random init a sha256 of the initialised weights."""
        if self.backbone_sha256 is not None:
            return self.backbone_sha256
        if self._init_digest is None:
            digest = hashlib.sha256()
            for key, value in self.extractor.body.state_dict().items():
                digest.update(key.encode())
                digest.update(value.detach().cpu().contiguous().numpy().tobytes())
            self._init_digest = "init:" + digest.hexdigest()
        return self._init_digest

    def _extra_metadata(self) -> dict[str, str]:
        return {"backbone_sha256": self._backbone_digest()}

    def _after_load(self, meta: dict[str, str]) -> None:
        saved, mine = meta.get("backbone_sha256"), self._backbone_digest()
        if saved != mine:
            raise DetectorError(
                f"the backbone weights differ from those the model was fitted with (sha256 "
                f"{mine[:17]} here, {str(saved)[:17]} in the file): pass the same --weights "
                f"({self.weights!r}) or fit again"
            )
        self._reset_caches()
