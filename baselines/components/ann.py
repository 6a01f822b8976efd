"""Nearest-neighbour distances to a large bank of embeddings, exact or approximate, accurate
for tiny distances.

Patch SVDD scores each test patch by the L2 distance to its nearest training patch: 67.6 k
vectors at K = 64 (exact search is cheap) and 1.30 M at K = 32, where the official code uses an
approximate graph index (NGT) and recomputes the exact distance to the neighbour it returns.
Here: faiss ``IndexIVFFlat`` on CPU, with ``nprobe`` chosen by *measured* recall against exact
search on calibration queries (a constant would be wrong: barely trained, near-constant
embeddings need many more probes than trained ones), or exact search (faiss Flat on CPU, a
chunked matmul on a GPU) for banks up to ``exact_max`` vectors.

Float32 trap: barely trained embeddings share a large common offset and their true nearest
distances are ~1e-4, below the rounding error of float32 ``|q|^2 + |b|^2 - 2 q.b``. So the bank
mean is subtracted from bank and queries, and the distance to the returned neighbour is
recomputed directly as ``|q - b|``.
"""

from __future__ import annotations

import torch

EXACT_MAX = 1 << 18  # banks up to this many vectors are searched exactly
PROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_QUERY_BLOCK = 1 << 14


class BankSearch:
    """1-NN distances to a fixed ``(M, D)`` bank; build once, search many times."""

    def __init__(self, bank: torch.Tensor, *, approximate: bool | None = None,
                 nlist: int | None = None, nprobe: int | None = None, seed: int = 0) -> None:
        """``approximate``: None = IVF on CPU when the bank has more than ``EXACT_MAX`` vectors.
        ``nprobe``: the probes of an approximate index (None: call :meth:`calibrate`)."""
        self.device = bank.device
        self.mean = bank.double().mean(0).float()
        self.bank = (bank.float() - self.mean).contiguous()
        if approximate is None:
            approximate = self.device.type == "cpu" and len(bank) > EXACT_MAX
        self.approximate = approximate
        self.nprobe = nprobe
        self.recall: float | None = None
        self._index = None
        if self.device.type == "cpu":
            import faiss

            faiss.omp_set_num_threads(torch.get_num_threads())
            d = self.bank.shape[1]
            if approximate:
                nlist = nlist or max(1, round(len(bank) ** 0.5))  # k-means in seconds, not a minute
                quantizer = faiss.IndexFlatL2(d)
                index = faiss.IndexIVFFlat(quantizer, d, nlist)
                index.cp.seed = seed  # k-means seeding: same bank, same index
                index.train(self.bank.numpy())
                index.add(self.bank.numpy())
                index.nprobe = nprobe or 1
            else:
                index = faiss.IndexFlatL2(d)
                index.add(self.bank.numpy())
            self._index = index
        else:
            self._bank_sq = self.bank.pow(2).sum(1)

    def __len__(self) -> int:
        return self.bank.shape[0]

    def _nearest(self, q: torch.Tensor, exact: bool = False) -> torch.Tensor:
        """Indices ``(Q,)`` of the nearest bank vectors of centred queries ``q``."""
        if self._index is None:
            out = []
            for lo in range(0, len(q), _QUERY_BLOCK):
                part = q[lo : lo + _QUERY_BLOCK]
                sq = part.pow(2).sum(1, keepdim=True) - 2 * part @ self.bank.T + self._bank_sq
                out.append(sq.argmin(1))
            return torch.cat(out)
        import faiss

        faiss.omp_set_num_threads(torch.get_num_threads())
        index = self._index
        if exact and self.approximate:
            index = faiss.IndexFlatL2(self.bank.shape[1])
            index.add(self.bank.numpy())
        _, idx = index.search(q.numpy(), 1)
        return torch.from_numpy(idx[:, 0]).long()

    def search(self, queries: torch.Tensor, exact: bool = False) -> torch.Tensor:
        """L2 distances ``(Q,)`` of each query row to its nearest bank vector (as found by
        the index; ``exact`` forces exact search), recomputed directly from the difference."""
        q = (queries.to(self.device).float() - self.mean).contiguous()
        nearest = self._nearest(q, exact).to(self.device)
        nearest = nearest.clamp_min(0)  # faiss returns -1 only when a probe finds nothing
        return (q - self.bank[nearest]).norm(dim=1)

    def calibrate(self, queries: torch.Tensor, min_recall: float = 0.99) -> int:
        """Choose the smallest ``nprobe`` whose 1-NN recall on ``queries`` (vectors like the
        ones to be searched, not in the bank) reaches ``min_recall``; returns it. A found
        neighbour counts as correct when it is as near as the exact one (ties allowed)."""
        if not self.approximate:
            self.recall = 1.0
            return 0
        exact = self.search(queries, exact=True)
        tol = exact * 1e-5 + 1e-7
        for probes in (p for p in PROBES if p <= self._index.nlist):
            self._index.nprobe = probes
            found = self.search(queries)
            self.recall = float((found <= exact + tol).float().mean())
            if self.recall >= min_recall:
                break
        self.nprobe = self._index.nprobe
        return self.nprobe
