"""Nearest-neighbour distances to a large bank of embeddings, exact or approximate, accurate
for tiny distances.

Patch SVDD scores each test patch by the L2 distance to its nearest training patch: 67.6 k
vectors at K = 64 (exact search is cheap) and 1.30 M at K = 32, where the official code uses an
approximate graph index (NGT) and recomputes the exact distance to the neighbour it returns.
Here: exact search (:class:`~baselines.components.nn_search.ExactNearest`: float32 candidates
re-ranked by direct float64 distances, certified, so near-duplicate patches get their true
neighbour), or on CPU a faiss ``IndexIVFFlat`` whose ``candidates`` nearest are re-ranked the
same way. An approximate index is never searched before :meth:`BankSearch.calibrate` chose its
``nprobe`` by *measured* 1-NN recall against the exact search on calibration queries (a constant
would be wrong: barely trained, near-constant embeddings need many more probes than trained
ones); where no probe count below an exhaustive scan reaches ``min_recall``, or there are no
queries to measure with, the search is exact instead, and says why.

Float32 trap: barely trained embeddings share a large common offset and their true nearest
distances are ~1e-4, below the rounding error of float32 ``|q|^2 + |b|^2 - 2 q.b``. So the
candidate searches run on vectors centred on the bank mean, and every distance returned is
computed directly from the original vectors.
"""

from __future__ import annotations

import math

import torch

from baselines.components.nn_search import CANDIDATES, ExactNearest, rerank

EXACT_MAX = 1 << 18  # banks up to this many vectors are searched exactly
PROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TIE = 1e-9  # relative: a found neighbour this close to the exact distance is a tie, not a miss
_QUERY_BLOCK = 1 << 14


class BankSearch:
    """1-NN distances to a fixed ``(M, D)`` bank; build once, calibrate, search many times."""

    def __init__(self, bank: torch.Tensor, *, approximate: bool | None = None,
                 nlist: int | None = None, seed: int = 0, candidates: int = CANDIDATES) -> None:
        """``approximate``: None = IVF on CPU when the bank has more than ``EXACT_MAX`` vectors
        (faiss-cpu has no IVF for GPU memory: elsewhere the search is exact)."""
        self.device = bank.device
        self.exact = ExactNearest(bank, candidates)
        cpu = self.device.type == "cpu"
        if approximate is None:
            approximate = cpu and len(bank) > EXACT_MAX
        self.fallback: str | None = None  # why an asked-for approximate search is exact
        if approximate and not cpu:
            self.fallback = f"faiss IVF runs on CPU only: exact on {self.device.type}"
            approximate = False
        self.approximate = bool(approximate)
        self.candidates = candidates
        self.nprobe: int | None = None  # set by calibrate
        self.recall: float | None = None  # measured 1-NN recall at nprobe
        self.queries = 0  # calibration queries it was measured on
        self.nlist: int | None = None
        self._index = None
        if self.approximate:
            import faiss

            faiss.omp_set_num_threads(torch.get_num_threads())
            centred = self.exact.centred.bank.numpy()
            self.nlist = nlist or max(1, round(len(bank) ** 0.5))  # k-means in seconds
            index = faiss.IndexIVFFlat(faiss.IndexFlatL2(centred.shape[1]), centred.shape[1],
                                       self.nlist)
            index.cp.seed = seed  # k-means seeding: same bank, same index
            index.train(centred)
            index.add(centred)
            self._index = index

    def __len__(self) -> int:
        return len(self.exact)

    def nearest(self, queries: torch.Tensor, exact: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances ``(Q,)`` (float64, direct) and bank indices ``(Q,)`` of each query's
        nearest bank vector as the index finds it (``exact``: the exact search)."""
        if exact or not self.approximate:
            return self.exact.search(queries)
        if self.nprobe is None:
            raise RuntimeError("an approximate BankSearch is searched only after calibrate()")
        import faiss

        faiss.omp_set_num_threads(torch.get_num_threads())
        queries = queries.detach().to(self.device).float()
        qc = self.exact.centre(queries)
        cand = torch.full((len(qc), self.candidates), -1, dtype=torch.long)
        for lo in range(0, len(qc), _QUERY_BLOCK):
            part = qc[lo : lo + _QUERY_BLOCK].numpy()
            cand[lo : lo + len(part)] = torch.from_numpy(self._index.search(part, self.candidates)[1])
        dist, idx = rerank(queries, self.exact.bank, cand)
        lost = ~torch.isfinite(dist)  # the probed lists held no vector at all
        if lost.any():
            dist[lost], idx[lost] = self.exact.search(queries[lost])
        return dist, idx

    def search(self, queries: torch.Tensor, exact: bool = False) -> torch.Tensor:
        """L2 distances ``(Q,)`` (float32) of each query row to its nearest bank vector."""
        return self.nearest(queries, exact)[0].float()

    def calibrate(self, queries: torch.Tensor, min_recall: float = 0.99) -> int:
        """Choose the smallest ``nprobe`` whose 1-NN recall on ``queries`` (vectors like the
        ones to be searched, not in the bank), against the exact search, reaches
        ``min_recall``; returns it (0: exact search). A found neighbour counts as correct when
        it is as near as the exact one (ties allowed). Where no ``nprobe`` below ``nlist``
        reaches it, or ``queries`` is empty, the search becomes exact."""
        if not self.approximate:
            return 0
        self.queries = len(queries)
        if not len(queries):
            return self._use_exact("no calibration queries to measure an IVF index's recall")
        want = self.exact.search(queries)[0]
        recall = 0.0
        for probes in (p for p in PROBES if p < self.nlist):
            self._index.nprobe = self.nprobe = probes
            found = self.nearest(queries)[0]
            recall = float((found <= want * (1 + TIE)).double().mean())
            if recall >= min_recall:
                self.recall = recall
                return probes
        return self._use_exact(f"IVF reached recall {recall:.4f} < {min_recall} below "
                               f"{self.nlist} probes")

    def _use_exact(self, why: str) -> int:
        self.approximate, self.nprobe, self.recall, self._index = False, None, None, None
        self.fallback = why
        return 0

    def describe(self) -> str:
        """What the search is, for records: ``exact`` or ``IVF-Flat, nprobe P, recall R on N
        calibration queries`` (R rounded down, so it never reads above what was measured)."""
        if not self.approximate:
            return "exact"
        if self.recall is None:
            return f"IVF-Flat, not calibrated (nlist {self.nlist})"
        shown = math.floor(self.recall * 1e4) / 1e4
        return f"IVF-Flat, nprobe {self.nprobe}, recall {shown:.4f} on {self.queries} calibration queries"
