"""PaDiM (Defard et al., "PaDiM: a Patch Distribution Modeling Framework for Anomaly Detection and
Localization", ICPR 2021).

Each position of the layer-1 grid (56x56 at 224 for WideResNet50-2) gets a multivariate Gaussian
of its embedding over the normal training images (sec. 3.2); a test patch's score is its
Mahalanobis distance to that Gaussian (eq. 2); the map is upsampled (bilinear) to the input and
blurred (Gaussian, sigma 4), and the image score is the map's maximum (sec. 3.3, reference code).

Embedding (sec. 3.1): layer1 + layer2 + layer3 activations, the deeper two upsampled (nearest) to
layer1's grid and concatenated (256 + 512 + 1024 = 1792 dims for WRN50-2), then a fixed, seeded
random subset of ``n_features`` dims (550 for WRN50-2, sec. 4.2; all dims when the backbone has
fewer, e.g. 152 for MobileNetV2). The Mahalanobis distance does not depend on the order of the
dims, so the subset is kept sorted and each layer contributes only its selected channels before
upsampling (the reference concatenates all 1792 first: 3x the memory for the same numbers).

Memory and speed: :mod:`baselines.components.gaussian` (one pass, one packed float32 buffer).
Stages (``fit_timings``): ``extract`` (backbone + embedding), ``gaussian`` (sums + factors, of
which ``cholesky`` is the final factorisation); ``last_timings`` after ``predict``:
``backbone``, ``mahalanobis``, ``map``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from baselines.base import Prediction, Train
from baselines.components.aggregate import upsample_nearest
from baselines.components.backbones import get_spec
from baselines.components.gaussian import BlockTriangle, GaussianAccumulator, mahalanobis
from baselines.errors import DetectorError, InputError
from baselines.feature_detector import FeatureDetector, check_sigma
from baselines.training import Progress


class PaDiM(FeatureDetector):
    """Per-position Gaussians of layer1-3 embeddings, Mahalanobis distance (Defard et al. 2021)."""

    name: ClassVar[str] = "padim"
    description: ClassVar[str] = (
        "Gaussian per patch position of layer1-3 features, Mahalanobis distance"
    )
    paper: ClassVar[str] = (
        "Defard et al., PaDiM: a Patch Distribution Modeling Framework for Anomaly Detection "
        "and Localization, ICPR 2021"
    )
    backbone_role: ClassVar[str] = "padim"

    def __init__(
        self,
        *,
        backbone: str = "wide_resnet50_2",
        weights: str = "imagenet",
        device: str = "cpu",
        seed: int = 0,
        n_features: int = 550,
        eps: float = 0.01,
        sigma: float = 4.0,
        block: int = 64,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self._store_run_settings(backbone, weights, device, seed)
        self.n_features = n_features
        self.eps = eps
        self.sigma = sigma
        self.block = block
        self.channels_last = channels_last
        self._check_settings()
        self.layer_names = get_spec(backbone).role_layers(self.backbone_role)
        self._setup_backbone(self.layer_names)
        dev = self.device
        self.register_buffer("idx_", torch.zeros(0, dtype=torch.long, device=dev))  # (d,) sorted
        self.register_buffer("mean_", torch.zeros(0, 0, device=dev))  # (P, d)
        # chol(Sigma)^-1 per position, packed block lower triangular: (P, layout size)
        self.register_buffer("factor_", torch.zeros(0, 0, device=dev))
        self.register_buffer("row_blocks_", torch.zeros(0, dtype=torch.long, device=dev))

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        if params["n_features"] < 1 or params["eps"] < 0 or params["block"] < 1:
            raise DetectorError(
                f"PaDiM needs n_features >= 1, eps >= 0 and block >= 1; got {params['n_features']}, "
                f"{params['eps']}, {params['block']}"
            )
        check_sigma(params["sigma"])

    # -- embedding --------------------------------------------------------------------------
    def _select_dims(self, channels: tuple[int, ...]) -> torch.Tensor:
        """The seeded random subset of embedding dims (sec. 3.1), sorted; all when too few."""
        total, n = sum(channels), self.n_features
        if n >= total:
            return torch.arange(total)
        gen = torch.Generator().manual_seed(self.seed)
        return torch.randperm(total, generator=gen)[:n].sort().values

    def _embed(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Layer features -> the selected embedding dims ``(B, d, h, w)`` on layer1's grid."""
        parts, offset = [], 0
        size = tuple(feats[0].shape[-2:])
        for f in feats:
            chans = f.shape[1]
            sel = self.idx_[(self.idx_ >= offset) & (self.idx_ < offset + chans)] - offset
            parts.append(upsample_nearest(f[:, sel], size))  # select first: less to upsample
            offset += chans
        return torch.cat(parts, dim=1).float().contiguous()

    # -- the contract -----------------------------------------------------------------------
    def fit(self, train: Train, progress: Progress | None = None) -> PaDiM:
        """Stream the normal images once: per-position mean and covariance, then the factors."""
        acc: GaussianAccumulator | None = None
        size: tuple[int, int] | None = None
        with torch.no_grad():
            for batch in self._fit_batches(train, progress):
                images = self.check_images(batch, size=size)
                with self.timed("extract"):
                    feats = self.features(images)
                    if acc is None:
                        size = (int(images.shape[-2]), int(images.shape[-1]))
                        self.idx_ = self._select_dims(tuple(f.shape[1] for f in feats)).to(
                            self.device
                        )
                    emb = self._embed(feats).flatten(2)  # (B, d, P)
                    del feats
                with self.timed("gaussian"):
                    if acc is None:
                        acc = GaussianAccumulator(
                            emb.shape[2], emb.shape[1], self.device, self.block
                        )
                    acc.add(emb)
                del emb
            if acc is None or size is None:
                raise InputError(f"{self.name}.fit() got no images: pass batches of normal images")
            with self.timed("gaussian"), self.timed("cholesky"):
                self.mean_, self.factor_ = acc.finalize(self.eps)
                self.row_blocks_ = torch.tensor(acc.layout.edges, device=self.device)
            del acc
        self.input_size_ = torch.tensor(size, dtype=torch.long, device=self.device)
        return self

    def predict(self, images: torch.Tensor) -> Prediction:
        """Mahalanobis distance per position -> map (bilinear + blur); score = map maximum."""
        size = (int(self.input_size_[0]), int(self.input_size_[1]))
        images = self.check_images(images, size=size)
        with torch.inference_mode():
            with self.timed("backbone"):
                emb = self._embed(self.features(images))  # (B, d, h, w)
                b, _, h, w = emb.shape
            with self.timed("mahalanobis"):
                layout = BlockTriangle(tuple(self.row_blocks_.tolist()))
                dist = mahalanobis(emb.flatten(2), self.mean_, self.factor_, layout).view(b, h, w)
            with self.timed("map"):
                maps = self._anomaly_map(dist, size)
                scores = maps.flatten(1).amax(1)
        return Prediction(scores=scores.cpu(), maps=maps.cpu())
