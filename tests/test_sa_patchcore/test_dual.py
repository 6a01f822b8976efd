"""sa_patchcore_dual (this project's method): one backbone pass feeds both branches; the
branches alone are PatchCore and SA-PatchCore (global_score="max"); the Gaussian global score is
the Ledoit-Wolf Mahalanobis distance of the mean embedding and its map each patch's share; the
fold statistics and the fused score and map are their formulas (checked by brute force); fit
reads the training images only, once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fixtures import smooth_images

from baselines.components.aggregate import to_patches
from baselines.components.backbones import REGISTRY
from baselines.errors import DetectorError, InputError
from baselines.patchcore import PatchCore
from baselines.training import TrainingSet
from sa_patchcore import SAPatchCore
from sa_patchcore.dual import DualPatchCore
from sa_patchcore.fusion import (
    auto_folds,
    fold_of,
    fuse,
    gaussian_fit,
    gaussian_scores,
    held_out_stats,
    tail_factors,
)

BACKBONE = "mobilenet_v2"  # embedded ImageNet weights: offline and fast
SIZE = 112  # a 14 x 14 patch grid
GRID = (SIZE // 8) ** 2


def _images(n: int, seed: int) -> torch.Tensor:
    return smooth_images(n, seed, SIZE, cells=SIZE // 8, noise=0.2)


@pytest.fixture(scope="module")
def train() -> torch.Tensor:
    return _images(6, seed=0)


@pytest.fixture(scope="module")
def test_images() -> torch.Tensor:
    return _images(3, seed=1)


class Counting(TrainingSet):
    """A training set that records every image it hands out."""

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__(images, batch_size=4)
        self.seen: list[torch.Tensor] = []
        self.passes = 0

    def batches(self, batch_size: int | None = None, **kw: object):  # type: ignore[override]
        self.passes += 1
        for batch in super().batches(batch_size, **kw):
            self.seen.append(batch.clone())
            yield batch


@pytest.fixture(scope="module")
def exact(train: torch.Tensor) -> tuple[DualPatchCore, Counting]:
    """coreset_ratio=1: every bank (fold and final) is all of its patches, so brute force can
    rebuild it; three folds of two images."""
    data = Counting(train)
    return DualPatchCore(backbone=BACKBONE, coreset_ratio=1.0, folds=3).fit(data), data


def test_auto_folds_spend_the_two_fold_budget_of_400_images() -> None:
    assert [auto_folds(n) for n in (2, 3, 40, 50, 100, 200, 300, 400, 5000)] == \
        [2, 3, 40, 33, 9, 3, 2, 2, 2]
    for n in (50, 100, 200, 400):  # the largest count within the budget, never above it
        f = auto_folds(n)
        assert f * (n * (1 - 1 / f)) ** 2 <= 2 * 200**2 or f == 2
        assert f == n or (f + 1) * (n * (1 - 1 / (f + 1))) ** 2 > 2 * 200**2


def test_fold_of_is_a_balanced_seeded_split() -> None:
    fold = fold_of(10, 3, seed=5)
    assert sorted(torch.bincount(fold).tolist()) == [3, 3, 4]
    assert torch.equal(fold, fold_of(10, 3, seed=5)) and not torch.equal(fold, fold_of(10, 3, 6))


def test_fuse_is_zscore_then_max_or_mean() -> None:
    a, b = torch.tensor([1.0, 4.0, 2.0]), torch.tensor([10.0, 10.0, 30.0])
    stats = torch.tensor([[2.0, 0.5], [10.0, 5.0]])
    za, zb = (a - 2.0) / 0.5, (b - 10.0) / 5.0  # [-2, 4, 0], [0, 0, 4]
    assert torch.equal(fuse([a, b], stats), torch.tensor([0.0, 4.0, 4.0]))
    assert torch.equal(fuse([a, b], stats), torch.maximum(za, zb))
    assert torch.equal(fuse([a, b], stats, "mean"), (za + zb) / 2)
    assert torch.equal(fuse([a, b], None), torch.maximum(a, b))  # uncalibrated: raw max
    maps = [torch.rand(2, 4, 4), torch.rand(2, 4, 4)]
    assert torch.equal(fuse(maps, stats), torch.maximum((maps[0] - 2) / 0.5, (maps[1] - 10) / 5))
    held = torch.tensor([[1.0, 2.0, 3.0, 6.0, 8.0], [5.0, 5.0, 5.0, 5.0, 5.0]])
    z = held_out_stats(held, "zscore")
    assert torch.allclose(z[0], torch.tensor([4.0, torch.tensor([1.0, 2, 3, 6, 8]).std()]))
    assert z[1, 0] == 5.0 and 0 < z[1, 1] <= 5e-6  # constant branch: floored, not zero
    # quantile (the default): scale only; the 0.75 quantile of 1, 2, 3, 6, 8 is 6, of 5s is 5
    assert torch.equal(held_out_stats(held, "quantile", 0.75), torch.tensor([[0.0, 6.0],
                                                                             [0.0, 5.0]]))
    assert torch.allclose(held_out_stats(held)[0, 1], torch.tensor(6 + 0.8 * 2))  # q 0.95


def test_tail_factors_are_the_tail_bulk_ratio_formula() -> None:
    # q = 0.75. Branch 0: quartiles 1, 2, 3 -> T = (3 - 2) / (2 - 1) = 1 (its quartiles are
    # symmetric); branch 1: quartiles 2, 4, 5 -> T = 1 / 2 (upper tail half the lower one)
    held = torch.tensor([[0.0, 1.0, 2.0, 3.0, 10.0], [0.0, 2.0, 4.0, 5.0, 6.0]])
    # log T = [0, -ln 2], centred: [ln2 / 2, -ln2 / 2]; factor exp(-gamma * centred)
    for gamma in (1.0, 0.04):
        expected = torch.tensor([2 ** (-gamma / 2), 2 ** (gamma / 2)])
        assert torch.allclose(tail_factors(held, 0.75, gamma), expected)
    # the short-tailed branch 1 gets the larger scale: it counts less in the max
    assert torch.allclose(held_out_stats(held, "quantile", 0.75, tail_weight=1.0),
                          torch.tensor([[0.0, 3 / 2 ** 0.5], [0.0, 5 * 2 ** 0.5]]))
    assert torch.equal(held_out_stats(held, "quantile", 0.75, tail_weight=0.0),
                       held_out_stats(held, "quantile", 0.75))
    equal = torch.stack([held[0], held[0] * 3])  # same shape, other scale: no reweighting
    assert torch.allclose(tail_factors(equal, 0.75, 1.0), torch.ones(2))
    constant = torch.full((2, 5), 4.0)  # no spread at all: factor 1, no NaN
    assert torch.equal(tail_factors(constant, 0.95, 1.0), torch.ones(2))


def _ledoit_wolf(x: torch.Tensor) -> torch.Tensor:
    """Ledoit & Wolf (2004)'s shrunk covariance of ``(n, p)`` samples, from the paper's
    per-sample formulas: S the (biased) sample covariance, m = tr(S) / p,
    d2 = ||S - m I||_F^2 / p, b2 = min(d2, sum_k ||x_k x_k^T - S||_F^2 / (p n^2)),
    C = (b2 / d2) m I + (1 - b2 / d2) S."""
    x = x.double()
    n, p = x.shape
    xc = x - x.mean(0)
    s = xc.T @ xc / n
    m = torch.trace(s) / p
    eye = torch.eye(p, dtype=torch.float64)
    d2 = ((s - m * eye) ** 2).sum() / p
    b2 = sum(((torch.outer(v, v) - s) ** 2).sum() for v in xc) / (p * n * n)
    shrink = torch.minimum(b2, d2) / d2
    return shrink * m * eye + (1 - shrink) * s


def _precision(train_means: torch.Tensor) -> torch.Tensor:
    """C^-1, C the Ledoit-Wolf covariance plus 1e-6 of its mean variance on the diagonal
    (gaussian_fit's floor)."""
    cov = _ledoit_wolf(train_means)
    cov = cov + 1e-6 * cov.diagonal().mean() * torch.eye(cov.shape[0], dtype=torch.float64)
    return torch.linalg.inv(cov)


def _mahalanobis(train_means: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Brute force: sqrt((q - mu)^T C^-1 (q - mu))."""
    diff = queries.double() - train_means.double().mean(0)
    return torch.einsum("bi,ij,bj->b", diff, _precision(train_means), diff).sqrt()


def _shares(train_means: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """Brute force: each patch's share (e_p - mu)^T C^-1 (m - mu) / ||m - mu||_C of ``(B, P,
    D)`` patches, m their image's mean embedding."""
    mu = train_means.double().mean(0)
    dev = patches.double().mean(1) - mu
    direction = dev @ _precision(train_means) / _mahalanobis(train_means, patches.mean(1))[:, None]
    return torch.einsum("bpd,bd->bp", patches.double() - mu, direction)


def test_gaussian_fit_is_the_ledoit_wolf_mahalanobis_distance() -> None:
    gen = torch.Generator().manual_seed(3)
    for n, p in ((40, 5), (6, 12)):  # more and fewer samples than dimensions
        x = torch.randn(n, p, generator=gen) @ torch.randn(p, p, generator=gen)
        queries = torch.randn(7, p, generator=gen) * 2
        mean, whiten = gaussian_fit(x)
        assert torch.allclose(mean.double(), x.double().mean(0), atol=1e-5)
        assert torch.equal(whiten, whiten.tril())
        got = ((queries - mean) @ whiten.T).norm(dim=1).double()
        assert torch.allclose(got, _mahalanobis(x, queries), rtol=1e-4)
        patches = torch.randn(3, 10, p, generator=gen) + queries[:3, None]  # 3 images
        score, share = gaussian_scores(patches, mean, whiten)
        assert torch.allclose(score.double(), _mahalanobis(x, patches.mean(1)), rtol=1e-4)
        assert torch.allclose(share.double(), _shares(x, patches), rtol=1e-3, atol=1e-4)
        assert torch.allclose(share.mean(1), score, rtol=1e-4)  # the score is the map's mean
    # one image, or identical ones: no spread, still finite (the floor)
    mean, whiten = gaussian_fit(torch.ones(3, 4))
    score, share = gaussian_scores(torch.zeros(2, 5, 4), mean, whiten)
    assert torch.isfinite(score).all() and torch.isfinite(share).all()
    score, share = gaussian_scores(torch.ones(1, 5, 4), mean, whiten)  # at the mean: all 0
    assert score.item() == 0 and not share.any()


def test_branches_alone_are_patchcore_and_sa_patchcore(
    train: torch.Tensor, test_images: torch.Tensor
) -> None:
    batches = list(train.split(4))
    for branch, cls in (("local", PatchCore), ("global", SAPatchCore)):
        ours = DualPatchCore(backbone=BACKBONE, branches=branch, global_score="max").fit(batches)
        ref = cls(backbone=BACKBONE).fit(batches)
        assert torch.equal(ours.banks()[0], ref.memory_bank_)
        a, b = ours.predict(test_images), ref.predict(test_images)
        assert torch.allclose(a.scores, b.scores, atol=1e-5)
        assert torch.allclose(a.maps, b.maps, atol=1e-5)
    # the default Gaussian global score: SA-PatchCore's embedding, no bank
    ours = DualPatchCore(backbone=BACKBONE, branches="global").fit(batches)
    assert ours.banks() == [] and ours.global_bank_.numel() == 0
    assert ours.state_summary().memory_bank is None
    a = ours.predict(test_images)
    means, patches = _embed(ours, train)[0].mean(1), _embed(ours, test_images)[0]
    assert torch.allclose(a.scores.double(), _mahalanobis(means, patches.mean(1)), rtol=1e-4)
    grid = _shares(means, patches).float().view(len(test_images), SIZE // 8, SIZE // 8)
    assert torch.allclose(a.maps, ours._anomaly_map(grid, (SIZE, SIZE)), rtol=1e-3, atol=1e-4)


def test_one_backbone_pass_per_batch(train: torch.Tensor, test_images: torch.Tensor,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    model = DualPatchCore(backbone=BACKBONE)
    calls: list[int] = []
    forward = model.features
    monkeypatch.setattr(model, "features", lambda x: calls.append(len(x)) or forward(x))
    model.fit(TrainingSet(train, batch_size=4))  # two batches, calibration included
    assert calls == [4, 2]
    calls.clear()
    model.predict(test_images)
    assert calls == [3]


def _embed(model: DualPatchCore, images: torch.Tensor) -> list[torch.Tensor]:
    with torch.inference_mode():
        return [to_patches(e).view(len(images), GRID, -1) for e in model.embeddings(images)]


def _held_out(model: DualPatchCore, train: torch.Tensor, folds: int) -> torch.Tensor:
    """``(4, N)`` brute-force held-out image scores: each fold's largest patch distance to all
    other folds' patches (coreset ratio 1), local and global; then, under the other folds'
    mean global embeddings, the fold's Mahalanobis distances and largest patch shares."""
    fold = fold_of(len(train), folds, model.seed)
    held = torch.zeros(4, len(train))
    for branch, patches in enumerate(_embed(model, train)):  # (N, GRID, D)
        for f in range(folds):
            bank = patches[fold != f].reshape(-1, patches.shape[-1])
            nearest = torch.cdist(patches[fold == f], bank.expand(int((fold == f).sum()), -1, -1))
            held[branch, fold == f] = nearest.amin(2).amax(1)
            if branch == 1:
                means = patches[fold != f].mean(1)
                held[2, fold == f] = _mahalanobis(means, patches[fold == f].mean(1)).float()
                held[3, fold == f] = _shares(means, patches[fold == f]).amax(1).float()
    return held


def test_calibration_is_the_held_out_training_fold_statistics(
    exact: tuple[DualPatchCore, Counting], train: torch.Tensor
) -> None:
    model, _ = exact
    held = _held_out(model, train, 3)
    q95 = torch.quantile(held, 0.95, dim=1)
    # image scores: local patch max and the global Gaussian distance; map peaks: local patch
    # max and the largest patch share
    assert torch.allclose(model.calibration_, torch.tensor([[0, q95[0]], [0, q95[2]]]), rtol=1e-4)
    assert torch.allclose(model.map_calibration_, torch.tensor([[0, q95[0]], [0, q95[3]]]),
                          rtol=1e-3)
    notes = model.fit_notes["calibration"]["held_out_scores"]
    assert notes["global"]["n"] == len(train)
    assert notes["local"]["mean"] == pytest.approx(float(held[0].mean()), rel=1e-4)
    assert notes["global"]["mean"] == pytest.approx(float(held[2].mean()), rel=1e-4)
    assert notes["global_map_peak"]["mean"] == pytest.approx(float(held[3].mean()), rel=1e-3)
    # the final bank is all the local training patches (ratio 1), not a fold's; the final
    # Gaussian is all training images'
    (bank,), (local, glob) = model.banks(), _embed(model, train)
    assert bank.shape[0] == len(train) * GRID
    assert torch.allclose(bank, local.reshape(bank.shape), atol=1e-5)
    assert torch.allclose(model.gaussian_mean_, glob.mean((0, 1)), atol=1e-5)
    with_max = DualPatchCore(backbone=BACKBONE, coreset_ratio=1.0, folds=3, global_score="max")
    with_max.fit(Counting(train))  # the same batches as ``exact``
    assert torch.allclose(with_max.calibration_, torch.tensor([[0, q95[0]], [0, q95[1]]]),
                          rtol=1e-4)
    assert torch.equal(with_max.map_calibration_, with_max.calibration_)
    for bank, patches in zip(with_max.banks(), (local, glob)):
        assert torch.allclose(bank, patches.reshape(bank.shape), atol=1e-5)


def test_tail_weight_scales_each_branch_by_its_tail_factor(train: torch.Tensor) -> None:
    model = DualPatchCore(backbone=BACKBONE, coreset_ratio=1.0, folds=3, tail_weight=0.5,
                          global_score="max")
    model.fit(train)
    held = _held_out(model, train, 3)[:2]
    q95 = torch.quantile(held, 0.95, dim=1)
    lo, mid, hi = (torch.quantile(held, p, dim=1) for p in (0.05, 0.5, 0.95))
    log_t = ((hi - mid) / (mid - lo)).log()
    scale = q95 * torch.exp(-0.5 * (log_t - log_t.mean()))  # the docstring's formula
    assert torch.allclose(model.calibration_[:, 1], scale, rtol=1e-4)
    assert torch.equal(model.calibration_[:, 0], torch.zeros(2))
    factors = model.fit_notes["calibration"]["tail_factors"]
    assert factors["local"] * factors["global"] == pytest.approx(1.0)  # balance only


def test_prediction_is_the_fused_formula(
    exact: tuple[DualPatchCore, Counting], train: torch.Tensor, test_images: torch.Tensor
) -> None:
    model, _ = exact
    pred = model.predict(test_images)
    mu, sd = model.calibration_[:, 0], model.calibration_[:, 1]
    local, glob = _embed(model, test_images)
    bank = model.banks()[0].expand(len(test_images), -1, -1)
    train_means = _embed(model, train)[1].mean(1)
    nearest = torch.cdist(local, bank).amin(2)
    raw = [nearest.amax(1), _mahalanobis(train_means, glob.mean(1)).float()]
    z = [(raw[b] - mu[b]) / sd[b] for b in range(2)]
    assert torch.allclose(pred.scores, torch.maximum(*z), rtol=1e-4, atol=1e-5)
    scores, maps = model.branch_outputs(test_images)
    assert torch.allclose(torch.stack(scores), torch.stack(raw), rtol=1e-4, atol=1e-5)
    side = (SIZE // 8, SIZE // 8)
    grids = [nearest.view(-1, *side), _shares(train_means, glob).float().view(-1, *side)]
    for got, grid in zip(maps, grids):  # the same upsampling and blur of both grids
        assert torch.allclose(got, model._anomaly_map(grid, (SIZE, SIZE)), rtol=1e-3, atol=1e-4)
    mmu, msd = model.map_calibration_[:, 0], model.map_calibration_[:, 1]
    assert torch.allclose(pred.maps, torch.maximum((maps[0] - mmu[0]) / msd[0],
                                                   (maps[1] - mmu[1]) / msd[1]), atol=1e-5)
    raw_model = DualPatchCore(backbone=BACKBONE, coreset_ratio=1.0, calibrate=False)
    raw_model._prepare_for_state(model.state_dict())  # the fitted banks, no calibration
    raw_model.load_state_dict(model.state_dict())
    assert torch.allclose(raw_model.predict(test_images).scores, torch.maximum(*raw), rtol=1e-4)


def test_fit_reads_the_training_images_only_once(
    exact: tuple[DualPatchCore, Counting], train: torch.Tensor, test_images: torch.Tensor
) -> None:
    model, data = exact
    assert data.passes == 1  # features extracted once; fold banks reuse them
    assert torch.equal(torch.cat(data.seen), train)  # these images and no other
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.predict(test_images)
    model.predict(_images(2, seed=9))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # predict learns nothing
    again = DualPatchCore(backbone=BACKBONE, coreset_ratio=1.0, folds=3).fit(Counting(train))
    assert torch.equal(again.calibration_, model.calibration_)  # the state is train's function


def test_settings_are_checked(train: torch.Tensor) -> None:
    for bad, match in (({"folds": 1}, "folds must be"), ({"branches": "both+"}, "branches"),
                       ({"fusion": "sum"}, "fusion"), ({"reweight": True}, "reweight"),
                       ({"calibration": "minmax"}, "calibration"), ({"quantile": 0}, "quantile"),
                       ({"tail_weight": -0.1}, "tail_weight"),
                       ({"tail_weight": 0.04, "calibration": "zscore"}, "tail_weight"),
                       ({"global_score": "mean"}, "global_score"), ({"folds": "all"}, "folds"),
                       ({"folds": True}, "folds")):
        with pytest.raises(DetectorError, match=match):
            DualPatchCore(backbone=BACKBONE, **bad)
    with pytest.raises(InputError, match="at least folds=5"):
        DualPatchCore(backbone=BACKBONE, folds=5).fit(train[:3])
    with pytest.raises(InputError, match="at least 3 training images, or global_score='max'"):
        DualPatchCore(backbone=BACKBONE).fit(train[:2])  # a fold's Gaussian of one image
    with pytest.raises(InputError, match="at least 4 training images, or global_score='max'"):
        DualPatchCore(backbone=BACKBONE, folds=2).fit(train[:3])
    assert DualPatchCore(backbone=BACKBONE, global_score="max", folds=2).fit(train[:3]).is_fitted
    three = DualPatchCore(backbone=BACKBONE).fit(train[:3])  # auto: leave-one-out
    defaults = {k: v.default for k, v in DualPatchCore.settings().items()}
    for no_folds in ({"calibrate": False}, {"branches": "local"}):  # nothing to calibrate
        DualPatchCore.check_data({**defaults, **no_folds}, 1)
    assert three.fit_notes["calibration"]["folds"] == 3
    single = DualPatchCore(backbone=BACKBONE, branches="local", folds=5).fit(train[:3])
    assert torch.equal(single.calibration_, torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    assert single.state_summary().memory_bank == [int(3 * GRID * 0.01), 128]


def test_a_model_saved_before_global_score_loads_as_max(
    train: torch.Tensor, test_images: torch.Tensor, tmp_path: Path
) -> None:
    """Files saved before the Gaussian global score have one calibration and no Gaussian:
    they load with the image score they were saved with (the largest patch distance)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    model = DualPatchCore(backbone=BACKBONE, global_score="max").fit(train)
    path = model.save(tmp_path / "new.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = {k: v for k, v in load_file(str(path)).items()
               if k not in ("map_calibration_", "gaussian_mean_", "gaussian_whiten_")}
    config = json.loads(meta["config"])
    del config["global_score"]
    save_file(tensors, str(tmp_path / "old.safetensors"),
              metadata={**meta, "config": json.dumps(config)})
    old = DualPatchCore.load(tmp_path / "old.safetensors")
    assert old.global_score == "max"
    assert torch.equal(old.map_calibration_, model.calibration_)
    assert torch.equal(old.predict(test_images).scores, model.predict(test_images).scores)
    gaussian = DualPatchCore(backbone=BACKBONE).fit(train)  # and the default round-trips
    again = DualPatchCore.load(gaussian.save(tmp_path / "gaussian.safetensors"))
    assert again.gaussian_whiten_.shape == (128, 128)
    assert torch.equal(again.predict(test_images).scores, gaussian.predict(test_images).scores)


def test_dual_suite_plans_its_variants_and_labels_its_study_table() -> None:
    """`--suite dual` runs the default, each study variant and the two references; the study
    table names each from its settings (fabricated scores: only the labels are checked)."""
    from fixtures import planned_records

    from leaderboard.methods import suite
    from leaderboard.reporting.report import render_markdown

    names = suite("dual")
    variants = ["sa_patchcore_dual-local", "sa_patchcore_dual-global",
                "sa_patchcore_dual-uncalibrated", "sa_patchcore_dual-zscore",
                "sa_patchcore_dual-maxglobal"]
    assert names[0] == "sa_patchcore_dual" and sorted(names[1:]) == sorted(variants)
    md = render_markdown(planned_records([*names, "patchcore", "sa_patchcore"]))
    assert "## Study: sa_patchcore_dual, this project's method (not from a paper)" in md
    for label, name in (("local branch alone", "sa_patchcore_dual-local"),
                        ("global branch alone", "sa_patchcore_dual-global"),
                        ("(uncalibrated)", "sa_patchcore_dual-uncalibrated"),
                        ("0.95 quantile of auto-counted held-out training folds, max (calibrated)",
                         "sa_patchcore_dual"),
                        ("z-scored", "sa_patchcore_dual-zscore"),
                        ("SA-PatchCore's bank, largest patch distance (calibrated)",
                         "sa_patchcore_dual-maxglobal")):
        assert any(label in line and f"`{name}`" in line for line in md.splitlines()), name
    assert "minus the better branch alone" in md
    assert "minus the better of PatchCore and SA-PatchCore" in md
    assert "| sa_patchcore_dual (this project's method, not from a paper) |" in md


@pytest.mark.parametrize("backbone", [n for n in sorted(REGISTRY)
                                      if "patchcore" in REGISTRY[n].roles()])
def test_every_patchcore_backbone_feeds_both_branches(backbone: str) -> None:
    """Nothing backbone-specific: any backbone with PatchCore's two layers (random init here:
    plumbing only) gives the local bank and the global Gaussian the same width and a fused
    score per image."""
    images = smooth_images(5, 3, 64, cells=8, noise=0.2)
    model = DualPatchCore(backbone=backbone, weights="none").fit(images[:4])
    (local,) = model.banks()
    assert local.shape[0] > 0 and model.gaussian_whiten_.shape == (local.shape[1],) * 2
    pred = model.predict(images[4:])
    assert pred.scores.shape == (1,) and pred.maps.shape == (1, 64, 64)
    assert torch.isfinite(pred.scores).all() and model.calibration_[:, 1].gt(0).all()
