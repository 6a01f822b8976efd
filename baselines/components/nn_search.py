"""Exact L2 nearest-neighbour search against a memory bank.

:class:`NearestNeighbors` (PatchCore paper eq. 6): on CPU faiss' brute-force ``knn`` (exact,
BLAS-backed, no copy of the bank), on a GPU tensor a chunked ``||q||^2 - 2 q.m + ||m||^2`` matmul
in float32 (faiss-cpu cannot search CUDA memory). faiss returns SQUARED distances:
:meth:`NearestNeighbors.search` returns the L2 distances themselves, as the official code's
``torch.cdist``.

:class:`ExactNearest` (Patch SVDD's 1-NN): exact up to ties even for near-duplicate vectors.
The expanded form above, in float32, is off by up to ``gamma (|q| + |b|)^2`` (Higham, *Accuracy
and Stability of Numerical Algorithms*, eq. 3.5: ``gamma_n = n u / (1 - n u)``), which is more
than the gap between near-duplicate patches of a trained encoder; faiss uses it for batches of
queries (BLAS). So the ``candidates`` nearest by that form are re-ranked by direct float64
distances ``|q - b|``. A query is *certified* when its last candidate's expanded distance exceeds
the best direct one by more than the bound (no vector outside the candidates can then be
nearer); the others get a range pass: every bank vector within the bound of the best direct
distance, re-ranked directly.
"""

from __future__ import annotations

import torch

_QUERY_BLOCK = 1 << 14  # query rows per faiss call
_BLOCK_CELLS = 1 << 27  # distance-matrix cells per torch block (512 MB of float32)
_PAIR_BLOCK = 1 << 20  # (query, bank row) pairs re-ranked at once in the range pass
CANDIDATES = 16  # candidates re-ranked per query
#: queries from which faiss computes distances with one BLAS product (faiss's long-standing
#: default; faiss 1.15 ships 128000, which sends a 784-patch image down its per-pair path:
#: measured here at 1 thread, 784 x 3136 x 128-d, 36 ms instead of 7.5 ms, same neighbours)
_BLAS_FROM = 20


class NearestNeighbors:
    """Exact k-NN over a fixed bank ``(M, D)``; build once, search many times."""

    def __init__(self, bank: torch.Tensor, backend: str = "auto") -> None:
        """``backend``: ``faiss`` (CPU), ``torch`` (any device) or ``auto`` (faiss on CPU)."""
        self.bank = bank.detach().float().contiguous()
        if backend == "auto":
            backend = "faiss" if self.bank.device.type == "cpu" else "torch"
        self.backend = backend
        if backend == "torch":
            self._bank_sq = self.bank.pow(2).sum(1)

    def __len__(self) -> int:
        return self.bank.shape[0]

    def search(self, queries: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances ``(Q, k)`` (L2, ascending) and bank indices ``(Q, k)`` of the ``k`` nearest
        bank vectors of each query row."""
        sq, idx = self.squared(queries, k)
        return sq.clamp_(min=0).sqrt_(), idx

    def squared(self, queries: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` smallest squared distances ``(Q, k)`` as computed (float32, expanded form
        for batches: may be slightly negative) and their bank indices ``(Q, k)``."""
        k = min(k, len(self))
        queries = queries.detach().float().contiguous()
        if self.backend == "faiss":
            import faiss

            faiss.omp_set_num_threads(torch.get_num_threads())  # same thread budget as torch
            bank = self.bank.numpy()
            sq = torch.empty(queries.shape[0], k)
            idx = torch.empty(queries.shape[0], k, dtype=torch.long)
            threshold = faiss.cvar.distance_compute_blas_threshold  # process-wide: restored
            faiss.cvar.distance_compute_blas_threshold = _BLAS_FROM
            try:
                for lo in range(0, queries.shape[0], _QUERY_BLOCK):
                    q = queries[lo : lo + _QUERY_BLOCK].cpu().numpy()
                    d, i = faiss.knn(q, bank, k)
                    sq[lo : lo + len(q)] = torch.from_numpy(d)
                    idx[lo : lo + len(q)] = torch.from_numpy(i)
            finally:
                faiss.cvar.distance_compute_blas_threshold = threshold
            return sq, idx
        out_d, out_i = [], []
        rows = max(1, min(_QUERY_BLOCK, _BLOCK_CELLS // max(1, len(self))))
        for lo in range(0, queries.shape[0], rows):
            q = queries[lo : lo + rows]
            sq = q.pow(2).sum(1, keepdim=True) - 2 * q @ self.bank.T + self._bank_sq
            d, i = sq.topk(k, dim=1, largest=False)
            out_d.append(d)
            out_i.append(i)
        return torch.cat(out_d), torch.cat(out_i)


def rerank(queries: torch.Tensor, bank: torch.Tensor,
           candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The nearest of each query's candidate rows ``(Q, k)`` of ``bank`` (-1 = none) by direct
    float64 distance: distances ``(Q,)`` (inf where a query has no candidate) and indices."""
    out_d, out_i = [], []
    step = max(1, _PAIR_BLOCK // max(1, candidates.shape[1]))
    for lo in range(0, len(queries), step):
        cand = candidates[lo : lo + step].to(bank.device)
        q = queries[lo : lo + step].double()
        sq = (bank[cand.clamp_min(0)].double() - q[:, None]).pow(2).sum(-1)  # (q, k)
        sq = sq.masked_fill(cand < 0, float("inf"))
        best = sq.argmin(1, keepdim=True)  # the first of equal distances: ties kept in order
        out_d.append(sq.gather(1, best)[:, 0].sqrt())
        out_i.append(cand.gather(1, best)[:, 0])
    if not out_d:
        return queries.new_zeros(0, dtype=torch.float64), candidates.new_zeros(0)
    return torch.cat(out_d), torch.cat(out_i)


def expanded_error(dim: int, unit: float) -> float:
    """``gamma`` with ``|computed - |q - b|^2| <= gamma (|q| + |b|)^2`` for the float32 expanded
    form of centred vectors: norms and dot product of ``dim`` terms, two additions and the
    centring of q and b (each about ``2 u``), with margin; ``unit``: the unit roundoff."""
    n = dim + 8
    return n * unit / (1 - n * unit)


def matmul_unit() -> float:
    """Unit roundoff of float32 matmuls: 2^-24, or bfloat16's 2^-8 once torch is allowed to
    trade precision (``set_float32_matmul_precision('high' | 'medium')``: TF32 / bf16)."""
    return 2.0**-24 if torch.get_float32_matmul_precision() == "highest" else 2.0**-8


class ExactNearest:
    """1-NN exact up to ties: float32 candidates, re-ranked and certified in float64."""

    def __init__(self, bank: torch.Tensor, candidates: int = CANDIDATES) -> None:
        """``bank`` ``(M, D)`` is kept by reference (re-ranking reads it); the candidate search
        runs on a copy centred on the bank mean, which keeps the float32 error bound small."""
        self.bank = bank.detach().float()
        self.mean = self.bank.double().mean(0).float()
        self.centred = NearestNeighbors((self.bank - self.mean).contiguous())
        self.candidates = candidates
        self._gamma = expanded_error(bank.shape[1], matmul_unit())
        self.completed = 0  # queries the range pass has settled (for tests and benchmarks)

    def __len__(self) -> int:
        return self.bank.shape[0]

    def centre(self, queries: torch.Tensor) -> torch.Tensor:
        """Queries in the centred frame the candidate search works in."""
        return (queries.detach().to(self.bank.device).float() - self.mean).contiguous()

    def search(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances ``(Q,)`` (float64) and indices ``(Q,)`` of each query's nearest bank row."""
        queries = queries.detach().to(self.bank.device).float()
        qc = self.centre(queries)
        sq, cand = self.centred.squared(qc, self.candidates)
        dist, idx = rerank(queries, self.bank, cand)
        if cand.shape[1] == len(self):
            return dist, idx  # every bank row was a candidate
        # a row b at most dist from q has |b| <= |q| + dist, so its expanded distance is at most
        # dist^2 + gamma (2 |q| + dist)^2 = limit; when the last candidate's is above that, every
        # row as near as the best candidate is among the candidates (certified)
        limit = dist.pow(2) + self._gamma * (2 * qc.double().norm(dim=1) + dist).pow(2)
        open_ = sq[:, -1].double().to(dist.device) <= limit
        if open_.any():
            rows = open_.nonzero()[:, 0]
            d, i = self._range_pass(queries[rows], qc[rows], limit[rows])
            better = d < dist[rows]
            dist[rows[better]], idx[rows[better]] = d[better], i[better]
            self.completed += len(rows)
        return dist, idx

    def _range_pass(self, queries: torch.Tensor, qc: torch.Tensor,
                    limit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The nearest of the rows whose expanded distance is <= ``limit`` (every row that can
        be as near as the best candidate), by direct float64 distance."""
        bank, dev = self.centred.bank, self.bank.device
        best = torch.full((len(queries),), float("inf"), dtype=torch.float64, device=dev)
        arg = torch.zeros(len(queries), dtype=torch.long, device=dev)
        q_sq = qc.pow(2).sum(1, keepdim=True)
        limit = torch.nextafter(limit.float(), torch.tensor(float("inf"), device=dev))[:, None]
        rows = max(1, _BLOCK_CELLS // max(1, len(queries)))
        for lo in range(0, len(bank), rows):
            part = bank[lo : lo + rows]
            sq = q_sq - 2 * qc @ part.T + part.pow(2).sum(1)  # (U, rows) expanded, float32
            qi, bj = (sq <= limit).nonzero(as_tuple=True)  # limit rounded up: no row lost
            for p in range(0, len(qi), _PAIR_BLOCK):
                i, j = qi[p : p + _PAIR_BLOCK], bj[p : p + _PAIR_BLOCK] + lo
                d = (self.bank[j].double() - queries[i].double()).pow(2).sum(1).sqrt()
                low = torch.full_like(best, float("inf")).scatter_reduce(0, i, d, "amin")
                win = torch.full_like(arg, len(self)).scatter_reduce(
                    0, i[d == low[i]], j[d == low[i]], "amin")  # the first row among ties
                take = low < best
                best[take], arg[take] = low[take], win[take]
        return best, arg
