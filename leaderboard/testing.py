"""The public contract check of a detector, for method authors' own test suites (as
scikit-learn's ``check_estimator``) and for this project's tests of every registered method::

    from leaderboard.testing import check_detector

    def test_my_detector_keeps_the_contract():
        check_detector(MyDetector)

It builds the class as ``bench run`` does (its defaults, the ``smoke`` budget where it declares
budgets, a seed), and checks, in order: the class (a Detector subclass with ``fit`` and
``predict``, a usable name), its settings (keyword arguments with defaults, stored as attributes,
JSON-ready, ``get_params`` round trip), its budgets and input spec, ``predict`` refused before
``fit``, ``fit`` on a small generated set of normal images, ``predict``'s scores and maps (one
score per image, maps at the input size, floating point, finite), a planted defect scoring above
the normal images, determinism (same call, batch of one, same seed), the state summary, and a
``save``/``load`` round trip through safetensors that reproduces scores and maps exactly. The
first broken rule raises :class:`ContractError` with a message that names it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from baselines.base import Detector, Prediction, StateSummary
from baselines.errors import DetectorError, NotFittedError
from baselines.preprocess import InputSpec
from baselines.settings import RUN_SETTINGS, check_settings, settings_of
from baselines.training import Progress, TrainingSet, seed_everything

#: budget names ``bench run --budget`` can choose (``auto`` picks paper or quick)
BUDGET_NAMES = ("paper", "quick", "smoke")


class ContractError(AssertionError):
    """A detector breaks the contract; the message says which rule and how to fix it."""


def striped_images(n: int, seed: int, size: int) -> torch.Tensor:
    """``(n, 3, size, size)`` in [0, 1]: the same diagonal stripes plus 10% seeded noise in each
    image, so the images are alike (normal) and a painted-in square stands out."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = 0.5 + 0.3 * torch.sin(12 * (xx + yy))
    noise = 0.1 * torch.rand(n, 3, size, size, generator=g)
    return (base.expand(n, 3, size, size) + noise).clamp(0, 1)


def with_defect(size: int, normal: int = 3) -> torch.Tensor:
    """``normal`` normal images and, last, one with a dark square over its middle."""
    x = striped_images(normal + 1, 1, size)
    lo, hi = round(size * 0.36), round(size * 0.62)
    x[-1, :, lo:hi, lo:hi] = 0.0
    return x


class _Recorder(Progress):
    def __init__(self) -> None:
        self.stages: list[str] = []
        self.steps = 0

    def stage(self, name: str, total: int) -> None:
        self.stages.append(name)

    def advance(self, steps: int = 1, **metrics: float) -> None:
        self.steps += steps


def _fail(cls: type, text: str) -> ContractError:
    return ContractError(f"{getattr(cls, '__name__', cls)}: {text}")


def check_class(cls: Any) -> type[Detector]:
    """The class itself: a Detector subclass defining ``fit`` and ``predict``, named."""
    from leaderboard.errors import UsageError
    from leaderboard.methods.outside import check_class as usable
    from leaderboard.methods.outside import check_name

    try:
        usable(cls, getattr(cls, "__name__", repr(cls)))
        check_name(cls.name, f"{cls.__name__}", {})
    except UsageError as err:
        raise ContractError(str(err)) from None
    return cls


def check_settings_of(cls: type[Detector], params: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword settings with defaults; budgets and ``params`` name real settings with values
    of their types; ``validate`` and ``input_for`` accept the defaults and every budget.
    Returns the settings the check builds the detector with."""
    settings = settings_of(cls)
    for name, s in settings.items():
        if s.default is None and name not in params and name not in RUN_SETTINGS and \
                _has_no_default(cls, name):
            raise _fail(cls, f"setting {name!r} of __init__ has no default; the harness builds "
                             "a method from its defaults (give it the paper's value)")
    defaults = {k: s.default for k, s in settings.items() if k not in RUN_SETTINGS}
    if not isinstance(cls.budgets, Mapping):
        raise _fail(cls, f"budgets must be a mapping of name -> setting overrides, got "
                         f"{type(cls.budgets).__name__}")
    unknown = [b for b in cls.budgets if b not in BUDGET_NAMES]
    if unknown:
        raise _fail(cls, f"budget {unknown[0]!r} cannot be chosen with --budget; name budgets "
                         f"{', '.join(BUDGET_NAMES)}")
    if cls.budgets and "quick" not in cls.budgets:
        raise _fail(cls, "a method with budgets needs a 'quick' one (the default on a CPU)")
    variants = {"the defaults": {}, **{f"budget {b!r}": dict(o) for b, o in cls.budgets.items()},
                "params": dict(params)}
    for what, overrides in variants.items():
        try:
            checked = check_settings(cls, overrides)
            full = {**defaults, **checked}
            cls.validate(full)
            spec = cls.input_for(full)
            flops = cls.training_flops(full, 4)
        except DetectorError as err:
            raise _fail(cls, f"{what}: {err}") from None
        if not isinstance(spec, InputSpec):
            raise _fail(cls, f"input_for() with {what} returned {type(spec).__name__}, not a "
                             "baselines.preprocess.InputSpec")
        if flops is not None and not (isinstance(flops, (int, float)) and flops > 0):
            raise _fail(cls, f"training_flops() with {what} returned {flops!r}; return FLOPs "
                             "(> 0) or None")
    budget = next((b for b in ("smoke", "quick") if b in cls.budgets), None)
    return {**(dict(cls.budgets[budget]) if budget else {}), **params}


def _has_no_default(cls: type, name: str) -> bool:
    import inspect

    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None and name in inspect.signature(init).parameters:
            return inspect.signature(init).parameters[name].default is inspect.Parameter.empty
    return False


def build(cls: type[Detector], params: Mapping[str, Any], seed: int = 0,
          backbone: str = "mobilenet_v2", weights: str = "imagenet") -> Detector:
    """The detector as a ``bench run`` cell builds it (after seeding every generator)."""
    accepted = cls.settings()
    run: dict[str, Any] = {"device": "cpu", "seed": seed}
    if cls.backbone_role is not None:
        run.update(backbone=backbone, weights=weights)
    seed_everything(seed)
    try:
        return cls(**{k: v for k, v in run.items() if k in accepted}, **params)
    except AttributeError as err:
        if "before Module.__init__() call" in str(err):
            raise _fail(cls, "__init__ must call super().__init__() before it assigns "
                             "modules, parameters or buffers") from None
        raise


def check_params(model: Detector) -> None:
    """Settings stored as attributes of the same name, JSON-ready, rebuilt identically."""
    cls = type(model)
    for name in cls.settings():
        if not hasattr(model, name):
            raise _fail(cls, f"setting {name!r} of __init__ is not stored as self.{name} (the "
                             "harness reads settings back with get_params())")
    params = model.get_params()
    try:
        json.dumps(params)
    except TypeError as err:
        raise _fail(cls, f"get_params() is not JSON-serialisable ({err}); settings must be "
                         "numbers, strings, booleans, None or lists of them") from None
    again = cls(**params).get_params()
    if again != params:
        diff = sorted(k for k in params if again.get(k) != params[k])
        raise _fail(cls, f"{cls.__name__}(**get_params()) has other settings ({', '.join(diff)}): "
                         "__init__ must store each argument unchanged")


def check_prediction(cls: type, pred: Any, n: int, size: int, what: str = "predict") -> None:
    """One finite floating-point score per image and one map per image at the input size."""
    if not isinstance(pred, Prediction):
        raise _fail(cls, f"{what} returned {type(pred).__name__}; return "
                         "baselines.base.Prediction(scores, maps)")
    scores, maps = pred.scores, pred.maps
    for label, t in (("scores", scores), ("maps", maps)):
        if not isinstance(t, torch.Tensor):
            raise _fail(cls, f"{what} returned {label} of type {type(t).__name__}, not a "
                             "torch.Tensor")
        if not t.is_floating_point():
            raise _fail(cls, f"{what} returned {label} of dtype {t.dtype}; use floating point")
    if scores.ndim != 1 or scores.shape[0] != n:
        count = scores.shape[0] if scores.ndim >= 1 else 1
        raise _fail(cls, f"{what} returned {count} score{'s' * (count != 1)} for {n} images "
                         f"(scores of shape {tuple(scores.shape)}); return one score per "
                         f"image, shape ({n},)")
    if tuple(maps.shape) != (n, size, size):
        raise _fail(cls, f"{what} returned maps of shape {tuple(maps.shape)} for {n} images of "
                         f"{size}x{size}; return ({n}, {size}, {size}): one map per image at "
                         "the input size")
    if not (torch.isfinite(scores).all() and torch.isfinite(maps).all()):
        raise _fail(cls, f"{what} returned NaN or infinite values")


def check_detector(cls: type[Detector], *, params: Mapping[str, Any] | None = None,
                   backbone: str = "mobilenet_v2", weights: str = "imagenet",
                   require_progress: bool = False, tmp_dir: str | Path | None = None) -> None:
    """Check that ``cls`` keeps the Detector contract (see the module docstring); raise
    :class:`ContractError` naming the first broken rule.

    ``params``: settings on top of the defaults (and of the ``smoke`` budget, else ``quick``,
    where the class declares budgets). ``backbone``/``weights``: what a method that taps a
    backbone (``backbone_role``) is built with (the embedded MobileNetV2 runs offline).
    ``require_progress``: ``fit`` must report stages and steps (this project's methods do).
    """
    cls = check_class(cls)
    settings = check_settings_of(cls, dict(params or {}))
    model = build(cls, settings, 0, backbone, weights)
    check_params(model)
    size = model.input_spec.size
    test_images = with_defect(size)
    n = test_images.shape[0]
    try:
        model.predict(test_images)
    except NotFittedError:
        pass
    else:
        raise _fail(cls, "predict() before fit() must raise NotFittedError")

    def fit(m: Detector) -> Detector:
        progress = _Recorder()
        train = TrainingSet(striped_images(4, 0, size), batch_size=2, seed=0)
        out = m.fit(train, progress)
        if out is not m:
            raise _fail(cls, f"fit() returned {type(out).__name__}; return self")
        if require_progress and not (progress.stages and progress.steps > 0):
            raise _fail(cls, "fit() reported no progress: call progress.stage(name, total) "
                             "and progress.advance()")
        if not isinstance(m.fit_timings, dict) or not isinstance(m.training_log, list):
            raise _fail(cls, "fit_timings must stay a dict and training_log a list")
        return m

    fit(model)
    pred = model.predict(test_images)
    check_prediction(cls, pred, n, size)
    if float(pred.scores[-1]) <= float(pred.scores[:-1].max()):
        raise _fail(cls, f"the image with a planted defect scored {float(pred.scores[-1]):.4g}, "
                         f"not above the normal images (up to {float(pred.scores[:-1].max()):.4g});"
                         " higher scores must mean more anomalous")
    if not torch.equal(model.predict(test_images).scores, pred.scores):
        raise _fail(cls, "predict() gave other scores for the same images the second time")
    single = model.predict(test_images[:1])
    check_prediction(cls, single, 1, size, "predict on one image")
    if not torch.allclose(single.scores, pred.scores[:1], rtol=1e-4, atol=1e-5):
        raise _fail(cls, f"an image scores {float(single.scores[0]):.6g} alone but "
                         f"{float(pred.scores[0]):.6g} in a batch: scores must not depend on "
                         "the other images of the batch")
    again = fit(build(cls, settings, 0, backbone, weights)).predict(test_images)
    if not torch.allclose(again.scores, pred.scores, rtol=1e-5, atol=1e-6):
        raise _fail(cls, "the same seed gave other scores (fitted twice with seed 0): draw "
                         "random numbers from generators seeded with self.seed")
    summary = model.state_summary()
    if not isinstance(summary, StateSummary):
        raise _fail(cls, f"state_summary() returned {type(summary).__name__}, not StateSummary")
    with tempfile.TemporaryDirectory(dir=tmp_dir) as tmp:
        path = model.save(Path(tmp) / "model.safetensors")
        try:
            loaded = cls.load(path)
        except DetectorError as err:
            raise _fail(cls, f"a saved model does not load back ({err}); keep learned tensors "
                             "in buffers (self.register_buffer) or parameters") from None
        back = loaded.predict(test_images)
    if not (torch.equal(back.scores, pred.scores) and torch.equal(back.maps, pred.maps)):
        raise _fail(cls, "after save() and load() the scores or maps differ: everything fit() "
                         "learns must live in buffers (self.register_buffer) or parameters")


__all__ = ["ContractError", "check_detector", "striped_images", "with_defect"]
