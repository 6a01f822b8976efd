"""Dual PatchCore: PatchCore's local evidence and SA-PatchCore's global (self-attention)
evidence from one backbone pass, fused into one score and one map. This project's own method,
not from a paper (registry origin ``project``); why each choice, what else was tried and the
measured tables: ``sa_patchcore/README.md``.

* Branches: ``local`` = PatchCore's embedding (3x3 avg-pooled layer2 + layer3) and its coreset
  bank; ``global`` = SA-PatchCore's attended embedding. Both from one backbone pass.
* Local score: s_L = max_p min_m ||e_p - m|| (PatchCore); map: the patch distances.
* Global score (``global_score="gaussian"``): s_G = ||z||, z = W (mean_p e_p - mu), with
  (mu, C = (W^T W)^-1) a Ledoit-Wolf Gaussian of the training images' mean embeddings
  (:func:`gaussian_fit`); map: each patch's share s_p = (e_p - mu)^T W^T z / ||z||, whose mean
  over patches is s_G (:func:`gaussian_scores`). ``global_score="max"``: SA-PatchCore's own bank.
* Calibration: the training images are split into ``folds`` seeded folds (``"auto"``:
  :func:`auto_folds`, 2 from 300 images up); each fold is scored by the bank and Gaussian of the
  other folds. Each branch's image scores are divided by the held-out 0.95 quantile
  (``calibration="quantile"``; ``"zscore"``: mean and std), its maps by the held-out map peaks'.
  Features are extracted once; no test image is read by ``fit``.
* Fusion (``fusion="max"``): score = max_b s_b / q_b, map = pixelwise max of the calibrated
  maps (an anomaly needs to stand out in one branch only).
* Study settings (``bench run --suite dual``): ``branches``, ``global_score``, ``calibrate``,
  ``folds``, ``calibration``, ``quantile``, ``fusion``, ``tail_weight``; everything else is
  PatchCore's and SA-PatchCore's. The Gaussian needs at least 2 training images outside each
  fold (:meth:`DualPatchCore.check_data`, checked before a run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch

from baselines.base import Prediction, StateSummary, Train
from baselines.components.aggregate import to_patches
from baselines.components.nn_search import NearestNeighbors
from baselines.errors import DetectorError, InputError
from baselines.patchcore import PatchCore
from baselines.training import Progress
from sa_patchcore.fusion import (
    CALIBRATIONS,
    FUSIONS,
    GLOBAL_SCORES,
    auto_folds,
    fold_of,
    fuse,
    gaussian_fit,
    gaussian_scores,
    held_out_stats,
    image_means,
    tail_factors,
)
from sa_patchcore.model import SAPatchCore

BRANCHES = ("both", "local", "global")


class DualPatchCore(SAPatchCore):
    """PatchCore (local) + SA-PatchCore (global) evidence on one backbone pass: the local
    bank's largest patch distance and the Mahalanobis distance of the mean attended embedding,
    each scaled by held-out training-fold statistics, fused by max (see the module docstring)."""

    name = "sa_patchcore_dual"
    description = ("Dual PatchCore (this project's method, not from a paper): PatchCore's bank "
                   "and SA-PatchCore's attended embedding from one backbone pass (global score: "
                   "Mahalanobis distance of its mean), each scaled by held-out training folds' "
                   "scores, fused by max")
    paper = ""

    def __init__(
        self,
        *,
        branches: Literal["both", "local", "global"] = "both",
        calibrate: bool = True,
        folds: int | Literal["auto"] = "auto",
        calibration: Literal["quantile", "zscore"] = "quantile",
        quantile: float = 0.95,
        tail_weight: float = 0.0,
        fusion: Literal["max", "mean"] = "max",
        global_score: Literal["gaussian", "max"] = "gaussian",
        **sa_patchcore: Any,
    ) -> None:
        self.branches = branches  # read by validate() inside PatchCore.__init__
        self.global_score = global_score
        self.calibrate = calibrate
        self.folds = folds
        self.calibration = calibration
        self.quantile = quantile
        self.tail_weight = tail_weight
        self.fusion = fusion
        super().__init__(**sa_patchcore)
        self.register_buffer("global_bank_", torch.empty(0, 0, device=self.device))
        #: (branch, (location, scale)) of the image scores: rows local, global; identity
        #: until calibrated
        self.register_buffer("calibration_", _identity(self.device))
        #: the same for the maps' peaks (the global row differs with global_score="gaussian":
        #: its map is the patch shares, whose peak is not its image score)
        self.register_buffer("map_calibration_", _identity(self.device))
        #: global_score="gaussian": the training images' mean-embedding Gaussian (mean,
        #: whitening factor); empty otherwise
        self.register_buffer("gaussian_mean_", torch.empty(0, device=self.device))
        self.register_buffer("gaussian_whiten_", torch.empty(0, 0, device=self.device))
        self._nns: list[NearestNeighbors] | None = None

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        super().validate(params)
        if params["branches"] not in BRANCHES or params["fusion"] not in FUSIONS:
            raise DetectorError(f"branches must be one of {BRANCHES} and fusion one of "
                                f"{FUSIONS}; got {params['branches']!r}, {params['fusion']!r}")
        if params["global_score"] not in GLOBAL_SCORES:
            raise DetectorError(f"global_score must be one of {GLOBAL_SCORES}, got "
                                f"{params['global_score']!r}")
        folds = params["folds"]
        if folds != "auto" and (not isinstance(folds, int) or isinstance(folds, bool) or folds < 2):
            raise DetectorError(f"folds must be 'auto' or an integer >= 2, got {folds!r}")
        if params["calibration"] not in CALIBRATIONS or not 0 < params["quantile"] <= 1:
            raise DetectorError(f"calibration must be one of {CALIBRATIONS} and quantile in "
                                f"(0, 1]; got {params['calibration']!r}, {params['quantile']!r}")
        weight = params["tail_weight"]
        if not isinstance(weight, (int, float)) or not 0 <= weight < float("inf") or \
                (weight and params["calibration"] != "quantile"):
            raise DetectorError(f"tail_weight must be a finite number >= 0, and 0 unless "
                                f"calibration='quantile'; got {weight!r}")
        if params["reweight"]:
            raise DetectorError("reweight (PatchCore eq. 7) is not available for "
                                "sa_patchcore_dual: its fused score is not one bank's distance")

    @classmethod
    def check_data(cls, params: Mapping[str, Any], n_images: int) -> None:
        """Calibration needs at least ``folds`` training images, and with the Gaussian global
        score at least 2 images outside each fold (the largest fold holds ceil(n / folds))."""
        super().check_data(params, n_images)
        if not params["calibrate"] or params["branches"] != "both":
            return
        gaussian = params["global_score"] == "gaussian"

        def enough(n: int) -> bool:
            folds = auto_folds(n) if params["folds"] == "auto" else params["folds"]
            return n >= folds and (not gaussian or n - -(-n // folds) >= 2)

        if not enough(n_images):
            least = next(m for m in range(1, 10_000) if enough(m))
            folds = auto_folds(n_images) if params["folds"] == "auto" else params["folds"]
            if n_images < folds:
                why, other = f"calibration needs at least folds={folds} training images", \
                    "calibrate=False"
            else:
                why, other = (f"global_score='gaussian' fits each fold's Gaussian on at least 2 "
                              f"other training images ({folds} folds)"), "global_score='max'"
            raise DetectorError(f"{why}, got {n_images}: pass at least {least} training "
                                f"images, or {other}")

    @property
    def active(self) -> list[int]:
        """The branches in use: 0 = local, 1 = global."""
        return {"both": [0, 1], "local": [0], "global": [1]}[self.branches]

    @property
    def gaussian(self) -> bool:
        """Whether the global branch's image score is its mean embedding's Gaussian distance."""
        return self.global_score == "gaussian" and 1 in self.active

    def banked(self, branch: int) -> bool:
        """Whether ``branch`` (0 = local, 1 = global) scores against a memory bank: every
        branch except the global one with ``global_score="gaussian"``."""
        return not (branch == 1 and self.gaussian)

    @property
    def calibrated(self) -> bool:
        """Calibration only matters when two branches are fused."""
        return self.calibrate and len(self.active) == 2

    def _reset_caches(self) -> None:
        super()._reset_caches()
        self._nns = None

    def embeddings(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The active branches' embeddings ``(B, D, h, w)`` from ONE backbone pass: local with
        PatchCore's hooks, global with SA-PatchCore's."""
        with self.timed("backbone"):
            feats = self.features(images)
        out = []
        with self.timed("aggregate"):
            if 0 in self.active:
                out.append(PatchCore.combine(
                    self, [PatchCore.aggregate(self, i, f) for i, f in enumerate(feats)]))
            if 1 in self.active:
                out.append(self.combine([self.aggregate(i, f) for i, f in enumerate(feats)]))
        return out

    def banks(self) -> list[torch.Tensor]:
        """The active branches' memory banks (the Gaussian global branch has none)."""
        return [(self.memory_bank_, self.global_bank_)[i] for i in self.active if self.banked(i)]

    def searchers(self) -> list[NearestNeighbors]:
        """One exact 1-NN index per active bank (built once, after fit or load)."""
        if self._nns is None:
            self._nns = [NearestNeighbors(bank) for bank in self.banks()]
        return self._nns

    # -- the contract ----------------------------------------------------------------------
    def fit(self, train: Train, progress: Progress | None = None) -> DualPatchCore:
        """Extract every training patch of both branches once; fit the global Gaussian
        (``global_score="gaussian"``); calibrate on held-out folds (when fusing two branches);
        keep the coreset of all training patches of each branch that has a bank."""
        progress = progress or Progress()
        with torch.inference_mode():
            with self.timed("extract"):  # backbone + aggregate, one pass over train
                chunks, size, grid = self.extract_patches(train, progress)
            means = None
            if self.gaussian:
                with self.timed("gaussian"):
                    means = image_means(chunks[self.active.index(1)], grid)
                    self.gaussian_mean_, self.gaussian_whiten_ = (
                        t.to(self.device) for t in gaussian_fit(means))
            with self.timed("calibrate"):
                stats = (self._calibration(chunks, grid, means, progress) if self.calibrated
                         else None)
            with_bank = [(i, c) for i, c in zip(self.active, chunks) if self.banked(i)]
            progress.stage("coreset", len(with_bank))
            full = [self.memory_bank_, self.global_bank_]
            with self.timed("coreset"):
                for i, branch in with_bank:
                    full[i] = self.coreset_bank(branch).to(self.device)
                    progress.advance()
            del chunks, with_bank
            self.memory_bank_, self.global_bank_ = full
            scores, maps = (_identity(self.device), _identity(self.device)) if stats is None \
                else stats
            self.calibration_, self.map_calibration_ = scores.to(self.device), maps.to(self.device)
            self.input_size_ = torch.tensor(size, dtype=torch.long, device=self.device)
            self._reset_caches()
        return self

    def _calibration(self, chunks: Sequence[Sequence[torch.Tensor]], grid: int,
                     means: torch.Tensor | None, progress: Progress
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(2, 2)`` location and scale of each branch's held-out image scores, and the same
        for its maps' peaks (see :func:`held_out_stats`): per fold, a bank (same coreset)
        built from the other folds' patches scores the fold's images (their largest patch
        distance: score and map peak); with ``means`` (the Gaussian global score), the global
        branch's Gaussian is fitted on the other folds' mean embeddings instead, and gives the
        fold's images their Mahalanobis distances and largest patch shares
        (:func:`gaussian_scores`)."""
        per_image = [[c[j * grid:(j + 1) * grid] for c in branch
                      for j in range(c.shape[0] // grid)] for branch in chunks]  # views
        n = len(per_image[0])
        try:
            type(self).check_data(self.get_params(), n)
        except DetectorError as err:
            raise InputError(f"{self.name}: {err}") from None
        folds = auto_folds(n) if self.folds == "auto" else self.folds
        fold = fold_of(n, folds, self.seed)
        held, peaks = torch.empty(2, n), torch.empty(2, n)  # image scores, map peaks
        progress.stage("calibrate", folds * 2)
        for f in range(folds):
            inside = (fold != f).nonzero().flatten().tolist()
            outside = (fold == f).nonzero().flatten()
            for b, images in enumerate(per_image):  # calibrated: both branches, in order
                if not self.banked(b):
                    gaussian = gaussian_fit(means[fold != f])
                    for block in outside.split(_BLOCK):
                        score, share = gaussian_scores(
                            torch.stack([images[i] for i in block.tolist()]), *gaussian)
                        held[b, block], peaks[b, block] = score, share.amax(1)
                else:
                    bank = self.coreset_bank([images[i] for i in inside]).to(self.device)
                    queries = torch.cat([images[i] for i in outside.tolist()])
                    scores, _ = self.patch_scores(queries, len(outside), NearestNeighbors(bank))
                    held[b, outside] = peaks[b, outside] = scores.amax(1).cpu()
                progress.advance()
        args = (self.calibration, self.quantile, self.tail_weight)
        stats = held_out_stats(held, *args)
        map_stats = stats.clone() if means is None else held_out_stats(peaks, *args)
        names = ("local", "global")
        notes: dict[str, Any] = {
            "folds": folds,
            "held_out_scores": dict(zip(names, map(_summary, held))),
            "location_scale": dict(zip(names, stats.tolist()))}
        if means is not None:
            notes["held_out_scores"]["global_map_peak"] = _summary(peaks[1])
            notes["map_location_scale"] = dict(zip(names, map_stats.tolist()))
        if self.tail_weight:
            factors = tail_factors(held, self.quantile, self.tail_weight).tolist()
            notes["tail_factors"] = dict(zip(names, factors))
        self.fit_notes["calibration"] = notes
        return stats, map_stats

    def _prepare_for_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """A model saved before ``global_score`` existed has no map calibration and no
        Gaussian: its global image score was the largest patch distance, so it loads as
        ``global_score="max"`` with its one calibration for both scores and maps."""
        if "calibration_" in tensors and "map_calibration_" not in tensors:
            self.global_score = "max"
            tensors["map_calibration_"] = tensors["calibration_"].clone()
            tensors.setdefault("gaussian_mean_", torch.empty(0))
            tensors.setdefault("gaussian_whiten_", torch.empty(0, 0))
        super()._prepare_for_state(tensors)

    def state_summary(self) -> StateSummary:
        base = super().state_summary()
        banks = self.banks()
        rows = sum(b.shape[0] for b in banks)
        return StateSummary(base.buffers, base.parameters,
                            [rows, banks[0].shape[1]] if banks else None)

    def branch_outputs(self, images: torch.Tensor
                       ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per active branch, the raw image scores ``(B,)`` and maps ``(B, H, W)``: what
        :meth:`predict` fuses. A branch with a bank: the largest patch distance, and the
        upsampled, blurred patch distances. The global branch with ``global_score="gaussian"``:
        the Mahalanobis distance of the image's mean embedding, and the same upsampling and
        blur of each patch's share of it (:func:`gaussian_scores`)."""
        size = tuple(self.input_size_.tolist())
        images = self.check_images(images, size=size)
        embs = self.embeddings(images)
        b, _, h, w = embs[0].shape
        scores, maps = [], []
        searchers = iter(self.searchers())
        for branch, emb in zip(self.active, embs):
            if not self.banked(branch):
                with self.timed("gaussian"):
                    score, grid = gaussian_scores(to_patches(emb).view(b, h * w, -1),
                                                  self.gaussian_mean_, self.gaussian_whiten_)
            else:
                with self.timed("search"):
                    grid, _ = self.patch_scores(to_patches(emb), b, next(searchers))
                    score = grid.amax(1)
            scores.append(score)
            with self.timed("map"):
                maps.append(self._anomaly_map(grid.view(b, h, w), size))
        return scores, maps

    def predict(self, images: torch.Tensor) -> Prediction:
        """Fused image scores and maps: ``fusion`` over branches of ``(x - loc_b) / scale_b``
        (held-out training statistics; the raw values when not calibrated)."""
        with torch.inference_mode():
            scores, maps = self.branch_outputs(images)
            with self.timed("fuse"):
                calibrated = self.calibrated
                score = fuse(scores, self.calibration_[self.active] if calibrated else None,
                             self.fusion)
                fused_map = fuse(maps, self.map_calibration_[self.active] if calibrated else None,
                                 self.fusion)
        return Prediction(scores=score.cpu(), maps=fused_map.cpu())


#: held-out images whose patch shares are computed at once (bounds the temporaries)
_BLOCK = 32


def _identity(device: torch.device) -> torch.Tensor:
    """``(2, 2)`` (location 0, scale 1) per branch: no calibration."""
    return torch.tensor([[0.0, 1.0], [0.0, 1.0]], device=device)


def _summary(scores: torch.Tensor) -> dict[str, float]:
    """Held-out scores of one branch, for the record (``fit_notes``)."""
    q = torch.quantile(scores, torch.tensor([0.5, 0.95]))
    return {"n": scores.numel(), "mean": float(scores.mean()), "std": float(scores.std()),
            "median": float(q[0]), "q95": float(q[1]), "max": float(scores.max())}
