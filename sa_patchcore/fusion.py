"""Score fusion for :class:`sa_patchcore.dual.DualPatchCore` (this project's method, not from a
paper): fold assignment of the training images, the held-out statistics each branch is
standardised with, and the fusion rule. Pure functions, so the tests pin them by brute force.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

FUSIONS = ("max", "mean")
CALIBRATIONS = ("quantile", "zscore")


def fold_of(n: int, folds: int, seed: int) -> torch.Tensor:
    """``(n,)`` fold of each training image: a seeded permutation dealt round-robin, so fold
    sizes differ by at most one and the split does not follow file order."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    out = torch.empty(n, dtype=torch.long)
    out[perm] = torch.arange(n) % folds
    return out


#: ``folds="auto"``: the calibration budget, in (images per fold bank)^2 x folds: what two
#: folds of 400 images (CAD-SD's training set) cost
AUTO_FOLDS_BUDGET = 2 * 200**2


def auto_folds(n: int) -> int:
    """``folds="auto"`` for ``n`` training images: as many folds as the budget of two folds at
    400 images allows, between 2 and ``n`` (leave-one-out). Greedy k-center on a fold's
    ``n (1 - 1/f)`` images costs about its square (the coreset is 1% of its patches), so ``f``
    folds cost ``f (n (1 - 1/f))^2``. Why more folds for fewer images: held-out scores come from
    models fitted on ``1 - 1/f`` of the images and overstate the final model's distances, more
    so the smaller the set. 300 images or more give 2 folds; 200: 3; 100: 9; 60: 24; 50: 33;
    40 or fewer: leave-one-out."""
    if n < 2:
        return 2
    best = 2
    for f in range(3, n + 1):
        if f * (n * (1 - 1 / f)) ** 2 > AUTO_FOLDS_BUDGET:
            break
        best = f
    return best


def held_out_stats(scores: torch.Tensor, calibration: str = "quantile", q: float = 0.95,
                   tail_weight: float = 0.0) -> torch.Tensor:
    """``(branches, n)`` held-out image scores -> ``(branches, 2)`` location and scale per
    branch, so a score calibrates to ``(score - location) / scale``:

    * ``quantile``: location 0, scale the ``q`` quantile (linear interpolation): scale only,
      since a nearest-neighbour distance has a natural zero, and 1.0 means "as far as the
      ``q`` quantile of held-out normal images" in every branch;
    * ``zscore``: the mean and the (unbiased) standard deviation.

    ``tail_weight`` (``quantile`` only; 0 = off) multiplies each branch's scale by
    :func:`tail_factors`, so a branch whose held-out upper tail is short next to its lower
    one is down-weighted in the max.

    The scale is floored at 1e-6 of the location's size (or 1e-12), so a branch whose
    held-out scores are all equal cannot divide by zero."""
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {calibration!r}")
    if calibration == "quantile":
        scale = torch.quantile(scores, q, dim=1)
        if tail_weight:
            scale = scale * tail_factors(scores, q, tail_weight)
        loc = torch.zeros_like(scale)
    else:
        loc = scores.mean(1)
        scale = scores.std(1) if scores.shape[1] > 1 else torch.zeros_like(loc)
    floor = (1e-6 * torch.maximum(loc.abs(), scale.abs())).clamp_min(1e-12)
    return torch.stack([loc, torch.maximum(scale, floor)], dim=1)


def tail_factors(scores: torch.Tensor, q: float = 0.95, gamma: float = 0.04) -> torch.Tensor:
    """``(branches, n)`` held-out image scores -> ``(branches,)`` scale factors
    ``exp(-gamma * (log T_b - mean_b log T_b))`` with the tail/bulk ratio
    ``T_b = (Q_b(q) - Q_b(0.5)) / (Q_b(0.5) - Q_b(1 - q))`` (quantiles of branch ``b``).

    Why (dev seeds 101, 404, 505): a branch whose normal image scores are near-symmetric
    (``T`` near 1, e.g. EfficientNet-Lite2's attention branch) behaves like noise on local
    defects, while a right-skewed branch's tail holds the genuinely unusual images. The
    factors' geometric mean is 1 (only the branches' balance moves). Quantile differences
    are floored at 1e-12, so constant scores give factor 1."""
    lo, mid, hi = (torch.quantile(scores, p, dim=1) for p in (1 - q, 0.5, q))
    log_t = (hi - mid).clamp_min(1e-12).log() - (mid - lo).clamp_min(1e-12).log()
    return torch.exp(-gamma * (log_t - log_t.mean()))


def fuse(values: Sequence[torch.Tensor], stats: torch.Tensor | None, rule: str = "max"
         ) -> torch.Tensor:
    """Branch ``values`` (image scores ``(B,)`` or maps ``(B, H, W)``, one per branch) ->
    ``rule`` over branches of ``(value - loc_b) / scale_b`` with ``stats`` ``(branches, 2)``;
    ``stats=None`` fuses the raw values (the uncalibrated ablation)."""
    if rule not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {rule!r}")
    if stats is not None:
        values = [(v - stats[i, 0]) / stats[i, 1] for i, v in enumerate(values)]
    stacked = torch.stack(list(values))
    return stacked.amax(0) if rule == "max" else stacked.mean(0)


GLOBAL_SCORES = ("gaussian", "max")


def image_means(chunks: Sequence[torch.Tensor], grid: int) -> torch.Tensor:
    """Patch ``chunks`` (``(B*grid, D)`` row-major per image, as ``fit`` extracts them) ->
    ``(N, D)`` per-image mean embeddings (float64: the Gaussian is fitted in double)."""
    return torch.cat([c.double().view(-1, grid, c.shape[1]).mean(1) for c in chunks])


def gaussian_fit(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, D)`` image descriptors -> mean ``(D,)`` and whitening factor ``W = L^-1``
    ``(D, D)`` (lower triangular, ``L L^T = C``), so ``||W (v - mean)||`` is the Mahalanobis
    distance of ``v`` under the Ledoit-Wolf shrunk covariance ``C`` (scikit-learn's
    ``LedoitWolf``: well-conditioned for ``n`` below ``D``, e.g. WideResNet50's 1536 dims and
    60 images). ``C`` gets ``1e-6`` of its mean variance (at least 1e-12) on the diagonal, so
    a constant or one-image input still factorises. Float32 results."""
    from sklearn.covariance import LedoitWolf

    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"gaussian_fit needs (n >= 1, D) descriptors, got {tuple(x.shape)}")
    lw = LedoitWolf().fit(x.double().numpy())
    cov = torch.from_numpy(lw.covariance_)
    eye = torch.eye(cov.shape[0], dtype=torch.float64)
    floor = max(1e-6 * float(cov.diagonal().mean()), 1e-12)
    chol = torch.linalg.cholesky(cov + floor * eye)
    whiten = torch.linalg.solve_triangular(chol, eye, upper=False)
    return torch.from_numpy(lw.location_).float(), whiten.float()


def gaussian_scores(patches: torch.Tensor, mean: torch.Tensor, whiten: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, P, D)`` patch embeddings of ``B`` images -> their image scores ``(B,)``, the
    Mahalanobis distance ``||z||`` of the mean embedding ``m`` (``z = W (m - mean)``), and each
    patch's share ``(B, P)``: ``s_p = (e_p - mean)^T W^T z / ||z||``, its deviation from the
    normal mean projected on the image's whitened anomaly direction. The shares' mean over the
    patches is exactly ``||z||`` (the score is the map's mean); ``z = 0`` gives zero shares."""
    patches = patches.to(whiten.dtype)
    z = (patches.mean(1) - mean) @ whiten.T
    norm = z.norm(dim=1)
    direction = (z / norm.clamp_min(1e-30)[:, None]) @ whiten  # rows: W^T z / ||z||
    return norm, torch.einsum("bpd,bd->bp", patches - mean, direction)
