"""PatchCore as the SA-PatchCore paper runs it (Roth et al., CVPR 2022; Ishida et al. 2023, sec. IV).

Patch features: backbone layer2 and layer3, each 3x3 average-pooled (stride 1), layer3 upsampled
(nearest) to layer2's grid and concatenated (1536-d for WideResNet50-2). Memory bank: a 1% greedy
k-center coreset of all training patches. Patch score: L2 distance to the nearest bank vector;
image score: the largest patch score (official code, before upsampling); map: patch scores
upsampled to the input and blurred (sigma 4). PatchCore paper eq. 7 reweighting is an option.

Subclasses change the aggregation only: override :meth:`PatchCore.aggregate` (per layer) and,
where needed, :meth:`PatchCore.combine` (the layers into one embedding).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch

from baselines.base import Prediction, StateSummary, Train
from baselines.components.aggregate import concat_layers, local_avg, to_patches
from baselines.components.backbones import get_spec
from baselines.components.coreset import gather_rows, greedy_coreset
from baselines.components.nn_search import NearestNeighbors
from baselines.errors import DetectorError, InputError
from baselines.feature_detector import FeatureDetector, check_sigma
from baselines.training import Progress

PRECISIONS = ("fp32", "bf16")


class PatchCore(FeatureDetector):
    """Memory bank of locally aggregated patch features, scored by nearest-neighbour distance."""

    name = "patchcore"
    description = "PatchCore: avg-pooled layer2+layer3 patches, 1% coreset, 1-NN distance"
    paper = "Roth et al., Towards Total Recall in Industrial Anomaly Detection, CVPR 2022"
    backbone_role = "patchcore"

    def __init__(
        self,
        *,
        backbone: str = "wide_resnet50_2",
        weights: str = "imagenet",
        device: str = "cpu",
        seed: int = 0,
        coreset_ratio: float = 0.01,
        projection_dim: int | None = 128,
        coreset_start: int = 0,
        reweight: bool = False,
        num_neighbors: int = 9,
        sigma: float = 4.0,
        precision: Literal["fp32", "bf16"] = "fp32",
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self._store_run_settings(backbone, weights, device, seed)
        self.coreset_ratio = coreset_ratio
        self.projection_dim = projection_dim
        self.coreset_start = coreset_start
        self.reweight = reweight
        self.num_neighbors = num_neighbors
        self.sigma = sigma
        self.precision = precision
        self.channels_last = channels_last
        self._check_settings()
        self._setup_backbone(get_spec(backbone).role_layers(self.backbone_role))
        self.register_buffer("memory_bank_", torch.empty(0, 0, device=self.device))
        self._nn: NearestNeighbors | None = None

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        if not 0 < params["coreset_ratio"] <= 1:
            raise DetectorError(f"coreset_ratio must be in (0, 1], got {params['coreset_ratio']}")
        if params["precision"] not in PRECISIONS:
            raise DetectorError(f"precision must be one of {PRECISIONS}, got {params['precision']!r}")
        dim = params["projection_dim"]
        if dim is not None and dim < 1:
            raise DetectorError(f"projection_dim must be >= 1 (the coreset's random projection's "
                                f"dimensions) or null for no projection, got {dim}")
        if params["coreset_start"] < 0:
            raise DetectorError(f"coreset_start must be >= 0 (a patch index), got "
                                f"{params['coreset_start']}")
        if params["num_neighbors"] < 1:
            raise DetectorError(f"num_neighbors must be >= 1, got {params['num_neighbors']}")
        check_sigma(params["sigma"])

    @classmethod
    def check_data(cls, params: Mapping[str, Any], n_images: int) -> None:
        """``coreset_start`` must be one of the training patches (layer2's stride-8 grid)."""
        size = cls.input_for(params).size
        patches = n_images * (-(-size // 8)) ** 2
        if params["coreset_start"] >= patches:
            raise DetectorError(f"coreset_start={params['coreset_start']} is past the "
                                f"{patches} training patches ({n_images} images of "
                                f"{-(-size // 8)}x{-(-size // 8)}); pick a patch index below it")

    # -- the hook subclasses override ------------------------------------------------------
    def aggregate(self, index: int, feature: torch.Tensor) -> torch.Tensor:
        """Local aggregation of backbone layer ``index`` (0 = layer2, 1 = layer3): 3x3 average
        pooling, stride 1, as the official code (PatchCore paper eq. 2 with p = 3)."""
        return local_avg(feature)

    def combine(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """The aggregated layers -> one embedding: upsample to the first grid, concatenate."""
        return concat_layers(parts)

    # -- feature pipeline ------------------------------------------------------------------
    def _reset_caches(self) -> None:
        super()._reset_caches()
        self._nn = None

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Patch embedding ``(B, D, h, w)`` of checked images: backbone, aggregation, concat."""
        with self.timed("backbone"):
            feats = self.features(images)
        with self.timed("aggregate"):
            out = self.combine([self.aggregate(i, f) for i, f in enumerate(feats)])
        return out

    # -- the contract ----------------------------------------------------------------------
    def embeddings(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The embeddings ``fit`` keeps patches of, from one backbone pass: PatchCore's one
        (a method with several memory banks returns one embedding per bank)."""
        return [self.embed(images)]

    def extract_patches(
        self, train: Train, progress: Progress | None
    ) -> tuple[list[list[torch.Tensor]], tuple[int, int], int]:
        """One pass over ``train``: per embedding of :meth:`embeddings`, the ``(B*h*w, D)``
        float32 patch chunks of every batch (on CPU, row-major per image); the input size;
        the patches per image (``h*w``)."""
        chunks: list[list[torch.Tensor]] = []
        size: tuple[int, int] | None = None
        grid = 0
        for batch in self._fit_batches(train, progress):
            images = self.check_images(batch, size=size)
            size = size or tuple(images.shape[-2:])
            embs = self.embeddings(images)
            grid = embs[0].shape[-2] * embs[0].shape[-1]
            with self.timed("aggregate"):
                chunks = chunks or [[] for _ in embs]
                for out, emb in zip(chunks, embs):
                    out.append(to_patches(emb).cpu().contiguous())
            del embs
        if size is None:
            raise InputError(f"{self.name}.fit() got no images: pass batches of normal images")
        return chunks, size, grid

    def coreset_bank(self, chunks: Sequence[torch.Tensor]) -> torch.Tensor:
        """The memory bank of patch ``chunks``: a greedy coreset of ``coreset_ratio`` of them."""
        total = sum(c.shape[0] for c in chunks)
        keep = max(1, int(total * self.coreset_ratio))  # official: int(N * r)
        if keep >= total:
            return torch.cat(list(chunks))
        index = greedy_coreset(chunks, keep, project_dim=self.projection_dim,
                               seed=self.seed, start=self.coreset_start)
        return gather_rows(chunks, index)

    def fit(self, train: Train, progress: Progress | None = None) -> PatchCore:
        """Embed every training patch (one pass), keep a greedy coreset of ``coreset_ratio``."""
        with torch.inference_mode():
            with self.timed("extract"):  # backbone + aggregate, one pass over train
                (chunks,), size, _ = self.extract_patches(train, progress)
            (progress or Progress()).stage("coreset", 1)
            with self.timed("coreset"):
                bank = self.coreset_bank(chunks)
            del chunks  # the only full copy
            self.memory_bank_ = bank.to(self.device)
            self.input_size_ = torch.tensor(size, dtype=torch.long, device=self.device)
            self._nn = None
        return self

    def state_summary(self) -> StateSummary:
        base = super().state_summary()
        return StateSummary(base.buffers, base.parameters, list(self.memory_bank_.shape))

    def timing_probes(self) -> dict[str, Callable[[torch.Tensor], object]]:
        """``backbone``, and ``backbone+search``: the forward of the images plus one exact
        search of a fixed image's patches (the first images the probe saw): what a batch-1
        predict cannot be faster than."""
        fixed: list[torch.Tensor] = []

        def forward_and_search(images: torch.Tensor) -> None:
            with torch.inference_mode():
                if not fixed:
                    fixed.append(to_patches(self.embed(images[:1])))
                self.features(images)
                self.searcher().search(fixed[0])

        return {**super().timing_probes(), "backbone+search": forward_and_search}

    def searcher(self) -> NearestNeighbors:
        """The exact 1-NN index over the memory bank (built once, after fit or load)."""
        if self._nn is None:
            self._nn = NearestNeighbors(self.memory_bank_)
        return self._nn

    def patch_scores(
        self, patches: torch.Tensor, b: int, searcher: NearestNeighbors
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch scores ``(b, h*w)`` of ``(b*h*w, D)`` patches (distance to the nearest bank
        vector, PatchCore eq. 6) and the nearest vectors' indices ``(b*h*w, 1)``."""
        dist, nearest = searcher.search(patches, k=1)
        return dist[:, 0].view(b, -1).to(self.device), nearest

    def predict(self, images: torch.Tensor) -> Prediction:
        """Image scores (max patch distance, or eq. 7 reweighted) and sigma-4 anomaly maps."""
        size = tuple(self.input_size_.tolist())
        images = self.check_images(images, size=size)
        with torch.inference_mode():
            emb = self.embed(images)
            b, _, h, w = emb.shape
            with self.timed("search"):
                patches = to_patches(emb)
                patch_scores, nearest = self.patch_scores(patches, b, self.searcher())
                scores, where = patch_scores.max(dim=1)
                if self.reweight:
                    scores = self._reweight(scores, where, patches, nearest[:, 0].view(b, h * w))
            with self.timed("map"):
                maps = self._anomaly_map(patch_scores.view(b, h, w), size)
        return Prediction(scores=scores.cpu(), maps=maps.cpu())

    def _reweight(
        self, scores: torch.Tensor, where: torch.Tensor, patches: torch.Tensor, nearest: torch.Tensor
    ) -> torch.Tensor:
        """PatchCore eq. 7: s = (1 - exp(s*) / sum_{m in N_b(m*)} exp(|m_test - m|)) * s*, with
        N_b(m*) the ``num_neighbors`` bank vectors nearest to m* (m* itself included)."""
        b = scores.shape[0]
        hw = nearest.shape[1]
        m_test = patches.view(b, hw, -1)[torch.arange(b), where]  # (B, D) most anomalous patch
        m_star = self.memory_bank_[nearest[torch.arange(b), where]]  # (B, D) its nearest
        _, support = self.searcher().search(m_star, k=self.num_neighbors)
        dists = torch.linalg.vector_norm(
            m_test.unsqueeze(1) - self.memory_bank_[support.to(self.device)], dim=2
        )  # (B, b)
        weight = 1 - torch.exp(scores - torch.logsumexp(dists, dim=1))
        return weight * scores
