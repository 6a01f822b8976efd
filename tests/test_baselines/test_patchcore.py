"""PatchCore end to end on tiny inputs: the contract, scoring = max 1-NN patch distance,
eq. 7 reweighting, determinism, persistence and user errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fixtures import smooth_images

from baselines.components.aggregate import to_patches
from baselines.components.backbones import build_model
from baselines.errors import DetectorError, InputError, NotFittedError
from baselines.patchcore import PatchCore

BACKBONE = "mobilenet_v2"  # embedded ImageNet weights: offline and fast
SIZE = 112  # half the paper's 224 keeps the tests fast: a 14 x 14 patch grid
GRID = (SIZE // 8) ** 2


def _images(n: int, seed: int, size: int = SIZE) -> torch.Tensor:
    return smooth_images(n, seed, size, cells=size // 8, noise=0.2)


@pytest.fixture(scope="module")
def train() -> torch.Tensor:
    return _images(6, seed=0)


@pytest.fixture(scope="module")
def test_images() -> torch.Tensor:
    return _images(3, seed=1)


@pytest.fixture(scope="module")
def fitted(train: torch.Tensor) -> PatchCore:
    return PatchCore(backbone=BACKBONE).fit(iter(train.split(4)))  # a generator, consumed once


def test_state_is_only_learned(fitted: PatchCore) -> None:
    assert set(fitted.state_dict()) == {"fitted_", "memory_bank_", "input_size_"}
    # 6 images x 14 x 14 patches, 1% kept as the official int(N * ratio); 32 + 96 channels
    summary = fitted.state_summary()
    assert summary.buffers == {"memory_bank_": [int(6 * GRID * 0.01), 128], "input_size_": [2]}
    assert summary.memory_bank == [int(6 * GRID * 0.01), 128] and summary.parameters == 0
    assert fitted.coreset_ratio == fitted.get_params()["coreset_ratio"] == 0.01 and fitted.backbone_sha256
    assert {"backbone", "aggregate", "coreset", "extract"} <= set(fitted.fit_timings)


def test_score_is_max_nearest_patch_distance(fitted: PatchCore, test_images: torch.Tensor) -> None:
    pred = fitted.predict(test_images)
    assert pred.scores.shape == (3,) and pred.maps.shape == (3, SIZE, SIZE)
    with torch.inference_mode():
        patches = to_patches(fitted.embed(test_images)).view(3, GRID, -1)
    nearest = torch.cdist(patches, fitted.memory_bank_.expand(3, -1, -1)).amin(2)  # (3, GRID)
    assert torch.allclose(pred.scores, nearest.amax(1), rtol=1e-4)
    assert {"backbone", "aggregate", "search", "map"} <= set(fitted.last_timings)
    # the map is the blurred upsampled patch scores: bounded by them, peaks where they peak
    assert float(pred.maps.max()) <= float(pred.scores.max()) + 1e-4


def test_predict_is_deterministic_and_fit_is_seeded(
    fitted: PatchCore, train: torch.Tensor, test_images: torch.Tensor
) -> None:
    a, b = fitted.predict(test_images), fitted.predict(test_images)
    assert torch.equal(a.scores, b.scores) and torch.equal(a.maps, b.maps)
    again = PatchCore(backbone=BACKBONE).fit([train[:3], train[3:]])  # other batching
    assert torch.allclose(again.memory_bank_, fitted.memory_bank_, atol=1e-5)
    assert torch.allclose(again.predict(test_images).scores, a.scores, atol=1e-4)


def test_full_bank_and_reweighting(train: torch.Tensor, test_images: torch.Tensor) -> None:
    model = PatchCore(backbone=BACKBONE, coreset_ratio=1.0, reweight=True, num_neighbors=3)
    model.fit([train[:2]])
    bank = model.memory_bank_
    assert bank.shape == (2 * GRID, 128)
    scores = model.predict(test_images[:1]).scores
    with torch.inference_mode():
        patches = to_patches(model.embed(test_images[:1]))
    dist = torch.cdist(patches, bank)
    s_star, where = dist.amin(1).max(0)
    m_star = bank[dist[where].argmin()]
    support = torch.cdist(m_star[None], bank)[0].topk(3, largest=False).indices  # N_b(m*)
    denom = torch.exp(torch.linalg.vector_norm(patches[where] - bank[support], dim=1)).sum()
    expected = (1 - torch.exp(s_star) / denom) * s_star  # PatchCore eq. 7
    assert torch.allclose(scores, expected[None], rtol=1e-4)
    assert float(scores[0]) < float(s_star)


def test_save_load_round_trip(fitted: PatchCore, test_images: torch.Tensor, tmp_path: Path) -> None:
    path = fitted.save(tmp_path / "pc.safetensors")
    loaded = PatchCore.load(path)
    assert loaded.get_params() == fitted.get_params()
    assert torch.equal(loaded.predict(test_images).scores, fitted.predict(test_images).scores)
    assert path.stat().st_size < 50_000  # the bank only, never the backbone


def test_load_refuses_other_backbone_weights(train: torch.Tensor, tmp_path: Path) -> None:
    weights = tmp_path / "w.pth"
    torch.save(build_model("resnet18", "none", seed=1)[0].state_dict(), weights)
    model = PatchCore(backbone="resnet18", weights=str(weights)).fit([train[:1]])
    saved = model.save(tmp_path / "m.safetensors")
    torch.save(build_model("resnet18", "none", seed=2)[0].state_dict(), weights)
    with pytest.raises(DetectorError, match="backbone weights differ"):
        PatchCore.load(saved)


def test_user_errors(fitted: PatchCore, test_images: torch.Tensor, tmp_path: Path) -> None:
    with pytest.raises(NotFittedError, match="before fit"):
        PatchCore(backbone=BACKBONE).predict(test_images)
    with pytest.raises(InputError, match="fitted on"):
        fitted.predict(_images(1, seed=2, size=224))
    with pytest.raises(InputError, match="no images"):
        PatchCore(backbone=BACKBONE).fit([])
    gray = test_images[:1].mean(1, keepdim=True)
    assert torch.equal(fitted.predict(gray).scores, fitted.predict(gray.expand(-1, 3, -1, -1)).scores)
    path = fitted.save(tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DetectorError, match="corrupt|not a valid"):
        PatchCore.load(path)
    with pytest.raises(DetectorError, match="coreset_ratio"):
        PatchCore(backbone=BACKBONE, coreset_ratio=0)
    for bad, named in (({"precision": "fp16"}, "precision"), ({"coreset_start": -1}, "coreset_start"),
                       ({"num_neighbors": 0}, "num_neighbors"), ({"projection_dim": 0}, "projection_dim")):
        with pytest.raises(DetectorError, match=named):
            PatchCore(backbone=BACKBONE, **bad)
