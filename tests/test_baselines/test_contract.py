"""The Detector contract, checked on EVERY registered method (adding a registry line is enough
to be covered; trained methods run their ``smoke`` budget): fit on a re-iterable training set
and report progress, an obvious defect scores above the normal images, shapes, finite and
deterministic scores, errors before fit, and a safetensors round trip that reproduces the
scores exactly. A constant-score detector fails it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from factories import striped_images
from harness_fixtures import plans

from baselines.base import Detector, Prediction, Train
from baselines.errors import NotFittedError
from baselines.training import Progress, TrainingSet
from leaderboard.registry import METHODS

NAMES = [n for n, e in METHODS.items() if e.implemented]


def _images(n: int, seed: int, size: int) -> torch.Tensor:
    return striped_images(n, seed, size)


def _with_defect(size: int) -> torch.Tensor:
    x = _images(3, 1, size)
    lo, hi = round(size * 0.36), round(size * 0.62)
    x[2, :, lo:hi, lo:hi] = 0.0  # one image with an obvious defect
    return x


class Recorder(Progress):
    def __init__(self) -> None:
        self.stages: list[str] = []
        self.steps = 0

    def stage(self, name: str, total: int) -> None:
        self.stages.append(name)

    def advance(self, steps: int = 1, **metrics: float) -> None:
        self.steps += steps


def check_contract(model: Detector, tmp_path: Path) -> None:
    """Everything the harness relies on, for one freshly built detector."""
    size = model.input_spec.size
    train = TrainingSet(_images(4, 0, size), batch_size=2, seed=0)
    test_images = _with_defect(size)
    json.dumps(model.get_params())
    assert model.get_params() == type(model)(**model.get_params()).get_params()
    with pytest.raises(NotFittedError):
        model.predict(test_images)
    progress = Recorder()
    assert model.fit(train, progress) is model
    assert progress.stages and progress.steps > 0  # fit reported where it is
    assert isinstance(model.fit_timings, dict) and isinstance(model.training_log, list)

    pred = model.predict(test_images)
    assert pred.scores.shape == (3,) and pred.maps.shape == (3, size, size)
    assert torch.isfinite(pred.scores).all() and torch.isfinite(pred.maps).all()
    assert float(pred.scores[2]) > float(pred.scores[:2].max()), "the defect must score highest"
    assert torch.equal(model.predict(test_images).scores, pred.scores)  # deterministic
    single = model.predict(test_images[:1]).scores
    assert torch.allclose(single, pred.scores[:1], rtol=1e-4, atol=1e-5)  # batch-independent

    summary = model.state_summary()
    assert all(isinstance(v, list) for v in summary.buffers.values()) and summary.parameters >= 0
    path = model.save(tmp_path / f"{model.name}.safetensors")
    loaded = type(model).load(path)
    assert torch.equal(loaded.predict(test_images).scores, pred.scores)
    assert torch.equal(loaded.predict(test_images).maps, pred.maps)


@pytest.mark.parametrize("name", NAMES)
def test_contract(name: str, tmp_path: Path) -> None:
    [plan] = plans([name])
    model = plan.build("cpu", 0)
    check_contract(model, tmp_path)
    info = model.backbone_info()
    if plan.klass.backbone_role is None:
        assert info is None
    else:
        assert info is not None and info.name == "mobilenet_v2" and info.sha256


class Constant(Detector):
    """Scores every image the same: a detector that detects nothing."""

    name = "constant"

    def __init__(self, *, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed
        self._check_settings()

    def fit(self, train: Train, progress: Progress | None = None) -> Constant:
        for _ in train:
            (progress or Progress()).advance()
        (progress or Progress()).stage("nothing", 1)
        self._mark_fitted()
        return self

    def predict(self, images: torch.Tensor) -> Prediction:
        self.check_fitted()
        return Prediction(torch.ones(images.shape[0]), torch.ones(images.shape[0], *images.shape[-2:]))


def test_contract_fails_a_constant_detector(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="defect"):
        check_contract(Constant(), tmp_path)


def test_training_set_passes_repeat() -> None:
    images = (torch.arange(5 * 3 * 2 * 2) % 256).to(torch.uint8).view(5, 3, 2, 2)
    train = TrainingSet(images, batch_size=2, seed=7)
    first, second = list(train), list(train)
    assert len(first) == train.num_batches == 3 and [b.shape[0] for b in first] == [2, 2, 1]
    assert all(torch.equal(a, b) for a, b in zip(first, second))  # a second pass: same batches
    assert torch.equal(torch.cat(first), images.float() / 255)  # file order, as float
    e0 = [b for b in train.batches(shuffle=True, epoch=0)]
    assert all(torch.equal(a, b) for a, b in zip(e0, train.batches(shuffle=True, epoch=0)))
    assert not torch.equal(train.order(0), train.order(1))  # another epoch, another order
    assert sorted(train.order(3).tolist()) == list(range(5))
    other = TrainingSet(images, batch_size=2, seed=8)
    assert not torch.equal(other.order(0), train.order(0))  # the seed decides the order
    assert torch.equal(TrainingSet.of(iter(first)).all(), train.all())  # batches are accepted
