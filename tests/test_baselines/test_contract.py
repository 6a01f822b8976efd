"""The Detector contract, checked on EVERY registered method by the same public function an
outside author calls (:func:`leaderboard.testing.check_detector`; adding a registry line is
enough to be covered; trained methods run their ``smoke`` budget), and that function's verdicts
on broken detectors: each broken rule fails with a message naming it."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
import torch

from baselines.base import Detector, Prediction, Train
from baselines.training import Progress, TrainingSet
from leaderboard.methods import METHODS, load_class
from leaderboard.testing import ContractError, build, check_detector, check_settings_of

NAMES = [n for n, e in METHODS.items() if e.implemented]
#: one registry entry per class: the contract is the class's (variants are presets, settings)
CLASSES = list({METHODS[n].target: n for n in reversed(NAMES)}.values())[::-1]


@pytest.mark.parametrize("name", CLASSES)
def test_contract(name: str, tmp_path: Path) -> None:
    klass = load_class(name)
    check_detector(klass, params=dict(METHODS[name].preset), require_progress=True,
                   tmp_dir=tmp_path)


@pytest.mark.parametrize("name", sorted(set(NAMES) - set(CLASSES)))
def test_every_preset_is_valid_settings_of_its_class(name: str) -> None:
    """A variant is its class with a preset: the preset's keys are settings of the class and
    its values pass the class's own checks (the contract itself ran once for the class)."""
    klass = load_class(name)
    preset = dict(METHODS[name].preset)
    settings = check_settings_of(klass, preset)
    assert preset and all(settings[k] == v for k, v in preset.items())


@pytest.mark.parametrize("name", [n for n in NAMES if METHODS[n].variant_of is None])
def test_backbone_identity_is_reported(name: str) -> None:
    klass = load_class(name)
    model = build(klass, dict(klass.budgets.get("smoke", {})))
    info = model.backbone_info()
    if klass.backbone_role is None:
        assert info is None
    else:
        assert info is not None and info.name == "mobilenet_v2" and info.sha256


class Mean(Detector):
    """A small honest detector: mean image of the training set, score = max squared error."""

    name = "mean_image"

    def __init__(self, *, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale
        self.register_buffer("mean_", None)

    def fit(self, train: Train, progress: Progress | None = None) -> Mean:
        self.register_buffer("mean_", TrainingSet.of(train).all().mean(0))
        return self

    def predict(self, images: torch.Tensor) -> Prediction:
        maps = self.scale * (images - self.mean_).pow(2).mean(1)
        return Prediction(maps.flatten(1).amax(1), maps)


def test_a_minimal_detector_passes() -> None:
    check_detector(Mean)
    model = Mean().fit(torch.rand(2, 3, 8, 8))
    assert model.is_fitted and set(model.fit_timings) == {"total"}  # supplied by the base class
    model.predict(torch.rand(1, 3, 8, 8))
    assert set(model.last_timings) == {"predict"}


class TooFewScores(Mean):
    def predict(self, images: torch.Tensor) -> Prediction:
        pred = super().predict(images)
        return Prediction(pred.scores[:1], pred.maps)


class SmallMaps(Mean):
    def predict(self, images: torch.Tensor) -> Prediction:
        pred = super().predict(images)
        return Prediction(pred.scores, pred.maps[:, ::2, ::2])


class Constant(Mean):
    """Scores every image the same: a detector that detects nothing."""

    def predict(self, images: torch.Tensor) -> Prediction:
        return Prediction(torch.ones(images.shape[0]), torch.ones(images.shape[0], *images.shape[-2:]))


class Forgetful(Mean):
    """Keeps what it learned in a plain attribute: lost by save/load."""

    def fit(self, train: Train, progress: Progress | None = None) -> Forgetful:
        self.offset = float(TrainingSet.of(train).all().mean())
        return super().fit(train, progress)

    def predict(self, images: torch.Tensor) -> Prediction:
        pred = super().predict(images)
        return Prediction(pred.scores + getattr(self, "offset", 0.0), pred.maps)


class Unstored(Mean):
    def __init__(self, *, width: int = 3) -> None:
        super().__init__()


class Lucky(Mean):
    """Scales its scores by a draw from an unseeded generator: another fit, other scores."""

    def fit(self, train: Train, progress: Progress | None = None) -> Lucky:
        gen = torch.Generator()
        gen.seed()  # from the OS: not reproducible
        self.register_buffer("factor_", 1 + torch.rand((), generator=gen))
        return super().fit(train, progress)

    def predict(self, images: torch.Tensor) -> Prediction:
        pred = super().predict(images)
        return Prediction(pred.scores * self.factor_, pred.maps)


class NoFit(Detector):
    def predict(self, images: torch.Tensor) -> Prediction:  # pragma: no cover - never called
        raise AssertionError


class BadBudgets(Mean):
    budgets: ClassVar = {"paper": {}, "fast": {"scale": 2.0}}


class WrongBudgetKey(Mean):
    budgets: ClassVar = {"paper": {}, "quick": {"sclae": 2.0}}


@pytest.mark.parametrize("klass,message", [
    (TooFewScores, "predict returned 1 score for 4 images"),
    (SmallMaps, r"maps of shape \(4, 112, 112\) for 4 images of 224x224"),
    (Constant, "planted defect"),
    (Forgetful, "after save"),
    (Lucky, "the same seed gave other scores"),
    (Unstored, "'width' of __init__ is not stored as self.width"),
    (NoFit, r"does not define fit\(self, train, progress=None\)"),
    (BadBudgets, "budget 'fast' cannot be chosen"),
    (WrongBudgetKey, "has no setting 'sclae'"),
    (int, "not a subclass of baselines.base.Detector"),
])
def test_broken_detectors_fail_by_name(klass: type, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        check_detector(klass)


def test_a_detector_without_a_name_is_named_after_its_class() -> None:
    class Anonymous(Mean):
        pass

    assert Mean.name == "mean_image"
    assert Anonymous.name == "mean_image"  # a subclass inherits its parent's name

    class Fresh(Detector):
        def fit(self, train: Train, progress: Progress | None = None) -> Fresh:
            return self

        def predict(self, images: torch.Tensor) -> Prediction:  # pragma: no cover
            raise AssertionError

    assert Fresh.name == "Fresh"


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
