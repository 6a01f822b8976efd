"""The Detector contract, checked on EVERY registered method (adding a registry line is enough
to be covered): fit/predict shapes, finite and deterministic scores, errors before fit, and a
safetensors round trip that reproduces the scores exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from baselines.base import Detector
from baselines.components.backbones import EMBEDDED_MOBILENET_SHA256
from baselines.errors import NotFittedError
from leaderboard.registry import METHODS, load_class

NAMES = [n for n, e in METHODS.items() if e.implemented]
SIZE = 224


def _images(n: int, seed: int) -> torch.Tensor:
    """Smooth stripes plus noise: structured enough for real backbones, cheap to make."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, SIZE), torch.linspace(0, 1, SIZE), indexing="ij")
    base = 0.5 + 0.3 * torch.sin(12 * (xx + yy))
    noise = 0.1 * torch.rand(n, 3, SIZE, SIZE, generator=g)
    return (base.expand(n, 3, SIZE, SIZE) + noise).clamp(0, 1)


def _build(name: str) -> Detector:
    return load_class(name)(backbone="mobilenet_v2", weights="imagenet", device="cpu", seed=0)


@pytest.fixture(scope="module")
def train() -> list[torch.Tensor]:
    return list(_images(4, 0).split(2))


@pytest.fixture(scope="module")
def test_images() -> torch.Tensor:
    x = _images(3, 1)
    x[2, :, 80:140, 80:140] = 0.0  # one image with an obvious defect
    return x


@pytest.mark.parametrize("name", NAMES)
def test_contract(name: str, train: list[torch.Tensor], test_images: torch.Tensor,
                  tmp_path: Path) -> None:
    model = _build(name)
    json.dumps(model.config)
    with pytest.raises(NotFittedError):
        model.predict(test_images)
    assert model.fit(iter(train)) is model
    assert isinstance(model.last_timings, dict)

    pred = model.predict(test_images)
    assert pred.scores.shape == (3,) and pred.maps.shape == (3, SIZE, SIZE)
    assert torch.isfinite(pred.scores).all() and torch.isfinite(pred.maps).all()
    assert torch.equal(model.predict(test_images).scores, pred.scores)  # deterministic
    single = model.predict(test_images[:1]).scores
    assert torch.allclose(single, pred.scores[:1], rtol=1e-4, atol=1e-5)  # batch-independent

    summary = model.state_summary()
    assert isinstance(summary, dict) and all(isinstance(v, list) for v in summary.values())
    sha = model.backbone_sha256
    if not METHODS[name].hidden:
        assert sha == EMBEDDED_MOBILENET_SHA256

    path = model.save(tmp_path / f"{name}.safetensors")
    loaded = type(model).load(path)
    assert torch.equal(loaded.predict(test_images).scores, pred.scores)
    assert torch.equal(loaded.predict(test_images).maps, pred.maps)
