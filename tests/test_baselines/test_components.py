"""Shared PatchCore parts against literal references: the official embedding_concat, brute-force
greedy k-center, brute-force nearest neighbours, scipy's Gaussian filter and cv2's bilinear."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from baselines.components.aggregate import (
    concat_layers,
    local_avg,
    local_max_with_sources,
    to_patches,
)
from baselines.components.anomaly_map import anomaly_map
from baselines.components.coreset import (
    gather_rows,
    greedy_coreset,
    kcenter_greedy,
    project,
    random_projection,
)
from baselines.components.nn_search import NearestNeighbors


def _official_embedding_concat(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Transcription of the official utils.embedding_concat (unfold, concat per cell, fold)."""
    b, c1, h1, w1 = x.shape
    _, c2, h2, w2 = y.shape
    s = h1 // h2
    x = F.unfold(x, kernel_size=s, dilation=1, stride=s).view(b, c1, -1, h2, w2)
    z = torch.zeros(b, c1 + c2, x.size(2), h2, w2)
    for i in range(x.size(2)):
        z[:, :, i] = torch.cat((x[:, :, i], y), 1)
    return F.fold(z.view(b, -1, h2 * w2), kernel_size=s, output_size=(h1, w1), stride=s)


def test_concat_is_official_embedding_concat() -> None:
    x, y = torch.randn(2, 5, 28, 28), torch.randn(2, 7, 14, 14)
    assert torch.equal(concat_layers([x, y]), _official_embedding_concat(x, y))
    emb = concat_layers([x, y])
    # patches are row-major per image, as the official reshape_embedding loops k, i, j
    assert torch.equal(to_patches(emb)[28 * 3 + 4], emb[0, :, 3, 4])
    assert torch.equal(to_patches(emb)[784 + 5], emb[1, :, 0, 5])


def test_pooling_is_the_official_modules() -> None:
    x = torch.randn(2, 4, 14, 14)
    assert torch.equal(local_avg(x), torch.nn.AvgPool2d(3, 1, 1)(x))
    pooled, sources = local_max_with_sources(x)
    assert torch.equal(pooled, torch.nn.MaxPool2d(3, 1, 1)(x))
    assert torch.equal(x.flatten(2).gather(2, sources.flatten(2)).view_as(x), pooled)


def _brute_greedy(x: torch.Tensor, n: int, start: int) -> list[int]:
    """Textbook greedy k-center: full distance pass per step, first index on ties."""
    x = x - x.mean(0)
    md = torch.full((x.shape[0],), float("inf"))
    chosen = [start]
    for _ in range(n - 1):
        md = torch.minimum(md, ((x - x[chosen[-1]]) ** 2).sum(1))
        chosen.append(int(md.argmax()))
    return chosen


@pytest.mark.parametrize("front", [10_000, 32, 8])
def test_kcenter_matches_brute_force(front: int) -> None:
    # clustered data (many near-duplicates) and a small front force many front rebuilds
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(40, 24, generator=gen) * 4
    x = centers[torch.randint(0, 40, (1500,), generator=gen)] + torch.randn(1500, 24, generator=gen)
    got = kcenter_greedy(x, 80, start=7, front=front)
    assert got.tolist() == _brute_greedy(x, 80, start=7)
    assert len(set(got.tolist())) == 80


def test_kcenter_float16_input_and_start_zero() -> None:
    x = torch.randn(800, 16, generator=torch.Generator().manual_seed(1)).half()
    got = kcenter_greedy(x, 40, front=32)
    assert got[0] == 0  # the official kCenterGreedy starts at index 0
    assert got.tolist() == _brute_greedy(x.float(), 40, start=0)


def test_kcenter_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError):
        kcenter_greedy(torch.randn(5, 2), 6)
    with pytest.raises(ValueError):
        kcenter_greedy(torch.randn(5, 2), 2, start=5)


def test_projection_is_seeded_and_chunks_equal_whole() -> None:
    assert torch.equal(random_projection(64, 8, seed=3), random_projection(64, 8, seed=3))
    assert not torch.equal(random_projection(64, 8, seed=3), random_projection(64, 8, seed=4))
    x = torch.randn(500, 64, generator=torch.Generator().manual_seed(2))
    chunks = list(x.split(130))
    assert torch.allclose(project(chunks, 8, seed=1), x @ random_projection(64, 8, seed=1), atol=1e-5)
    assert torch.equal(project(chunks, None), x)
    assert torch.equal(greedy_coreset(chunks, 20, project_dim=8), greedy_coreset(x, 20, project_dim=8))
    index = torch.tensor([0, 129, 130, 499, 260])
    assert torch.equal(gather_rows(chunks, index), x[index])


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_search_matches_cdist(backend: str) -> None:
    gen = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(300, 48, generator=gen), torch.randn(1000, 48, generator=gen)
    dist, idx = NearestNeighbors(bank, backend).search(queries, k=3)
    ref = torch.cdist(queries, bank)
    ref_d, ref_i = ref.topk(3, largest=False)
    assert torch.equal(idx, ref_i)
    assert torch.allclose(dist, ref_d, rtol=1e-4, atol=1e-4)  # L2, not faiss' squared L2
    assert torch.allclose(ref.gather(1, idx), dist, rtol=1e-4, atol=1e-4)


def test_blur_matrix_is_scipy() -> None:
    from baselines.components.anomaly_map import blur_matrix

    ndimage = pytest.importorskip("scipy.ndimage")
    maps = torch.rand(2, 40, 33, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = blur_matrix(40, 4, dtype=torch.float64) @ maps @ blur_matrix(33, 4, dtype=torch.float64).T
    for m, o in zip(maps, ours):
        assert np.allclose(o.numpy(), ndimage.gaussian_filter(m.numpy(), sigma=4), atol=1e-10)


def _cv2_linear(img: np.ndarray, out: int) -> np.ndarray:
    """cv2.resize INTER_LINEAR on float images (half-pixel centres, clamped edges), in numpy."""
    def axis(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f = (np.arange(out) + 0.5) * n_in / out - 0.5
        s = np.floor(f).astype(int)
        f = f - s
        f[s < 0], s[s < 0] = 0, 0
        high = s >= n_in - 1
        f[high], s[high] = 0, n_in - 1
        return s, np.minimum(s + 1, n_in - 1), f

    y0, y1, fy = axis(img.shape[0])
    x0, x1, fx = axis(img.shape[1])
    rows = img[y0] * (1 - fy)[:, None] + img[y1] * fy[:, None]
    return rows[:, x0] * (1 - fx) + rows[:, x1] * fx


def test_anomaly_map_is_cv2_resize_then_scipy_blur() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    patch = torch.rand(1, 28, 28, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = anomaly_map(patch, (224, 224), sigma=4)[0].numpy()
    ref = ndimage.gaussian_filter(_cv2_linear(patch[0].numpy(), 224), sigma=4)
    assert np.allclose(ours, ref, atol=1e-9)


def test_release_free_memory_gives_heap_pages_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from baselines.components import memory

    def rss_pages() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1])

    if sys.platform.startswith("linux"):
        # many 1 MB heap blocks (below the mmap threshold), freed except the last one, which
        # pins the heap top so glibc cannot shrink it by itself; the trim returns the rest
        blocks = [np.ones(1 << 18, np.float32) for _ in range(200)]
        keep = blocks.pop()
        del blocks
        before = rss_pages()
        assert memory.release_free_memory() is True
        assert rss_pages() < before - 25_000  # at least ~100 MB of 4 KiB pages came back
        del keep
    memory._malloc_trim.cache_clear()
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.release_free_memory() is False
    memory._malloc_trim.cache_clear()


def test_heap_trimmer_trims_only_after_growth(monkeypatch: pytest.MonkeyPatch) -> None:
    from baselines.components import memory

    rss = [100]
    calls = []
    monkeypatch.setattr(memory, "resident_bytes", lambda: rss[0])
    monkeypatch.setattr(memory, "release_free_memory", lambda: calls.append(rss[0]) or True)
    trimmer = memory.HeapTrimmer(slack=50)
    assert calls == [100]  # once at the start
    for value in (120, 149, 150):
        rss[0] = value
        trimmer.step()
    assert calls == [100]  # growth of at most the slack: no trim
    rss[0] = 151
    trimmer.step()
    assert calls == [100, 151] and trimmer.trims == 2
    rss[0] = 160
    trimmer.step()  # measured from the last trim's resident size
    assert calls == [100, 151]
    monkeypatch.setattr(memory, "release_free_memory", lambda: False)
    off = memory.HeapTrimmer(slack=0)  # no malloc_trim here: steps do nothing
    rss[0] = 10**9
    off.step()
    assert off.trims == 0
