"""One multivariate Gaussian per patch position, fitted in one streaming pass (PaDiM sec. 3.2).

PaDiM models the embeddings ``x_ij`` of position ``(i, j)`` over the N training images with
``N(mu_ij, Sigma_ij)``, ``Sigma_ij = cov + eps I`` (unbiased covariance, as ``np.cov``), and
scores a test patch by its Mahalanobis distance (eq. 2). For WideResNet50-2 that is 3,136
positions x 550 dims: the covariances alone are 3.8 GB in float32, and stacking the embeddings
first (the reference code) costs another 9 GB. Here the training images stream through once:

* outer products are summed per position into ONE float32 ``(P, d, d)`` buffer, which at the end
  of ``fit`` is overwritten, chunk by chunk, with the scoring factor, so it is the only big
  allocation;
* images are staged in blocks (``block`` images) and each block's outer products are formed in
  float64 for a chunk of positions at a time, then added to the float32 sum;
* the data are shifted by the first block's mean before squaring, so ``sum (x-c)(x-c)^T - n m m^T``
  does not cancel catastrophically in float32 (features have means large against their spread).

The stored factor is ``W = L^-1`` with ``L L^T = Sigma`` (Cholesky, float64, then rounded to
float32), so the squared distance is ``||W (x - mu)||^2``: one batched matmul for all positions.
Batched LU (``inv``/``solve``) fails on some CPU builds for d >= 192; Cholesky is the right tool
for a symmetric positive definite matrix anyway.
"""

from __future__ import annotations

import torch

from baselines.errors import InputError

CHUNK_BYTES = 128 * 2**20  # float64 working set per position chunk (fit) / float32 (score)


def _chunks(total: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, total)) for start in range(0, total, size)]


class GaussianAccumulator:
    """Streaming per-position mean and covariance of ``(B, d, P)`` embeddings (float32 input).

    ``add`` as many batches as there are; ``finalize(eps)`` returns ``(mean (P, d), W (P, d, d))``
    with ``W`` lower triangular and ``W^T W = (cov + eps I)^-1``. ``W`` reuses the accumulator's
    storage, so the accumulator cannot be used after ``finalize``.
    """

    def __init__(self, positions: int, dim: int, device: torch.device, block: int = 64) -> None:
        self.positions, self.dim, self.block, self.device = positions, dim, block, device
        self.count = 0
        self._second = torch.zeros(positions, dim, dim, device=device)  # sum (x-c)(x-c)^T, float32
        self._first = torch.zeros(positions, dim, dtype=torch.float64, device=device)  # sum (x-c)
        self._shift: torch.Tensor | None = None  # c: (P, d) float64, first block's mean
        self._stage = torch.empty(positions, block, dim, device=device)  # (P, K, d)
        self._staged = 0
        self._chunk = max(1, CHUNK_BYTES // (8 * dim * (dim + block)))

    def add(self, embeddings: torch.Tensor) -> None:
        """Stage a batch ``(B, d, P)``; full blocks are folded into the sums."""
        b, d, p = embeddings.shape
        if (d, p) != (self.dim, self.positions):
            raise InputError(f"embeddings of shape {(b, d, p)} do not match (B, {self.dim}, "
                             f"{self.positions}): all training images must have one size")
        start = 0
        while start < b:
            take = min(b - start, self.block - self._staged)
            part = embeddings[start : start + take].permute(2, 0, 1)  # (P, take, d)
            self._stage[:, self._staged : self._staged + take].copy_(part)
            self._staged += take
            start += take
            if self._staged == self.block:
                self._flush()

    def _flush(self) -> None:
        k = self._staged
        if k == 0:
            return
        if self._shift is None:
            self._shift = self._stage[:, :k].double().mean(1)  # (P, d)
        for p0, p1 in _chunks(self.positions, self._chunk):
            x = self._stage[p0:p1, :k].double() - self._shift[p0:p1, None]  # (c, k, d)
            self._first[p0:p1] += x.sum(1)
            # round each block's float64 sum once; a mixed-dtype in-place add is ~5x slower
            self._second[p0:p1] += torch.bmm(x.transpose(1, 2), x).float()
        self.count += k
        self._staged = 0

    def finalize(self, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(P, d)`` and whitening factor ``W = chol(cov + eps I)^-1`` ``(P, d, d)``."""
        self._flush()
        self._stage = torch.empty(0, device=self.device)  # free the staging block
        n = self.count
        if n < 2:
            raise InputError(f"PaDiM needs at least 2 training images to estimate a covariance, "
                             f"got {n}")
        assert self._shift is not None
        centred_mean = self._first / n  # (P, d), mean of x - c
        eye = torch.eye(self.dim, dtype=torch.float64, device=self.device)
        factor = self._second  # overwritten in place with W
        for p0, p1 in _chunks(self.positions, self._chunk):
            m = centred_mean[p0:p1]
            cov = (factor[p0:p1].double() - n * m[:, :, None] * m[:, None, :]) / (n - 1)
            cov = 0.5 * (cov + cov.transpose(1, 2)) + eps * eye  # exact symmetry for Cholesky
            chol, info = torch.linalg.cholesky_ex(cov)
            if int(info.max()) > 0:
                raise InputError(
                    f"a covariance is not positive definite (eps={eps}); use a larger eps "
                    "(PaDiM's default is 0.01)"
                )
            factor[p0:p1] = torch.linalg.solve_triangular(chol, eye.expand_as(chol), upper=False)
        mean = (self._shift + centred_mean).float()
        self._second = torch.empty(0, device=self.device)
        return mean, factor


def mahalanobis(embeddings: torch.Tensor, mean: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Mahalanobis distance of ``(B, d, P)`` embeddings per position: ``(B, P)`` (PaDiM eq. 2).

    ``factor`` is ``W`` from :meth:`GaussianAccumulator.finalize`; ``d = ||W (x - mu)||``.
    Positions go in chunks so the temporaries stay small for any batch size.
    """
    b, d, p = embeddings.shape
    out = torch.empty(b, p, dtype=torch.float32, device=embeddings.device)
    chunk = max(1, CHUNK_BYTES // (4 * d * max(b, 1) * 2))
    for p0, p1 in _chunks(p, chunk):
        # contiguous (c, d, B): bmm on the permuted view is an order of magnitude slower
        diff = (embeddings[:, :, p0:p1].permute(2, 1, 0) - mean[p0:p1, :, None]).contiguous()
        z = torch.bmm(factor[p0:p1], diff)  # (c, d, B)
        out[:, p0:p1] = z.square().sum(1).sqrt().T
    return out
