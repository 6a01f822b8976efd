"""One multivariate Gaussian per patch position, fitted in one streaming pass (PaDiM sec. 3.2).

PaDiM models the embeddings ``x`` of one position over the N training images with
``N(mu, Sigma)``, ``Sigma = cov + eps I`` (unbiased covariance, as ``np.cov``), and scores a test
patch by its Mahalanobis distance (eq. 2). For WideResNet50-2 that is 3,136 positions x 550 dims:
full covariances are 3.8 GB in float32, and the reference code first stacks every embedding (9 GB).
Here the training images stream through once and only one packed float32 buffer is big:

* Matrices are stored *block lower triangular* (:class:`BlockTriangle`): row block ``i`` keeps
  only columns ``[0, end_i)``. A covariance is symmetric and the scoring factor is lower
  triangular, so nothing is lost, and with ~64-row blocks it is 56% of a full matrix (2.1 GB).
* Images are staged in blocks of ``block`` images; each block's outer products are formed in
  float64 (one GEMM per row block) for a chunk of positions, rounded once and added to the float32
  sum. Before squaring, the data are shifted by the first block's mean, so the final
  ``sum (x-c)(x-c)^T - n m m^T`` does not cancel catastrophically (features have means large
  against their spread).
* At the end, per chunk of positions: covariance and Cholesky factor ``L`` in float64, then the
  buffer is overwritten with ``W = L^-1`` (float32, same packing), so the squared distance is
  ``||W (x - mu)||^2``: one GEMM per row block, reading the factor once. Batched LU (``inv`` /
  ``solve``) fails on some CPU builds for d >= 192; Cholesky is the tool for an SPD matrix anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from baselines.errors import InputError

BLOCK_ROWS = 64  # rows per block of the packed triangle: fewer GEMM calls vs less wasted storage
CHUNK_BYTES = 64 * 2**20  # float64 working set per chunk of positions


@dataclass(frozen=True)
class BlockTriangle:
    """Packing of ``(d, d)`` lower (block-)triangular matrices into ``size`` floats: row block
    ``[r0, r1)`` keeps columns ``[0, r1)``, stored row-major at ``offset``."""

    edges: tuple[int, ...]  # row-block boundaries, 0 ... d

    @classmethod
    def for_dim(cls, dim: int) -> BlockTriangle:
        k = max(1, dim // BLOCK_ROWS)
        return cls(tuple(round(i * dim / k) for i in range(k + 1)))

    @property
    def dim(self) -> int:
        return self.edges[-1]

    @property
    def rows(self) -> list[tuple[int, int, int]]:
        """``(r0, r1, offset)`` of each row block."""
        out, offset = [], 0
        for r0, r1 in zip(self.edges[:-1], self.edges[1:]):
            out.append((r0, r1, offset))
            offset += (r1 - r0) * r1
        return out

    @property
    def size(self) -> int:
        return sum((r1 - r0) * r1 for r0, r1, _ in self.rows)

    def block(self, packed: torch.Tensor, r0: int, r1: int, offset: int) -> torch.Tensor:
        """View ``(c, r1 - r0, r1)`` of one row block of ``packed`` ``(c, size)``."""
        return packed[:, offset : offset + (r1 - r0) * r1].view(-1, r1 - r0, r1)

    def pack(self, full: torch.Tensor, out: torch.Tensor) -> None:
        """Write the lower blocks of ``full`` ``(c, d, d)`` into ``out`` ``(c, size)``."""
        for r0, r1, off in self.rows:
            self.block(out, r0, r1, off).copy_(full[:, r0:r1, :r1])

    def unpack(self, packed: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The full ``(c, d, d)`` matrices with ``packed``'s lower blocks (zeros above them)."""
        d = self.dim
        packed = packed.to(dtype or packed.dtype)  # convert contiguous first: strided casts are slow
        full = torch.zeros(packed.shape[0], d, d, dtype=packed.dtype, device=packed.device)
        for r0, r1, off in self.rows:
            full[:, r0:r1, :r1] = self.block(packed, r0, r1, off)
        return full

    def unpack_symmetric(self, packed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The full symmetric ``(c, d, d)`` matrices whose lower triangles ``packed`` holds."""
        full = self.unpack(packed, dtype)  # diagonal blocks are stored whole (both triangles)
        for r0, r1, _ in self.rows[:-1]:  # mirror the blocks below into the zeros above
            full[:, r0:r1, r1:] = full[:, r1:, r0:r1].transpose(1, 2)
        return full


def _chunks(total: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, total)) for start in range(0, total, size)]


class GaussianAccumulator:
    """Streaming per-position mean and covariance of float32 embeddings ``(B, d, P)``.

    ``add`` every batch, then ``finalize(eps)`` returns ``(mean (P, d), W (P, size))``: ``W`` is
    ``chol(cov + eps I)^-1`` packed by :attr:`layout`, so ``W^T W = (cov + eps I)^-1``. ``W`` reuses
    the accumulator's storage, so the accumulator is spent after ``finalize``.
    """

    def __init__(self, positions: int, dim: int, device: torch.device, block: int = 64) -> None:
        self.positions, self.dim, self.block, self.device = positions, dim, block, device
        self.layout = BlockTriangle.for_dim(dim)
        self.count = 0
        self._second = torch.zeros(positions, self.layout.size, device=device)  # sum (x-c)(x-c)^T
        self._first = torch.zeros(positions, dim, dtype=torch.float64, device=device)  # sum (x-c)
        self._shift: torch.Tensor | None = None  # c: (P, d) float64, the first block's mean
        self._stage = torch.empty(positions, block, dim, device=device)  # (P, K, d)
        self._staged = 0
        self._chunk = max(1, CHUNK_BYTES // (8 * dim * (dim + block)))

    def add(self, embeddings: torch.Tensor) -> None:
        """Stage a batch ``(B, d, P)``; every full block of images is folded into the sums."""
        b, d, p = embeddings.shape
        if (d, p) != (self.dim, self.positions):
            raise InputError(
                f"embeddings of shape {(b, d, p)} do not match (B, {self.dim}, {self.positions}):"
                " all training images must have one size"
            )
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
            second = self._second[p0:p1]
            for r0, r1, off in self.layout.rows:
                gram = torch.bmm(x[:, :, r0:r1].transpose(1, 2), x[:, :, :r1])  # (c, r, r1)
                # round each block's float64 sum once (a mixed-dtype in-place add is ~5x slower)
                self.layout.block(second, r0, r1, off).add_(gram.float())
        self.count += k
        self._staged = 0

    def finalize(self, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(P, d)`` and packed whitening factor ``W = chol(cov + eps I)^-1`` ``(P, size)``."""
        self._flush()
        self._stage = torch.empty(0, device=self.device)  # free the staging block first
        n = self.count
        if n < 2:
            raise InputError(
                f"PaDiM needs at least 2 training images to estimate a covariance, got {n}"
            )
        assert self._shift is not None
        centred_mean = self._first / n  # (P, d): mean of x - c
        eye = torch.eye(self.dim, dtype=torch.float64, device=self.device)
        packed = self._second  # overwritten in place with W
        # about 6 float64 (c, d, d) temporaries live at once below
        for p0, p1 in _chunks(self.positions, max(1, CHUNK_BYTES // (2 * 8 * self.dim**2))):
            m = centred_mean[p0:p1]
            cov = self.layout.unpack_symmetric(packed[p0:p1], torch.float64)
            cov.sub_(n * m[:, :, None] * m[:, None, :]).div_(n - 1).add_(eps * eye)
            chol, info = torch.linalg.cholesky_ex(cov)
            if int(info.max()) > 0:
                raise InputError(
                    f"a covariance is not positive definite (eps={eps}); use a larger eps "
                    "(PaDiM's default is 0.01)"
                )
            inverse = torch.linalg.solve_triangular(chol, eye.expand_as(chol), upper=False)
            self.layout.pack(inverse, packed[p0:p1])
        mean = (self._shift + centred_mean).float()
        self._second = torch.empty(0, device=self.device)
        return mean, packed


def mahalanobis(
    embeddings: torch.Tensor, mean: torch.Tensor, factor: torch.Tensor, layout: BlockTriangle
) -> torch.Tensor:
    """Mahalanobis distance of ``(B, d, P)`` embeddings per position: ``(B, P)`` (PaDiM eq. 2).

    ``factor`` is the packed ``W`` of :meth:`GaussianAccumulator.finalize`; ``d = ||W (x - mu)||``,
    summed over row blocks so each block is one GEMM. Positions go in chunks so the temporaries
    stay small for any batch size.
    """
    b, d, p = embeddings.shape
    out = torch.empty(b, p, dtype=torch.float32, device=embeddings.device)
    chunk = max(1, CHUNK_BYTES // (4 * d * max(b, 1) * 2))
    for p0, p1 in _chunks(p, chunk):
        # contiguous (c, d, B): bmm on the permuted view is an order of magnitude slower
        diff = (embeddings[:, :, p0:p1].permute(2, 1, 0) - mean[p0:p1, :, None]).contiguous()
        total = torch.zeros(p1 - p0, b, dtype=torch.float32, device=embeddings.device)
        for r0, r1, off in layout.rows:
            z = torch.bmm(layout.block(factor[p0:p1], r0, r1, off), diff[:, :r1])  # (c, r, B)
            total += z.square().sum(1)
        out[:, p0:p1] = total.sqrt().T
    return out
