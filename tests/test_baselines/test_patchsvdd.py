"""Patch SVDD, piece by piece, against literal transcriptions of the official code
(nuclearboy95/Anomaly-Detection-PatchSVDD-PyTorch, codes/) on small inputs: the fully
convolutional embeddings equal the crop-by-crop ones, the pair samplers follow the official
rules (property tests on many draws), the losses, the classifier's frozen last weight, the map
averaging and the product fusion; training lowers the loss and is seeded; the nearest-neighbour
search is accurate for tiny distances and its approximate index reaches the asked recall."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixtures import smooth_images

from baselines.components.ann import BankSearch
from baselines.components.svdd import (
    DIRECTIONS,
    EncoderHier,
    NormalizedLinear,
    PositionClassifier,
    crop,
    dense_embeddings,
    distribute,
    official_steps,
    position_pairs,
    svdd_loss,
    svdd_pairs,
)
from baselines.patchsvdd import CHANCE, PatchSVDD
from baselines.training import TrainingSet


def _enc(seed: int = 0) -> EncoderHier:
    torch.manual_seed(seed)
    return EncoderHier(64).eval()


def _official_infer(enc: torch.nn.Module, x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """inspection.infer: every K x K crop at stride S, one by one, through ``enc``."""
    n, _, h, w = x.shape
    rows, cols = 1 + (h - k) // s, 1 + (w - k) // s
    out = torch.empty(n, rows, cols, 64)
    with torch.no_grad():
        for b in range(n):
            for i in range(rows):
                for j in range(cols):
                    patch = x[b : b + 1, :, s * i : s * i + k, s * j : s * j + k]
                    out[b, i, j] = enc(patch).view(-1)
    return out


def test_dense_embeddings_equal_the_official_crops() -> None:
    enc = _enc()
    x = torch.randn(2, 3, 96, 96) * 0.3  # 96 px keeps the literal loop short
    with torch.no_grad():
        e64, e32 = dense_embeddings(enc, x)
    want64 = _official_infer(enc, x, 64, 16)
    want32 = _official_infer(enc.enc, x, 32, 4)
    assert e64.shape == want64.shape == (2, 3, 3, 64) and e32.shape == want32.shape == (2, 17, 17, 64)
    torch.testing.assert_close(e64, want64, rtol=0, atol=1e-5)
    torch.testing.assert_close(e32, want32, rtol=0, atol=1e-5)


def test_dense_grid_at_256_is_the_official_13_and_57() -> None:
    with torch.no_grad():
        e64, e32 = dense_embeddings(_enc(), torch.zeros(1, 3, 256, 256))
    assert e64.shape[1:3] == (13, 13) and e32.shape[1:3] == (57, 57)


def test_hierarchical_encoder_is_forward_hier() -> None:
    """EncoderHier(64) = enc on the 4 quadrants, re-tiled [[h1, h2], [h3, h4]], then the head."""
    enc = _enc(1)
    x = torch.randn(3, 3, 64, 64)
    q = [x[..., :32, :32], x[..., :32, 32:], x[..., 32:, :32], x[..., 32:, 32:]]
    with torch.no_grad():
        h = [enc.enc(p) for p in q]
        grid = torch.cat([torch.cat([h[0], h[1]], 3), torch.cat([h[2], h[3]], 3)], 2)
        want = torch.tanh(enc.conv2(F.leaky_relu(enc.conv1(grid), 0.1)))
        torch.testing.assert_close(enc(x), want)
    assert enc.enc(torch.zeros(1, 3, 32, 32)).shape == (1, 64, 1, 1)
    assert sum(p.numel() for p in enc.parameters()) == pytest.approx(0.40e6, rel=0.05)


def test_position_pairs_follow_the_official_rules() -> None:
    rng = np.random.default_rng(0)
    for k in (64, 32):
        p1, p2, label = position_pairs(rng, 20000, k)
        assert p1.min() >= 0 and p1.max() <= 256 - k and p2.min() >= 0 and p2.max() <= 256 - k
        counts = np.bincount(label, minlength=8) / len(label)
        assert np.allclose(counts, 1 / 8, atol=0.01)
        direction = np.asarray(DIRECTIONS)[label]
        moved = p2 - p1
        free = ((p1 + direction * k >= 0) & (p1 + direction * k <= 256 - k)).all(axis=1)
        step = np.abs(moved[free])
        on_axis = direction[free] != 0
        assert (step[~on_axis] == 0).all()  # no move along an axis the label does not name
        assert step[on_axis].min() == 3 * k // 4 and step[on_axis].max() == k - 1  # 3K/4 + U[0, K/4)
        assert (np.sign(moved[free]) == direction[free]).all()
        values = np.bincount(step[on_axis] - 3 * k // 4)
        assert len(values) == k // 4 and values.min() > 0.7 * values.mean()  # uniform
        clipped = ~free
        assert clipped.any() and ((p2[clipped] == 0) | (p2[clipped] == 256 - k) |
                                  (p2[clipped] == p1[clipped] + direction[clipped] *
                                   np.abs(moved[clipped]))).all()


def test_svdd_pairs_jitter_by_k_over_32_never_zero() -> None:
    rng = np.random.default_rng(1)
    for k, j in ((64, 2), (32, 1)):
        p1, p2 = svdd_pairs(rng, 20000, k)
        jitter = p2 - p1
        inside = ((p1 >= j) & (p1 <= 256 - k - j)).all(axis=1)  # no clipping possible
        assert np.abs(jitter).max() <= j
        assert jitter[inside].any(axis=1).all()  # (0, 0) is redrawn
        assert len({tuple(v) for v in jitter[inside]}) == (2 * j + 1) ** 2 - 1
        assert p2.min() >= 0 and p2.max() <= 256 - k


def test_crop_is_the_official_slice() -> None:
    x = torch.arange(2 * 3 * 10 * 10, dtype=torch.float32).view(2, 3, 10, 10)
    got = crop(x, np.array([1, 0]), np.array([[2, 3], [0, 5]]), 4)
    assert torch.equal(got[0], x[1, :, 2:6, 3:7]) and torch.equal(got[1], x[0, :, 0:4, 5:9])


def test_losses_and_frozen_classifier_weight() -> None:
    h1, h2 = torch.randn(5, 64, 1, 1), torch.randn(5, 64, 1, 1)
    want = torch.sqrt(((h1 - h2) ** 2).sum(1)).mean()  # the unsquared L2 of SVDD_Dataset.infer
    torch.testing.assert_close(svdd_loss(h1, h2), want)
    torch.manual_seed(0)
    lin = NormalizedLinear(128, 8)
    x = torch.randn(4, 128)
    w = lin.weight.detach() / lin.weight.detach().norm(dim=0, keepdim=True)
    torch.testing.assert_close(lin(x), x @ w.T + lin.bias)
    lin(x).sum().backward()
    assert lin.weight.grad is None and lin.bias.grad is not None  # only the bias trains
    cls = PositionClassifier(64)
    logits = cls(h1, h2)
    manual = cls.fc3(F.leaky_relu(cls.fc2(F.leaky_relu(cls.fc1((h1 - h2).view(5, 64)), 0.1)), 0.1))
    torch.testing.assert_close(logits, manual)
    model = PatchSVDD(lambda_value=0.5)
    parts = {"pos64": torch.tensor(1.0), "pos32": torch.tensor(2.0),
             "svdd64": torch.tensor(3.0), "svdd32": torch.tensor(4.0)}
    assert float(model.total(parts)) == pytest.approx(1 + 2 + 0.5 * 7)


def _official_distribute(score_mask: np.ndarray, k: int, s: int, size: int = 256) -> np.ndarray:
    """utils.distribute_score, literally."""
    mask = np.zeros([size, size], dtype=np.float32)
    cnt = np.zeros([size, size], dtype=np.int32)
    rows, cols = score_mask.shape[:2]
    for i in range(rows):
        for j in range(cols):
            h, w = i * s, j * s
            mask[h : h + k, w : w + k] += score_mask[i, j]
            cnt[h : h + k, w : w + k] += 1
    cnt[cnt == 0] = 1
    return mask / cnt


@pytest.mark.parametrize("k,s,n", [(64, 16, 13), (32, 4, 57)])
def test_map_averaging_is_distribute_score(k: int, s: int, n: int) -> None:
    scores = torch.rand(2, n, n)
    got = distribute(scores, k, s)
    for b in range(2):
        np.testing.assert_allclose(got[b].numpy(), _official_distribute(scores[b].numpy(), k, s),
                                   rtol=1e-5, atol=1e-6)


def _images(n: int, seed: int) -> torch.Tensor:
    return smooth_images(n, seed, 256, cells=16)


@pytest.fixture(scope="module")
def fitted() -> PatchSVDD:
    return PatchSVDD(batch_size=4, max_steps=4, log_every=2).fit(TrainingSet(_images(3, 0)))


def test_scores_are_the_product_of_both_maps(fitted: PatchSVDD) -> None:
    x = _images(2, 5)
    pred = fitted.predict(x)
    with torch.no_grad():
        e64, e32 = dense_embeddings(fitted.enc, x - fitted.mean_image_ / 255)
    d64 = torch.cdist(e64.reshape(-1, 64).double(), fitted.bank64_.double()).amin(1).view(2, 13, 13)
    d32 = torch.cdist(e32.reshape(-1, 64).double(), fitted.bank32_.double()).amin(1).view(2, 57, 57)
    maps = np.stack([_official_distribute(d64[b].numpy(), 64, 16) *
                     _official_distribute(d32[b].numpy(), 32, 4) for b in range(2)])
    np.testing.assert_allclose(pred.maps.numpy(), maps, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(pred.scores.numpy(), maps.max(axis=(1, 2)), rtol=1e-4)
    assert fitted.bank64_.shape == (3 * 169, 64) and fitted.bank32_.shape == (3 * 3249, 64)


def test_mean_image_is_the_training_mean(fitted: PatchSVDD) -> None:
    train = _images(3, 0)
    torch.testing.assert_close(fitted.mean_image_, train.mean(0) * 255, rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_training_lowers_the_loss_and_is_seeded() -> None:
    train = TrainingSet(_images(2, 0))
    model = PatchSVDD(batch_size=8, max_steps=40, lr=1e-3, log_every=10)
    def fixed(m: PatchSVDD) -> float:  # the loss on one fixed batch of pairs
        with torch.no_grad():
            x = m._standardise(train.all())
            return float(m.total(m.losses(np.random.default_rng(9), x, np.array([0, 1] * 8))))

    model.mean_image_ = train.all().mean(0) * 255  # what fit sets first
    before = fixed(model)
    model.fit(train)
    assert fixed(model) < before
    assert [e["step"] for e in model.training_log] == [10, 20, 30, 40]
    again = PatchSVDD(batch_size=8, max_steps=40, lr=1e-3, log_every=10).fit(train)
    x = _images(1, 3)
    assert torch.equal(model.predict(x).scores, again.predict(x).scores)


def test_schedule_and_verdict() -> None:
    params = {k: s.default for k, s in PatchSVDD.settings().items()}
    assert official_steps(400, 300, 100, 64) == 299 * 625 == PatchSVDD.steps(params, 400)
    assert PatchSVDD.steps({**params, "max_steps": 700, "batch_size": 16}, 400) == 700
    # 186,875 steps x 217 GFLOP (../shared/reference/csflow_patchsvdd.md, section 3.1)
    assert PatchSVDD.training_flops(params, 400) == pytest.approx(40.6e15, rel=0.02)
    model = PatchSVDD()
    model.training_log = [{"step": 700, "pos64": 1.9, "pos32": 2.07, "loss": 4.0}]
    assert "pos32 loss is still at chance" in model.training_verdict()
    model.training_log = [{"step": 700, "pos64": CHANCE, "pos32": 2.07, "loss": 4.0}]
    assert "both position losses" in model.training_verdict()
    model.training_log = [{"step": 700, "pos64": 1.2, "pos32": 1.5, "loss": 2.7}]
    assert model.training_verdict() is None


def test_search_is_accurate_for_near_constant_embeddings() -> None:
    g = torch.Generator().manual_seed(0)
    offset = torch.full((64,), 0.9)  # barely trained: everything near one point
    bank = offset + 1e-4 * torch.randn(5000, 64, generator=g)
    queries = offset + 1e-4 * torch.randn(300, 64, generator=g)
    want = torch.cdist(queries.double(), bank.double()).amin(1)
    got = BankSearch(bank, approximate=False).search(queries)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-9)
    naive = (queries.pow(2).sum(1, keepdim=True) - 2 * queries @ bank.T + bank.pow(2).sum(1))
    assert (naive.clamp_min(0).amin(1).sqrt().double() - want).abs().max() > 1e-3 * want.max()


def test_approximate_search_reaches_the_asked_recall_and_is_deterministic() -> None:
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(200, 16, generator=g)
    bank = centres[torch.randint(200, (40000,), generator=g)] + 0.3 * torch.randn(40000, 16, generator=g)
    queries = centres[torch.randint(200, (2000,), generator=g)] + 0.3 * torch.randn(2000, 16, generator=g)
    search = BankSearch(bank, approximate=True, nlist=256)
    probes = search.calibrate(queries[:1000], min_recall=0.99)
    assert 1 <= probes <= 256 and search.recall >= 0.99
    exact = search.search(queries[1000:], exact=True)
    found = search.search(queries[1000:])
    assert (found <= exact + 1e-5).float().mean() >= 0.97  # held-out queries: about the same
    again = BankSearch(bank, approximate=True, nlist=256)
    assert again.calibrate(queries[:1000], min_recall=0.99) == probes
    assert torch.equal(again.search(queries), search.search(queries))
    assert search.describe().startswith(f"IVF-Flat, nprobe {probes}, recall 0.99")
    # an approximate search never finds a nearer neighbour than the exact one
    assert bool((found >= exact - 1e-5).all())


def test_exact_search_finds_the_true_neighbour_of_near_duplicates() -> None:
    """Near-duplicate vectors with large norms (where float32 expanded distances cannot tell
    them apart): the exact search equals a float64 brute force."""
    from baselines.components.nn_search import ExactNearest, rerank

    g = torch.Generator().manual_seed(3)
    base = 3.0 * torch.randn(400, 64, generator=g)  # large norms: the float32 error is large
    bank = torch.cat([base + 1e-4 * torch.randn(400, 64, generator=g) for _ in range(6)])
    queries = base[:200] + 1e-4 * torch.randn(200, 64, generator=g)
    want = (queries.double()[:, None] - bank.double()[None]).pow(2).sum(-1).sqrt()  # direct
    want_d, want_i = want.min(1)
    dist, idx = ExactNearest(bank).search(queries)
    assert torch.equal(idx, want_i) or bool((want.gather(1, idx[:, None])[:, 0] == want_d).all())
    torch.testing.assert_close(dist, want_d, rtol=1e-12, atol=1e-15)
    # rerank alone: the nearest of the given candidates by direct distance, -1 = none
    cand = torch.tensor([[5, want_i[0].item(), -1], [-1, -1, -1]])
    d, i = rerank(queries[:2], bank, cand)
    assert i[0] == want_i[0] and math.isclose(d[0], want_d[0], rel_tol=1e-12)
    assert d[1] == float("inf")


def test_an_approximate_index_is_calibrated_or_exact_never_blind() -> None:
    g = torch.Generator().manual_seed(4)
    bank = torch.randn(4000, 16, generator=g)
    queries = torch.randn(300, 16, generator=g)
    search = BankSearch(bank, approximate=True, nlist=64)
    with pytest.raises(RuntimeError, match="only after calibrate"):
        search.search(queries)
    assert search.calibrate(queries[:0]) == 0 and not search.approximate  # nothing to measure
    assert "no calibration queries" in search.fallback and search.describe() == "exact"
    hard = BankSearch(bank, approximate=True, nlist=2)  # only 1 probe is below nlist
    assert hard.calibrate(queries, min_recall=1.0) == 0 or hard.recall == 1.0
    if not hard.approximate:
        assert "below 2 probes" in hard.fallback
    torch.testing.assert_close(hard.search(queries).double(),
                               torch.cdist(queries.double(), bank.double()).amin(1),
                               rtol=0, atol=1e-6)


def test_k64_is_exact_and_a_rebuilt_k32_index_is_calibrated(tmp_path, monkeypatch) -> None:
    """``search=approximate`` leaves K = 64 exact; a model fitted with an exact K = 32 search
    and loaded where the bank is above the exact limit gets a calibrated index (item 14)."""
    from baselines.components import ann

    model = PatchSVDD(batch_size=4, max_steps=2, search="approximate").fit(
        TrainingSet(_images(2, 1)))
    assert model.fit_notes["search64"] == "exact"
    assert model.fit_notes["search32"].startswith(("IVF-Flat, nprobe", "exact"))
    assert model.searchers()[1].nprobe is not None or model.fit_notes["search32_exact_because"]
    auto = PatchSVDD(batch_size=4, max_steps=2).fit(TrainingSet(_images(2, 1)))
    assert auto.fit_notes["search32"] == "exact" and len(auto.calib32_) > 0
    path = auto.save(tmp_path / "m.safetensors")
    monkeypatch.setattr(ann, "EXACT_MAX", 1000)  # here the bank is above the exact limit
    loaded = PatchSVDD.load(path)
    s32 = loaded.searchers()[1]
    assert s32.queries == len(auto.calib32_) > 0  # measured on the kept calibration queries
    assert (s32.approximate and s32.recall >= loaded.min_recall) or s32.fallback
    assert loaded.fit_notes["search32"] == s32.describe()
