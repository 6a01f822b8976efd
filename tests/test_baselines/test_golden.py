"""A golden AUROC floor per method family (PyOD's habit): each built-in class, at its ``smoke``
budget where it trains, fitted on a tiny generated set of alike images, must rank images with
a painted-in square above the normal ones. A broken score, map or search falls below it; the
floors are far under what each method reaches here, so they do not flake."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import roc_auc_score

from leaderboard.methods import METHODS, load_class
from leaderboard.testing import build, striped_images

#: family -> its floor (trained methods at ``smoke`` barely train: a lower floor)
FLOORS = {"patchcore": 0.95, "padim": 0.95, "sa_patchcore": 0.95, "sa_patchcore_eq4": 0.95,
          "sa_patchcore_dual": 0.95, "patchsvdd": 0.8, "cs_flow": 0.8}


def _test_set(size: int) -> tuple[torch.Tensor, list[int]]:
    """6 normal images and 6 with a square (dark or bright, at varied places)."""
    normal = striped_images(6, 11, size)
    odd = striped_images(6, 12, size)
    side = size // 5
    for i in range(6):
        r, c = (i * size // 7) % (size - side), (size - side) * ((i * 3) % 5) // 4
        odd[i, :, r : r + side, c : c + side] = float(i % 2)
    return torch.cat([normal, odd]), [0] * 6 + [1] * 6


def test_every_family_has_a_floor() -> None:
    roots = {n for n, e in METHODS.items() if e.implemented and e.variant_of is None}
    assert roots == set(FLOORS)


@pytest.mark.parametrize("name", list(FLOORS))
def test_auroc_floor(name: str) -> None:
    klass = load_class(name)
    model = build(klass, dict(klass.budgets.get("smoke", {})))
    size = model.input_spec.size
    model.fit(striped_images(8, 10, size))
    images, labels = _test_set(size)
    scores = model.predict(images).scores
    auroc = roc_auc_score(labels, scores.numpy())
    assert auroc >= FLOORS[name], f"{name}: AUROC {auroc:.3f} below its floor {FLOORS[name]}"
