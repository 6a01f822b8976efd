"""CS-Flow, piece by piece, against literal formulas and a transcription of the official code
(marco-rudolph/cs-flow, freia_funcs.py / utils.py / train.py) on tiny inputs: the coupling and
its cross-scale subnet, the permutations, the soft clamp, invertibility, the log-determinant
against autograd's Jacobian, the loss, the score and the map; then training lowers the loss,
is deterministic per seed and never sees more than the training set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixtures import smooth_images
from torch import nn

from baselines.components.flow import (
    CrossScaleFlow,
    ParallelCoupling,
    flow_loss,
    image_scores,
    log_e,
    map_sizes,
    official_permutations,
    score_map,
)
from baselines.cs_flow import CSFlow
from baselines.device import native_bf16
from baselines.errors import DetectorError, InputError
from baselines.training import TrainingSet

C, SIZES = 6, (4, 2, 1)  # channels; three scales


def _maps(batch: int = 2, seed: int = 0, channels: int = C) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, channels, s, s, generator=g) for s in SIZES]


def _randomise(module: nn.Module, seed: int = 1, scale: float = 0.3) -> None:
    """Non-zero gammas and random weights: a flow that is not the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))


# -- a literal transcription of the official modules (names and order as in freia_funcs.py) --
class OfficialCrossConvolutions(nn.Module):
    def __init__(self, in_channels: int, channels: int, channels_hidden: int, kernel_size: int):
        super().__init__()
        pad = kernel_size // 2
        self.gamma0, self.gamma1, self.gamma2 = (nn.Parameter(torch.zeros(1)) for _ in range(3))
        mk = lambda a, b, stride=1: nn.Conv2d(a, b, kernel_size, stride, pad)
        self.conv_scale0_0, self.conv_scale1_0, self.conv_scale2_0 = (
            mk(in_channels, channels_hidden) for _ in range(3))
        self.conv_scale0_1, self.conv_scale1_1, self.conv_scale2_1 = (
            mk(channels_hidden, channels) for _ in range(3))
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.up_conv10 = mk(channels_hidden, channels)
        self.up_conv21 = mk(channels_hidden, channels)
        self.down_conv01 = mk(channels_hidden, channels, 2)
        self.down_conv12 = mk(channels_hidden, channels, 2)
        self.lr = nn.LeakyReLU(0.1)

    def forward(self, x0, x1, x2):
        out0, out1, out2 = self.conv_scale0_0(x0), self.conv_scale1_0(x1), self.conv_scale2_0(x2)
        y0, y1, y2 = self.lr(out0), self.lr(out1), self.lr(out2)
        out0, out1, out2 = self.conv_scale0_1(y0), self.conv_scale1_1(y1), self.conv_scale2_1(y2)
        y1_up = self.up_conv10(self.upsample(y1))
        y2_up = self.up_conv21(self.upsample(y2))
        y0_down = self.down_conv01(y0)
        y1_down = self.down_conv12(y1)
        out0 = out0 + y1_up
        out1 = out1 + y0_down + y2_up
        out2 = out2 + y1_down
        return out0 * self.gamma0, out1 * self.gamma1, out2 * self.gamma2


def official_coupling(x, s1, s2, clamp):
    len1 = x[0].shape[1] // 2
    len2 = x[0].shape[1] - len1
    e = lambda s: torch.exp(clamp * 0.636 * torch.atan(s / clamp))
    log_e_ = lambda s: clamp * 0.636 * torch.atan(s / clamp)
    x01, x02 = x[0].narrow(1, 0, len1), x[0].narrow(1, len1, len2)
    x11, x12 = x[1].narrow(1, 0, len1), x[1].narrow(1, len1, len2)
    x21, x22 = x[2].narrow(1, 0, len1), x[2].narrow(1, len1, len2)
    r02, r12, r22 = s2(x02, x12, x22)
    s02, t02 = r02[:, :len1], r02[:, len1:]
    s12, t12 = r12[:, :len1], r12[:, len1:]
    s22, t22 = r22[:, :len1], r22[:, len1:]
    y01, y11, y21 = e(s02) * x01 + t02, e(s12) * x11 + t12, e(s22) * x21 + t22
    r01, r11, r21 = s1(y01, y11, y21)
    s01, t01 = r01[:, :len2], r01[:, len2:]
    s11, t11 = r11[:, :len2], r11[:, len2:]
    s21, t21 = r21[:, :len2], r21[:, len2:]
    y02, y12, y22 = e(s01) * x02 + t01, e(s11) * x12 + t11, e(s21) * x22 + t21
    y = [torch.clamp(torch.cat(p, 1), -1e6, 1e6) for p in ((y01, y02), (y11, y12), (y21, y22))]
    jac = [torch.sum(log_e_(a), dim=(1, 2, 3)) + torch.sum(log_e_(b), dim=(1, 2, 3))
           for a, b in ((s01, s02), (s11, s12), (s21, s22))]
    return y, jac


def _load_official(ours: ParallelCoupling, hidden: int, kernel: int) -> tuple[nn.Module, nn.Module]:
    """The official subnets with our weights, renamed."""
    out = []
    for sub, cin, cout in ((ours.s1, ours.len1, 2 * ours.len2), (ours.s2, ours.len2, 2 * ours.len1)):
        off = OfficialCrossConvolutions(cin, cout, hidden, kernel)
        with torch.no_grad():
            for i in range(3):
                getattr(off, f"conv_scale{i}_0").load_state_dict(sub.conv_in[i].state_dict())
                getattr(off, f"conv_scale{i}_1").load_state_dict(sub.conv_out[i].state_dict())
                getattr(off, f"gamma{i}").copy_(sub.gamma[i : i + 1])
            for name, mine in (("up_conv10", sub.up_10), ("up_conv21", sub.up_21),
                               ("down_conv01", sub.down_01), ("down_conv12", sub.down_12)):
                getattr(off, name).load_state_dict(mine.state_dict())
        out.append(off)
    return out[0], out[1]


@pytest.mark.parametrize("kernel,channels", [(3, 6), (5, 7)])  # odd channel counts split unevenly
def test_coupling_equals_the_official_transcription(kernel: int, channels: int) -> None:
    ours = ParallelCoupling(channels, hidden=8, kernel=kernel, clamp=3.0)
    _randomise(ours)
    s1, s2 = _load_official(ours, 8, kernel)
    x = _maps(channels=channels)
    ys, log_det = ours(x)
    want, jac = official_coupling(x, s1, s2, 3.0)
    for a, b in zip(ys, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(log_det, sum(jac), rtol=0, atol=1e-5)  # per sample, (B,)
    assert log_det.shape == (2,) and log_det.abs().min() > 0


def test_coupling_inverts() -> None:
    flow = CrossScaleFlow(C, blocks=4, kernels=(3, 3, 3, 5), hidden=8, clamp=3.0)
    _randomise(flow, scale=0.1)  # far from the identity (|z| up to ~4 |x|), well conditioned
    x = _maps()
    z, _ = flow(x)
    assert max((a - b).abs().max() for a, b in zip(z, x)) > 0.5
    back = flow.inverse(z)
    for a, b in zip(back, x):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_log_det_is_the_jacobian_log_determinant() -> None:
    flow = CrossScaleFlow(4, blocks=2, kernels=(3, 5), hidden=6, clamp=3.0).double()
    _randomise(flow)
    flow = flow.double()
    shapes = [(1, 4, s, s) for s in SIZES]
    sizes = [int(np.prod(s)) for s in shapes]
    x = torch.randn(sum(sizes), dtype=torch.float64)

    def f(v: torch.Tensor) -> torch.Tensor:
        parts = [p.view(s) for p, s in zip(v.split(sizes), shapes)]
        z, _ = flow(parts)
        return torch.cat([m.reshape(-1) for m in z])

    jac = torch.autograd.functional.jacobian(f, x)  # (84, 84)
    sign, logabs = torch.linalg.slogdet(jac)
    _, log_det = flow([p.view(s) for p, s in zip(x.split(sizes), shapes)])
    assert sign != 0  # the permutations may flip the sign; the flow's log-det is log |det J|
    torch.testing.assert_close(log_det[0], logabs, rtol=0, atol=1e-8)


def test_soft_clamp_and_permutations_are_official() -> None:
    s = torch.linspace(-50, 50, 101)
    torch.testing.assert_close(log_e(s, 3.0), 3.0 * 0.636 * torch.atan(s / 3.0))
    assert log_e(s, 3.0).abs().max() < 3.0  # bounded at about +-clamp
    torch.testing.assert_close(log_e(s, 0.0), s)
    np.random.seed(2)  # the official ParallelPermute(seed=2): one global seed, three draws
    want = [np.random.permutation(10) for _ in range(3)]
    got = official_permutations(2, 10)
    assert all((a == b).all() for a, b in zip(got, want))
    flow = CrossScaleFlow(10, blocks=3, kernels=(3, 3, 5), hidden=4)
    assert (flow.perm_2.numpy() == np.stack(want)).all()


def test_loss_score_and_map_are_the_official_formulas() -> None:
    z = _maps(batch=3)
    log_det = torch.tensor([1.0, -2.0, 0.5])
    flat = np.concatenate([m.reshape(3, -1).numpy() for m in z], axis=1)
    want = np.mean(0.5 * (flat**2).sum(1) - log_det.numpy()) / flat.shape[1]  # utils.get_loss
    assert float(flow_loss(z, log_det)) == pytest.approx(want, rel=1e-6)
    concat = np.concatenate([m.reshape(3, C, -1).numpy() for m in z], axis=2)[..., None]
    score = np.mean(concat**2 / 2, axis=(1, 2))[:, 0]  # train.py: mean over channels and positions
    np.testing.assert_allclose(image_scores(z).numpy(), score, rtol=1e-6)
    maps = score_map(z, (16, 16))
    want_map = F.interpolate(torch.mean(z[0] ** 2, dim=1)[:, None], size=(16, 16),
                             mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(maps, want_map)
    assert map_sizes(768) == [24, 12, 6] and map_sizes(256) == [8, 4, 2]


def test_flow_starts_as_the_identity() -> None:
    flow = CrossScaleFlow(C, blocks=2, kernels=(3, 5), hidden=8)  # gammas are 0 at init
    x = _maps()
    z, log_det = flow(x)
    perm = [p0[p1] for p0, p1 in zip(flow.perm_0, flow.perm_1)]  # two permutations in a row
    for a, b, p in zip(z, x, perm):
        torch.testing.assert_close(a, b[:, p])
    assert torch.equal(log_det, torch.zeros(2))


def _images(n: int, seed: int, size: int = 128) -> torch.Tensor:
    return smooth_images(n, seed, size, cells=8)


def _model(**kw: object) -> CSFlow:
    settings = {"backbone": "mobilenet_v2", "input_size": 128, "hidden": 16, "epochs": 6,
                "batch_size": 4, **kw}
    return CSFlow(**settings)


def test_training_lowers_the_loss_and_is_seeded() -> None:
    train = TrainingSet(_images(8, 0), batch_size=4, seed=0)
    a = _model().fit(train)
    losses = [e["loss"] for e in a.training_log]
    assert len(losses) == 6 and losses[-1] < losses[0]
    test = _images(3, 1)
    b = _model().fit(train)
    assert torch.equal(a.predict(test).scores, b.predict(test).scores)  # same seed, same scores
    c = _model(seed=1).fit(train)
    assert not torch.equal(a.predict(test).scores, c.predict(test).scores)


def test_features_are_extracted_once_per_image() -> None:
    model = _model(epochs=3)
    seen = []
    model.extractor.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[-1]))
    model.fit(TrainingSet(_images(8, 0), batch_size=4))
    assert sorted(seen) == [32] * 2 + [64] * 2 + [128] * 2  # 2 batches x 3 scales, not x epochs


def test_bf16_runs_the_subnet_convolutions_only_in_bf16() -> None:
    """Under bf16 autocast the convolutions run in bfloat16, but what the coupling computes
    from them (clamp, exp, affine step, log-det) stays float32 and near the fp32 values."""
    flow = CrossScaleFlow(C, blocks=4, kernels=(3, 3, 3, 5), hidden=8, clamp=3.0)
    _randomise(flow, scale=0.1)
    dtypes = []
    flow.couplings[0].s2.conv_in[0].register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    x = _maps()
    z32, ld32 = flow(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z16, ld16 = flow(x)
    assert dtypes == [torch.float32, torch.bfloat16]
    assert all(z.dtype == torch.float32 for z in z16) and ld16.dtype == torch.float32
    for a, b in zip(z16, z32):
        torch.testing.assert_close(a, b, rtol=0.05, atol=0.05)
    torch.testing.assert_close(ld16, ld32, rtol=0.05, atol=0.05)


def test_flow_precision_bf16_trains_scores_and_says_so() -> None:
    train = TrainingSet(_images(8, 0), batch_size=4, seed=0)
    test = _images(3, 1)
    fp32 = _model(epochs=2).fit(train)
    bf16 = _model(epochs=2, flow_precision="bf16").fit(train)
    assert (fp32.fit_notes["flow_precision"], bf16.fit_notes["flow_precision"]) == ("fp32", "bf16")
    assert [e["loss"] for e in bf16.training_log] == pytest.approx(
        [e["loss"] for e in fp32.training_log], rel=0.05)
    a, b = fp32.predict(test).scores, bf16.predict(test).scores
    assert b.dtype == torch.float32 and torch.isfinite(b).all()
    torch.testing.assert_close(b, a, rtol=0.05, atol=1e-3)
    auto = _model(epochs=1, flow_precision="auto")
    assert auto.flow_bf16 == native_bf16(torch.device("cpu"))
    assert CSFlow.budgets["quick"]["flow_precision"] == "auto"
    assert "flow_precision" not in CSFlow.budgets["paper"]  # the official fp32


def test_training_verdict_flags_a_loss_still_falling() -> None:
    model = _model()
    model.training_log = [{"epoch": e + 1, "loss": v} for e, v in enumerate([9.0, 5.0, 3.0])]
    verdict = model.training_verdict()  # the last epoch took 2 of the whole drop of 6: 33%
    assert verdict is not None and "5.000 -> 3.000" in verdict and "33%" in verdict
    model.training_log[-1]["loss"] = 4.9  # flattened: 0.1 of 4.1
    assert model.training_verdict() is None
    model.training_log = model.training_log[:2]  # too short to tell
    assert model.training_verdict() is None
    with pytest.raises(InputError, match="got no images"):
        _model().fit(TrainingSet(torch.zeros(0, 3, 128, 128)))
    assert not native_bf16(torch.device("meta"))  # only a CPU's oneDNN runs it natively


def test_settings_are_checked() -> None:
    for bad in ({"input_size": 200}, {"kernel_sizes": (3, 3, 3)}, {"kernel_sizes": (3, 3, 3, 4)},
                {"epochs": 0}, {"flow_precision": "fp16"}, {"lr": 0}, {"clamp": -1},
                {"adam_eps": 0}, {"weight_decay": -1e-5}):
        with pytest.raises(DetectorError):
            CSFlow.validate({**{k: s.default for k, s in CSFlow.settings().items()}, **bad})


@pytest.mark.parametrize("name,channels", [("efficientnet_b5", 304), ("efficientnet_lite2", 208)])
def test_feature_maps_at_768_are_the_official_sizes(name: str, channels: int) -> None:
    model = CSFlow(backbone=name, weights="none", hidden=4, epochs=1)
    assert model.channels == channels
    maps = model.multiscale_features(torch.zeros(1, 3, 768, 768))
    assert [tuple(m.shape[1:]) for m in maps] == [(channels, 24, 24), (channels, 12, 12),
                                                  (channels, 6, 6)]


def test_paper_budget_costs_what_the_reference_counts() -> None:
    params = {k: s.default for k, s in CSFlow.settings().items()}
    # 400 CAD-SD images x 240 epochs x 395 GFLOP (../shared/reference/csflow_patchsvdd.md, 3.1)
    assert CSFlow.training_flops(params, 400) == pytest.approx(37.9e15, rel=0.01)
