"""Independent check against the official code's feature pipeline (IshidaKengo/SA-PatchCore
run.py + utils.py), transcribed literally: forward hooks, AvgPool/MaxPool modules, the attention
loop, unfold/fold ``embedding_concat``, the per-patch ``reshape_embedding`` loop, ``torch.cdist``
1-NN over ALL training patches (coreset ratio 1.0: no sampling involved) and max. Our detectors
at ``coreset_ratio=1.0`` must give the same image scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from baselines.components.backbones import build_model
from baselines.patchcore import PatchCore
from sa_patchcore import SAPatchCore

Split = tuple[torch.Tensor, torch.Tensor]  # train, test images
Features = list[list[torch.Tensor]]  # per image: the hooked layer outputs


def _embedding_concat(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    b, c1, h1, w1 = x.size()
    _, c2, h2, w2 = y.size()
    s = int(h1 / h2)
    x = F.unfold(x, kernel_size=s, dilation=1, stride=s)
    x = x.view(b, c1, -1, h2, w2)
    z = torch.zeros(b, c1 + c2, x.size(2), h2, w2)
    for i in range(x.size(2)):
        z[:, :, i, :, :] = torch.cat((x[:, :, i, :, :], y), 1)
    z = z.view(b, -1, h2 * w2)
    return F.fold(z, kernel_size=s, output_size=(h1, w1), stride=s)


def _reshape_embedding(embedding: np.ndarray) -> list[np.ndarray]:
    out = []
    for k in range(embedding.shape[0]):
        for i in range(embedding.shape[2]):
            for j in range(embedding.shape[3]):
                out.append(embedding[k, :, i, j])
    return out


class _Official:
    """run.py's MODEL feature path, on the embedded MobileNetV2 (features.6 / features.13 play
    layer2[-1] / layer3[-1]; its input normalisation is [-1, 1])."""

    def __init__(self) -> None:
        self.model, _ = build_model("mobilenet_v2", "imagenet")
        self.features: list[torch.Tensor] = []
        hook = lambda module, inputs, output: self.features.append(output)
        self.model.features[6].register_forward_hook(hook)
        self.model.features[13].register_forward_hook(hook)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.features = []
        with torch.no_grad():
            self.model((x - 0.5) / 0.5)
        return self.features

    @staticmethod
    def embed(features: list[torch.Tensor], attention: bool) -> np.ndarray:
        embeddings = []
        for feature in features:
            avep = torch.nn.AvgPool2d(3, 1, 1)
            maxp = torch.nn.MaxPool2d(3, 1, 1)
            if feature.shape[3] == 28 or not attention:
                out = avep(feature)
            elif feature.shape[3] == 14:
                a1 = maxp(feature[:])
                v = maxp(feature[:])
                width = a1.shape[3]
                f1 = torch.flatten(a1[:], 2, 3)
                f2 = torch.flatten(a1[:], 2, 3)
                v = torch.flatten(v[:], 2, 3)
                a1 = torch.reshape(f1, (f1.shape[0], f1.shape[1], f1.shape[2], 1))
                a2 = torch.reshape(f2, (f2.shape[0], f2.shape[1], 1, f2.shape[2]))
                v = torch.reshape(v, (v.shape[0], v.shape[1], v.shape[2], 1))
                att = torch.nn.functional.softmax(torch.matmul(a1, a2), dim=-1)
                att = torch.matmul(att, v)
                out = torch.reshape(att, (att.shape[0], att.shape[1], width, width))
            embeddings.append(out)
        embedding = _embedding_concat(embeddings[0], embeddings[1])
        return np.array(_reshape_embedding(embedding.numpy()))

    @staticmethod
    def scores(train: Features, test: Features, attention: bool) -> torch.Tensor:
        bank = np.concatenate([_Official.embed(f, attention) for f in train])
        out = []
        for features in test:
            patches = torch.from_numpy(_Official.embed(features, attention))
            dist = torch.cdist(patches, torch.from_numpy(bank), 2)
            score_patches = dist.topk(1, largest=False)[0].numpy()
            out.append(max(score_patches[:, 0]))
        return torch.tensor(np.array(out))


@pytest.fixture(scope="module")
def images() -> Split:
    gen = torch.Generator().manual_seed(0)
    base = F.interpolate(torch.rand(3, 3, 12, 12, generator=gen), size=224, mode="bilinear")
    train = base.clamp(0, 1)
    # test: two near-copies of training images (low scores) and two new images (high scores)
    near = (train[:2] + 0.03 * torch.randn(2, 3, 224, 224, generator=gen)).clamp(0, 1)
    new = F.interpolate(torch.rand(2, 3, 12, 12, generator=gen), size=224, mode="bilinear")
    return train, torch.cat([near, new.clamp(0, 1)])


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


@pytest.fixture(scope="module")
def official_features(images: Split) -> tuple[Features, Features]:
    official = _Official()  # batch size 1, as run.py
    train, test = ([official.forward(x[None]) for x in split] for split in images)
    return train, test


@pytest.mark.parametrize("cls,attention", [(PatchCore, False), (SAPatchCore, True)])
def test_matches_official_pipeline(
    cls: type[PatchCore], attention: bool, images: Split, official_features: tuple[Features, Features]
) -> None:
    train, test = images
    expected = _Official.scores(*official_features, attention=attention)
    model = cls(backbone="mobilenet_v2", coreset_ratio=1.0).fit([train[:2], train[2:]])
    got = model.predict(test).scores
    assert _spearman(got, expected) > 0.99
    assert torch.allclose(got.double(), expected.double(), rtol=1e-4, atol=1e-4)
