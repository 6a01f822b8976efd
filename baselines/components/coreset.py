"""Greedy k-center coreset (PatchCore paper sec. 3.2, Alg. 1; the official code's kCenterGreedy).

The memory bank keeps the ``n`` patch vectors chosen by Gonzalez' greedy k-center: start from
one index (0, as the official code, whose ``argmax`` over no distances returns 0), then
repeatedly add the point farthest from every chosen centre. Distances are taken on a seeded
Gaussian random projection (128 dims by default; Johnson-Lindenstrauss keeps them close). The
official code projects with scikit-learn's ``SparseRandomProjection(eps=0.9)`` (about 300 dims
for CAD-SD): another random projection with the same purpose.

Speed without approximation. The plain loop reads all N points at every step (memory-bound:
75 s for CAD-SD here). Each step only needs the farthest point, and distances to the chosen set
only shrink, so a stale distance is an upper bound. The loop keeps exact distances for a small
"front" of the T points with the largest bounds; everything outside the front is known to be at
most ``tau``. While the front's maximum exceeds ``tau`` it is the true farthest point; otherwise
the front is rebuilt, bringing only the points with the largest bounds up to date, in one matrix
product against the centres they have not seen yet. A step then touches T points instead of N,
and the catching-up runs as compute-bound matrix products (on CAD-SD's 313,600 real patch
vectors: about 40% of the plain loop's arithmetic, ~4 s on one core instead of 75 s). The
selection is the plain greedy's, up to float rounding of near-equal distances (distances use
|x|^2 + |c|^2 - 2 x.c on centred data). Memory is O(N); nothing is N x N.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_BLOCK = 1 << 16  # rows per projection block: bounds float32 temporaries
_ROWS = 2048  # rows per refresh product
_SLACK = 1e-5  # relative margin on tau: rounding in the product can never hide a farther point


def random_projection(dim_in: int, dim_out: int, seed: int = 0) -> torch.Tensor:
    """Gaussian projection matrix ``(dim_in, dim_out)`` with entries N(0, 1/dim_out), seeded."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(dim_in, dim_out, generator=gen) / dim_out**0.5


def project(
    chunks: Sequence[torch.Tensor] | torch.Tensor,
    dim: int | None = 128,
    seed: int = 0,
) -> torch.Tensor:
    """Stack ``(n_i, D)`` chunks into one ``(N, dim)`` float32 projected bank.

    ``dim=None`` (or ``dim >= D``) keeps the features unprojected. Chunks are projected one at a
    time so the float32 features are never copied as a whole.
    """
    if isinstance(chunks, torch.Tensor):
        chunks = [chunks]
    d_in = chunks[0].shape[1]
    matrix = None if dim is None or dim >= d_in else random_projection(d_in, dim, seed)
    out_dim = d_in if matrix is None else dim
    total = sum(c.shape[0] for c in chunks)
    out = torch.empty(total, out_dim)
    row = 0
    for chunk in chunks:
        x = chunk.float()
        for lo in range(0, x.shape[0], _BLOCK):
            block = x[lo : lo + _BLOCK]
            block = block if matrix is None else block @ matrix.to(block.device)
            out[row + lo : row + lo + block.shape[0]] = block.cpu()
        row += x.shape[0]
    return out


def _sq_dist(points: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance of each row of ``points`` to ``center`` (direct, float32)."""
    diff = points - center
    return diff.mul_(diff).sum(-1)


class _Greedy:
    """State of one greedy run on centred float32 points ``x (N, d)``."""

    def __init__(self, x: torch.Tensor, n: int, front: int, factor: int) -> None:
        # One (N, d + 1) copy, [x, |x|^2]. A point's row form is it with the last entry set to
        # 1, a centre's is it times [-2, ..., -2, 1]: [x, 1] . [-2c, |c|^2] = |x - c|^2 - |x|^2,
        # so one product ranks the centres for each point.
        self.rows = torch.cat([x, x.pow(2).sum(1, keepdim=True)], dim=1)
        self.sq = self.rows[:, -1]  # (N,) |x|^2
        self.scale = torch.full((x.shape[1] + 1,), -2.0)
        self.scale[-1] = 1.0
        self.chosen: list[int] = []  # selected indices, in order
        self.centers_aug = torch.empty(n, x.shape[1] + 1)  # centre forms of chosen[:stored]
        self.stored = 0
        self.bound = torch.full((x.shape[0],), float("inf"))  # >= squared distance to the set
        self.seen = torch.zeros(x.shape[0], dtype=torch.long)  # bound covers chosen[:seen]
        self.front_size = min(front, x.shape[0])
        self.factor = factor

    def points(self, index: torch.Tensor) -> torch.Tensor:
        """Row forms ``[x, 1]`` of the points ``index``."""
        out = self.rows.index_select(0, index)
        out[:, -1] = 1.0
        return out

    def center(self, i: int) -> torch.Tensor:
        """Centre form ``[-2c, |c|^2]`` of point ``i``."""
        return self.rows[i].mul(self.scale)

    def update(self, rows: torch.Tensor, k: int) -> None:
        """Bring ``bound[rows]`` up to date with the first ``k`` centres."""
        if self.stored < k:  # centre forms of the centres chosen since the last update
            new = torch.tensor(self.chosen[self.stored : k])
            self.centers_aug[self.stored : k] = self.rows.index_select(0, new).mul_(self.scale)
            self.stored = k
        rows = rows[torch.argsort(self.seen[rows], stable=True)]  # similar staleness together
        for lo in range(0, rows.numel(), _ROWS):
            r = rows[lo : lo + _ROWS]
            first = int(self.seen[r[0]])
            if first >= k:
                continue
            if k - first == 1:  # one centre: the direct formula, exact
                c = self.chosen[first]
                d2 = _sq_dist(self.rows.index_select(0, r)[:, :-1], self.rows[c, :-1])
            else:  # one GEMM against all unseen centres
                d2 = (self.points(r) @ self.centers_aug[first:k].T).amin(1).add_(self.sq[r])
            self.bound[r] = torch.minimum(self.bound[r], d2.clamp_(min=0))
            self.seen[r] = k

    def rebuild(self, k: int) -> tuple[torch.Tensor, float]:
        """New front (indices, ascending) after ``k`` centres, and ``tau``, the bound of the rest."""
        num, size = self.rows.shape[0], self.front_size
        count = min(num, self.factor * size)
        while True:
            vals, cand = self.bound.topk(count)
            theta = float(vals[-1]) if count < num else float("-inf")  # bound of non-candidates
            self.update(cand, k)
            top, order = self.bound[cand].topk(min(size + 1, count))
            if float(top[0]) >= theta or count == num:
                break
            count = min(num, count * 4)  # the candidates all fell below theta: widen the search
        tau = max(theta, float(top[size]) if top.numel() > size else float("-inf"))
        front = cand[order[:size]]  # descending: front[0] is the farthest point
        # Any other point at or below tau cannot be the farthest before the next rebuild: keep
        # it out of the front, which then holds tens to hundreds of points instead of ``size``.
        keep = self.bound[front] > tau
        keep[0] = True
        return front[keep].sort().values, tau


def kcenter_greedy(
    points: torch.Tensor, n: int, start: int = 0, *, front: int = 4096, factor: int = 4
) -> torch.Tensor:
    """Indices ``(n,)`` of the greedy k-center selection on ``points (N, d)`` from ``start``:
    each step adds the point whose distance to its nearest chosen centre is largest.

    ``front`` bounds the number of points tracked exactly at every step (``front >= N`` gives
    the plain loop); ``factor * front`` points are brought up to date when it is rebuilt.
    """
    num = points.shape[0]
    if not 0 < n <= num:
        raise ValueError(f"cannot select {n} of {num} points")
    if not 0 <= start < num:
        raise ValueError(f"start index {start} out of range for {num} points")
    x = points.float()
    x = x - x[:: max(1, num // 65536)].mean(0)  # centring: distances unchanged, less rounding
    state = _Greedy(x, n, front, factor)
    del x
    new = start
    # The front: its indices (a list: one step reads one), [x, 1] rows, |x|^2, exact distances.
    # A step is a handful of small ops on it, written to reuse buffers.
    front_idx, front_list = torch.empty(0, dtype=torch.long), []
    front_x = front_sq = front_d = scratch = torch.empty(0)
    tau = float("inf")
    for k in range(n):
        state.chosen.append(new)
        if k:  # keep the front exact for every centre so far
            torch.addmv(front_sq, front_x, state.center(new), out=scratch)
            torch.minimum(front_d, scratch, out=front_d)
        if k == n - 1:
            break
        if k:
            farthest, where = front_d.max(0)  # the first of equal maxima, as argmax
        if k == 0 or float(farthest) <= tau * (1 + _SLACK):
            if front_list:  # hand the front's exact distances back to the bounds
                state.bound[front_idx] = front_d
                state.seen[front_idx] = k + 1
            front_idx, tau = state.rebuild(k + 1)
            front_list = front_idx.tolist()
            front_x, front_sq = state.points(front_idx), state.sq[front_idx]
            front_d, scratch = state.bound[front_idx], torch.empty(front_idx.numel())
            farthest, where = front_d.max(0)
        new = front_list[int(where)]
    return torch.tensor(state.chosen, dtype=torch.long)


def greedy_coreset(
    chunks: Sequence[torch.Tensor] | torch.Tensor,
    n: int,
    *,
    project_dim: int | None = 128,
    seed: int = 0,
    start: int = 0,
) -> torch.Tensor:
    """Indices (into the concatenated chunks) of an ``n``-point greedy coreset (PatchCore Alg. 1)."""
    return kcenter_greedy(project(chunks, project_dim, seed), n, start)


def gather_rows(chunks: Sequence[torch.Tensor] | torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` of the concatenation of ``chunks``, without concatenating them."""
    if isinstance(chunks, torch.Tensor):
        return chunks[index]
    sizes = torch.tensor([c.shape[0] for c in chunks])
    offsets = torch.cumsum(sizes, 0) - sizes
    which = torch.searchsorted(torch.cumsum(sizes, 0), index, right=True)
    out = torch.empty(index.numel(), chunks[0].shape[1], dtype=chunks[0].dtype)
    for i, chunk_id in enumerate(which.tolist()):
        out[i] = chunks[chunk_id][index[i] - offsets[chunk_id]]
    return out
