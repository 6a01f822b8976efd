"""PaDiM: scores equal a straightforward implementation (stack every embedding, np.cov,
np.linalg.inv, scipy's blur), the streaming Gaussian equals np.cov, save/load round-trips, the dim
subset is seeded, and user mistakes get clear errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixtures import smooth_images
from scipy.ndimage import gaussian_filter

from baselines.components.gaussian import BlockTriangle, GaussianAccumulator, mahalanobis
from baselines.errors import DetectorError, InputError, NotFittedError
from baselines.padim import PaDiM

SIZE = 32


def _images(n: int, seed: int, size: int = SIZE) -> torch.Tensor:
    return smooth_images(n, seed, size, cells=size // 8, noise=0.2)


def _batches(images: torch.Tensor, sizes: list[int]) -> Iterator[torch.Tensor]:
    """A generator (consumed once) of uneven batches, as a data loader would give."""
    start = 0
    for size in sizes:
        yield images[start : start + size]
        start += size


def _reference_maps(model: PaDiM, train: torch.Tensor, test: torch.Tensor) -> np.ndarray:
    """PaDiM as the reference code does it: every embedding stacked, one covariance per position
    with np.cov + 0.01 I, np.linalg.inv, Mahalanobis, bilinear upsampling, scipy Gaussian."""
    with torch.no_grad():
        feats = model.extractor(torch.cat([train, test]))
    l1, l2, l3 = (feats[k].numpy().astype(np.float64) for k in model.layer_names)
    s2, s3 = l1.shape[-1] // l2.shape[-1], l1.shape[-1] // l3.shape[-1]
    emb = np.concatenate(
        [l1, l2.repeat(s2, axis=2).repeat(s2, axis=3), l3.repeat(s3, axis=2).repeat(s3, axis=3)],
        axis=1,
    )[:, model.idx_.numpy()]
    n_all, d, h, w = emb.shape
    emb = emb.reshape(n_all, d, h * w)
    fit, score = emb[: len(train)], emb[len(train) :]
    dist = np.empty((len(test), h * w))
    for p in range(h * w):
        inv = np.linalg.inv(np.cov(fit[:, :, p], rowvar=False) + 0.01 * np.eye(d))
        diff = score[:, :, p] - fit[:, :, p].mean(axis=0)
        dist[:, p] = np.sqrt(np.einsum("bi,ij,bj->b", diff, inv, diff))
    up = F.interpolate(torch.from_numpy(dist.reshape(-1, 1, h, w)), size=(SIZE, SIZE),
                       mode="bilinear", align_corners=False)[:, 0].numpy()
    return np.stack([gaussian_filter(m, sigma=4) for m in up])


@pytest.mark.parametrize(
    "backbone,weights,n_features,dims",
    [("resnet18", "none", 100, 100), ("mobilenet_v2", "imagenet", 550, 152)],
)
def test_matches_straightforward_implementation(
    backbone: str, weights: str, n_features: int, dims: int
) -> None:
    train, test = _images(12, seed=0), _images(4, seed=1)
    model = PaDiM(backbone=backbone, weights=weights, n_features=n_features, block=5,
                  channels_last=False)
    model.fit(_batches(train, [5, 4, 3]))  # blocks of 5 straddle the batches
    assert model.idx_.shape == (dims,)
    if dims < n_features:  # fewer channels than n_features: every dim is used
        assert torch.equal(model.idx_, torch.arange(dims))
    pred = model.predict(test)
    ref = _reference_maps(model, train, test)
    assert pred.maps.shape == (4, SIZE, SIZE) and pred.scores.shape == (4,)
    np.testing.assert_allclose(pred.maps.numpy(), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    np.testing.assert_allclose(pred.scores.numpy(), ref.max(axis=(1, 2)), rtol=1e-4)
    assert set(model.last_timings) == {"backbone", "mahalanobis", "map"}
    assert set(model.fit_timings) >= {"extract", "gaussian"}


def test_block_triangle_packing() -> None:
    layout = BlockTriangle.for_dim(150)
    assert layout.edges == (0, 75, 150) and layout.size == 75 * 75 + 75 * 150
    lower = torch.randn(2, 150, 150).tril()
    packed = torch.empty(2, layout.size)
    layout.pack(lower, packed)
    assert torch.equal(layout.unpack(packed), lower)
    sym = lower + lower.tril(-1).transpose(1, 2)
    layout.pack(sym, packed)
    assert torch.equal(layout.unpack_symmetric(packed, torch.float64), sym.double())


def test_streaming_gaussian_equals_numpy_despite_a_large_mean() -> None:
    # features with a mean 1000x their spread: a plain float32 sum of x x^T would lose the
    # covariance to cancellation; the shifted accumulation keeps it
    g = torch.Generator().manual_seed(0)
    n, d, p = 23, 130, 3  # d = 130: two row blocks of the packed triangle
    x = 300.0 + 0.3 * torch.randn(n, d, p, generator=g)
    acc = GaussianAccumulator(p, d, torch.device("cpu"), block=4)
    for part in x.split([7, 1, 15]):
        acc.add(part)
    mean, packed = acc.finalize(eps=0.01)
    factor = acc.layout.unpack(packed)
    assert torch.equal(factor, factor.tril())
    xd = x.double().numpy()
    for pos in range(p):
        cov = np.cov(xd[:, :, pos], rowvar=False) + 0.01 * np.eye(d)
        w = factor[pos].double().numpy()
        inv = np.linalg.inv(cov)
        np.testing.assert_allclose(w.T @ w, inv, rtol=1e-4, atol=1e-5 * np.abs(inv).max())
        np.testing.assert_allclose(mean[pos].numpy(), xd[:, :, pos].mean(0), rtol=1e-6)
    dist = mahalanobis(x[:3], mean, packed, acc.layout)
    diff = xd[:3, :, 0] - xd[:, :, 0].mean(0)
    inv = np.linalg.inv(np.cov(xd[:, :, 0], rowvar=False) + 0.01 * np.eye(d))
    expect = np.sqrt(np.einsum("bi,ij,bj->b", diff, inv, diff))
    np.testing.assert_allclose(dist[:, 0].numpy(), expect, rtol=1e-3)


@pytest.fixture(scope="module")
def fitted() -> PaDiM:
    return PaDiM(backbone="resnet18", weights="none", n_features=60).fit([_images(6, seed=2)])


def test_save_load_round_trip(fitted: PaDiM, tmp_path: Path) -> None:
    test = _images(3, seed=3)
    before = fitted.predict(test)
    path = fitted.save(tmp_path / "padim.safetensors")
    loaded = PaDiM.load(path)
    assert loaded.get_params() == fitted.get_params()
    for key, value in fitted.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert not any(k.startswith("extractor") for k in fitted.state_dict())  # backbone not saved
    after = loaded.predict(test)
    assert torch.equal(before.scores, after.scores) and torch.equal(before.maps, after.maps)
    assert fitted.state_summary().buffers["factor_"] == [8 * 8, 60 * 60]  # one row block


def test_predict_is_deterministic(fitted: PaDiM) -> None:
    test = _images(2, seed=4)
    a, b = fitted.predict(test), fitted.predict(test)
    assert torch.equal(a.scores, b.scores) and torch.equal(a.maps, b.maps)
    refit = PaDiM(backbone="resnet18", weights="none", n_features=60).fit([_images(6, seed=2)])
    assert torch.equal(refit.predict(test).scores, a.scores)
    # one image alone scores as it does in a batch (up to float rounding)
    assert torch.allclose(fitted.predict(test[:1]).scores, a.scores[:1], rtol=1e-5)


def test_dim_subset_is_seeded() -> None:
    images = _images(3, seed=5, size=32)

    def dims(seed: int) -> torch.Tensor:
        return PaDiM(backbone="resnet18", weights="none", seed=seed, n_features=50).fit(
            [images]
        ).idx_

    a, b, c = dims(0), dims(0), dims(1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(set(a.tolist())) == 50 and int(a.max()) < 64 + 128 + 256  # resnet18: 448 dims
    assert torch.equal(a, a.sort().values)


def test_refuses_other_backbone_weights(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from baselines.components.backbones import build_model

    weights = tmp_path / "w.safetensors"
    net, _ = build_model("resnet18", "none", seed=7)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    model = PaDiM(backbone="resnet18", weights=str(weights), n_features=20)
    path = model.fit([_images(3, seed=6, size=32)]).save(tmp_path / "m.safetensors")
    other, _ = build_model("resnet18", "none", seed=8)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(weights))
    with pytest.raises(DetectorError, match="backbone weights differ"):
        PaDiM.load(path)


def test_user_errors(fitted: PaDiM) -> None:
    fresh = PaDiM(backbone="resnet18", weights="none")
    with pytest.raises(NotFittedError):
        fresh.predict(_images(1, seed=0))
    with pytest.raises(InputError, match="no images"):
        fresh.fit([])
    with pytest.raises(InputError, match="at least 2"):
        fresh.fit([_images(1, seed=0, size=32)])
    with pytest.raises(InputError, match="fitted on"):
        fitted.predict(_images(1, seed=0, size=48))
    with pytest.raises(DetectorError, match="n_features"):
        PaDiM(backbone="resnet18", weights="none", n_features=0)
