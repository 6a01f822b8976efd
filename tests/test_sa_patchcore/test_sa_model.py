"""Golden tests: SA-PatchCore's attention is the official loop (per channel, unscaled) and
eq. 4 is softmax(XX^T/sqrt(C))X; the subclasses change nothing but the layer3 branch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from baselines.components.aggregate import local_avg, local_max_with_sources
from baselines.patchcore import PatchCore
from sa_patchcore import SAPatchCore, SAPatchCoreEq4
from sa_patchcore.attention import channel_attention, token_attention


def _official_loop(feature: torch.Tensor) -> torch.Tensor:
    """Literal transcription of run.py's attention on an already max-pooled map (B, C, H, W)."""
    b, c, h, w = feature.shape
    flat = torch.flatten(feature, 2, 3)
    q = torch.reshape(flat, (b, c, h * w, 1))  # (B, C, HW, 1)
    k = torch.reshape(flat, (b, c, 1, h * w))  # (B, C, 1, HW)
    v = torch.reshape(flat, (b, c, h * w, 1))
    out = torch.nn.functional.softmax(torch.matmul(q, k), dim=-1)  # no scaling
    return torch.reshape(torch.matmul(out, v), (b, c, w, w))


def local_max(x: torch.Tensor) -> torch.Tensor:
    """The official ``nn.MaxPool2d(3, 1, 1)``."""
    return torch.nn.MaxPool2d(3, 1, 1)(x)


def _features(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    # ReLU features of realistic size: products x_i * x_j reach ~50, so softmax is peaked
    return torch.relu(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2.5)


def test_channel_attention_is_the_official_loop() -> None:
    x = local_max(_features((2, 64, 14, 14), seed=0))
    ours, ref = channel_attention(x), _official_loop(x)
    assert torch.allclose(ours, ref, atol=1e-5, rtol=1e-5)
    # it is not the identity, and not eq. 4: the golden test can tell them apart
    assert not torch.allclose(ours, x, atol=1e-2)
    assert not torch.allclose(ours, token_attention(x), atol=1e-2)
    # channels_last maps (the backbone's format) give the same result
    cl = x.contiguous(memory_format=torch.channels_last)
    assert torch.allclose(channel_attention(cl), ref, atol=1e-5, rtol=1e-5)
    assert torch.allclose(token_attention(cl), token_attention(x), atol=1e-5)


def test_deduplicated_attention_is_the_official_loop() -> None:
    """The fast path (each distinct value once, exponent floor) changes nothing measurable."""
    gen = torch.Generator().manual_seed(4)
    relu = _features((3, 48, 14, 14), seed=5)  # exact zeros from many different sources
    signed = torch.randn(2, 40, 14, 14, generator=gen) * 4  # negative values: the row-min branch
    huge = torch.relu(torch.randn(1, 16, 14, 14, generator=gen)) * 20  # exponents far below -87
    for raw in (relu, signed, huge):
        pooled, sources = local_max_with_sources(raw)
        ref = _official_loop(pooled)
        assert torch.allclose(channel_attention(pooled, sources), ref, atol=1e-5, rtol=1e-5)
        cl = [t.contiguous(memory_format=torch.channels_last) for t in (pooled, sources)]
        assert torch.allclose(channel_attention(*cl), ref, atol=1e-5, rtol=1e-5)
        # any labelling that only groups equal values is valid, including none at all
        distinct = torch.arange(196).expand_as(pooled.flatten(2)).reshape(pooled.shape)
        assert torch.allclose(channel_attention(pooled, distinct), ref, atol=1e-5, rtol=1e-5)
    # max pooling really repeats values (each distinct one is computed once): well under 196
    rows = local_max_with_sources(relu)[1].flatten(0, 1).flatten(1)
    assert max(len(row.unique()) for row in rows) < 150
    with pytest.raises(ValueError, match="sources has shape"):
        channel_attention(pooled, sources[:, :1])


def test_eq4_token_attention_is_its_formula() -> None:
    x = _features((2, 32, 7, 7), seed=1)
    tokens = x.flatten(2).transpose(1, 2)  # (B, HW, C)
    weights = torch.softmax(tokens @ tokens.transpose(1, 2) / 32**0.5, dim=-1)
    expected = (weights @ tokens).transpose(1, 2).reshape(x.shape)
    assert torch.allclose(token_attention(x), expected, atol=1e-5, rtol=1e-5)


def _hooks(cls: type, pooling: str = "max", layers: str = "layer3") -> PatchCore:
    """A detector whose aggregation hooks can run without a backbone (they are pure)."""
    model = cls.__new__(cls)
    model.sa_pooling, model.sa_layers = pooling, layers
    return model


def test_hooks_change_only_the_layer3_branch() -> None:
    layer2, layer3 = _features((1, 8, 28, 28), seed=2), _features((1, 16, 14, 14), seed=3)
    models = [_hooks(cls) for cls in (PatchCore, SAPatchCore, SAPatchCoreEq4)]
    for model in models:  # the hook is pure: no backbone needed to test it
        assert torch.equal(model.aggregate(0, layer2), local_avg(layer2))
    assert torch.equal(models[0].aggregate(1, layer3), local_avg(layer3))
    sa = models[1].aggregate(1, layer3)
    assert torch.equal(sa, channel_attention(*local_max_with_sources(layer3)))
    assert torch.allclose(sa, _official_loop(local_max(layer3)), atol=1e-5, rtol=1e-5)
    assert torch.equal(models[2].aggregate(1, layer3), token_attention(local_max(layer3)))


def test_sa_patchcore_fits_and_round_trips(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.nn.functional.interpolate(torch.rand(4, 3, 14, 14, generator=gen), size=112)
    model = SAPatchCore(backbone="mobilenet_v2").fit([images[:3]])
    assert model.name == "sa_patchcore" and model.state_summary().memory_bank == [5, 128]
    pred = model.predict(images[3:])
    loaded = SAPatchCore.load(model.save(tmp_path / "sa.safetensors"))
    assert type(loaded) is SAPatchCore
    assert torch.equal(loaded.predict(images[3:]).scores, pred.scores)


@pytest.mark.parametrize("pooling,pool", [("avg", local_avg), ("none", lambda x: x),
                                          ("max", local_max)])
def test_table8_pooling_variants_are_their_formulas(pooling: str, pool: object) -> None:
    layer3 = _features((2, 16, 14, 14), seed=6)
    channel = _hooks(SAPatchCore, pooling).aggregate(1, layer3)
    assert torch.allclose(channel, _official_loop(pool(layer3)), atol=1e-5, rtol=1e-5)
    tokens = _hooks(SAPatchCoreEq4, pooling).aggregate(1, layer3)
    assert torch.allclose(tokens, token_attention(pool(layer3)), atol=1e-5, rtol=1e-5)
    if pooling != "max":  # the variants really differ from the paper's structure
        assert not torch.allclose(channel, _hooks(SAPatchCore).aggregate(1, layer3), atol=1e-3)


def test_table7_layer2_and_layer3_attended_after_the_concatenation() -> None:
    layer2, layer3 = _features((2, 8, 28, 28), seed=7), _features((2, 16, 14, 14), seed=8)
    concat = torch.cat([local_avg(layer2),
                        torch.nn.functional.interpolate(local_avg(layer3), size=(28, 28))], dim=1)
    for cls, attention in ((SAPatchCore, _official_loop), (SAPatchCoreEq4, token_attention)):
        model = _hooks(cls, "avg", "layer2+layer3")
        got = model.combine([model.aggregate(i, f) for i, f in enumerate((layer2, layer3))])
        assert got.shape == (2, 24, 28, 28)
        assert torch.allclose(got, attention(concat), atol=1e-5, rtol=1e-5)
        paper = _hooks(cls)
        default = paper.combine([paper.aggregate(i, f) for i, f in enumerate((layer2, layer3))])
        assert not torch.allclose(got, default, atol=1e-3)


def test_sa_settings_are_checked_and_listed() -> None:
    assert {"sa_pooling", "sa_layers", "coreset_ratio"} <= set(SAPatchCore.settings())
    with pytest.raises(Exception, match="sa_pooling must be one of"):
        SAPatchCore(backbone="mobilenet_v2", sa_pooling="min")
    model = SAPatchCoreEq4(backbone="mobilenet_v2", sa_pooling="none")
    assert model.get_params()["sa_pooling"] == "none" and model.get_params()["coreset_ratio"] == 0.01
