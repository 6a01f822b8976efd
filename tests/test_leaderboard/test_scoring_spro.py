"""sPRO on hand-made 4x4 maps with values worked out by hand (a saturating region, one that
does not saturate, two overlapping regions, a normal image), per group, and against the
definition applied one threshold at a time on random maps with ties."""

from __future__ import annotations

from fractions import Fraction as F
from itertools import pairwise

import numpy as np
import pytest

from leaderboard.scoring.spro import (
    Region,
    au_spro,
    saturation_fraction,
    spro_by_group,
    spro_curve,
)


def _mask(*pixels: tuple[int, int]) -> np.ndarray:
    m = np.zeros((4, 4), bool)
    for p in pixels:
        m[p] = True
    return m


def _hand_case():
    """Three 4x4 images; every pixel not listed scores 0.

    image 0 (normal): (3,3) = 0.8, a false positive.
    image 1: R1 = {(0,0), (0,1)} saturating at 1 pixel (fraction 0.5); R2 = {(3,2), (3,3)}
             saturating at 2 (the whole region); (0,0) = 0.9, (0,1) = 0.6, (3,2) = 0.4, and the
             defect-free (1,1) = 0.5.
    image 2: R3 = row 0, columns 0-2 (saturation 3), R4 = {(0,0), (1,0)} (saturation 2): they
             overlap at (0,0) = 0.7, which counts for both and is not a false positive.
    Defect-free pixels: 16 + (16 - 4) + (16 - 4) = 40, so one false positive is FPR 1/40.
    """
    maps = np.zeros((3, 4, 4))
    maps[0, 3, 3] = 0.8
    maps[1, 0, 0], maps[1, 0, 1], maps[1, 3, 2], maps[1, 1, 1] = 0.9, 0.6, 0.4, 0.5
    maps[2, 0, 0] = 0.7
    regions = [
        [],
        [Region.from_fraction(_mask((0, 0), (0, 1)), 0.5),
         Region.from_fraction(_mask((3, 2), (3, 3)), 1.0)],
        [Region(_mask((0, 0), (0, 1), (0, 2)), 3.0), Region(_mask((0, 0), (1, 0)), 2.0)],
    ]
    return maps, regions


def _area(points: list[tuple[F, F]], limit: F) -> F:
    """Exact trapezoids up to ``limit``, the crossing segment interpolated."""
    total = F(0)
    for (x0, y0), (x1, y1) in pairwise(points):
        if x0 >= limit:
            break
        if x1 > limit:
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        total += (x1 - x0) * (y0 + y1) / 2
    return total


def test_hand_worked_saturation_and_overlap() -> None:
    maps, regions = _hand_case()
    # mean sPRO over the 4 regions, threshold by threshold (flag score >= t):
    # t=0.9: R1 1 px of saturation 1 -> 1;          mean 1/4          FPR 0
    # t=0.8: image 0's false positive               mean 1/4          FPR 1/40
    # t=0.7: (0,0) of image 2: R3 1/3, R4 1/2;      mean (1+1/3+1/2)/4 = 11/24
    # t=0.6: R1's 2nd pixel: saturated, stays 1;    mean 11/24
    # t=0.5: image 1's false positive               mean 11/24        FPR 2/40
    # t=0.4: R2 1 px of 2 -> 1/2;                   mean (1+1/2+1/3+1/2)/4 = 7/12
    # t=0:   everything                             (1, 1)
    want = [(F(0), F(0)), (F(0), F(1, 4)), (F(1, 40), F(1, 4)), (F(1, 40), F(11, 24)),
            (F(1, 40), F(11, 24)), (F(2, 40), F(11, 24)), (F(2, 40), F(7, 12)), (F(1), F(1)),
            (F(1), F(1))]
    fpr, spro, n_empty = spro_curve(maps, regions)
    assert n_empty == 0
    assert np.allclose(fpr, [float(x) for x, _ in want], atol=1e-12)
    assert np.allclose(spro, [float(y) for _, y in want], atol=1e-12)
    # up to 0.05: 1/40 * 1/4 + 1/40 * 11/24 = 1/40 * 17/24, / 0.05 -> 17/48
    # up to 0.3: + 1/4 * (7/12 + y(0.3)) / 2 with y(0.3) = 7/12 + 5/12 * (0.25 / 0.95) = 79/114
    assert _area(want, F(1, 20)) / F(1, 20) == F(17, 48)
    up_to_03 = (F(1, 40) * F(17, 24) + F(1, 4) * (F(7, 12) + F(79, 114)) / 2) / F(3, 10)
    assert _area(want, F(3, 10)) / F(3, 10) == up_to_03
    got = au_spro(maps, regions)
    assert got.fpr_0_05 == pytest.approx(17 / 48, abs=1e-12)  # 0.354167
    assert got.fpr_0_3 == pytest.approx(float(up_to_03), abs=1e-12)  # 0.590826
    assert (got.n_regions, got.n_empty, got.n_images) == (4, 0, 3)


def test_per_group_counts_only_its_images_and_the_normals() -> None:
    maps, regions = _hand_case()
    by = spro_by_group(maps, regions, ["normal", "logical", "structural"])
    # logical = images 0 + 1: 28 defect-free pixels; curve (0, 1/2) R1, (1/28, 1/2),
    # (2/28, 1/2), (2/28, 3/4) R2 half, (1, 1)
    logical = [(F(0), F(0)), (F(0), F(1, 2)), (F(1, 28), F(1, 2)), (F(2, 28), F(1, 2)),
               (F(2, 28), F(3, 4)), (F(1), F(1))]
    # structural = images 0 + 2: (1/28, 0) the false positive, (1/28, 5/12) the shared pixel
    structural = [(F(0), F(0)), (F(1, 28), F(0)), (F(1, 28), F(5, 12)), (F(1), F(1))]
    assert by.group["logical"].fpr_0_05 == pytest.approx(0.5, abs=1e-12)  # flat at 1/2
    for name, points in (("logical", logical), ("structural", structural)):
        for lim, got in ((F(1, 20), by.group[name].fpr_0_05), (F(3, 10), by.group[name].fpr_0_3)):
            assert got == pytest.approx(float(_area(points, lim) / lim), abs=1e-12), (name, lim)
    assert by.mean_0_3 == pytest.approx((by.group["logical"].fpr_0_3
                                         + by.group["structural"].fpr_0_3) / 2)
    assert by.group["structural"].n_regions == 2 and by.group["logical"].n_images == 2


def test_saturation_above_the_area_is_capped_and_empty_regions_are_counted() -> None:
    maps, regions = _hand_case()
    capped = [regions[0], [regions[1][0], Region(regions[1][1].mask, 50.0)], regions[2]]
    assert au_spro(maps, capped) == au_spro(maps, regions)
    gone = [regions[0], [*regions[1], Region.from_fraction(np.zeros((4, 4), bool), 0.5)],
            regions[2]]
    result = au_spro(maps, gone)
    assert (result.n_regions, result.n_empty) == (4, 1)
    assert result.fpr_0_3 == au_spro(maps, regions).fpr_0_3  # left out of the mean, not a zero


def _reference(maps, regions, limit):
    """The definition, one threshold at a time."""
    free = np.ones(maps.shape, bool)
    for i, regs in enumerate(regions):
        for r in regs:
            free[i] &= ~r.mask
    pts = [(0.0, 0.0)]
    for t in np.unique(maps)[::-1]:
        above = maps >= t
        fpr = (above & free).sum() / free.sum()
        spro = np.mean([min((above[i] & r.mask).sum() / min(r.saturation, r.mask.sum()), 1.0)
                        for i, regs in enumerate(regions) for r in regs])
        pts.append((fpr, spro))
    pts.append((1.0, 1.0))
    exact = _area([(F(x), F(y)) for x, y in pts], F(limit))
    return float(exact / F(limit))


@pytest.mark.parametrize("seed", range(4))
def test_equals_the_definition_on_random_maps_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    maps = np.round(rng.random((4, 9, 9)), 2)
    regions = [[] for _ in range(4)]
    for i in (1, 2, 3):
        for _ in range(rng.integers(1, 4)):  # 1-3 regions, overlapping at random
            r0, c0 = rng.integers(0, 6, size=2)
            h, w = rng.integers(1, 4, size=2)
            m = np.zeros((9, 9), bool)
            m[r0:r0 + h, c0:c0 + w] = True
            maps[i][m] += 0.3 * rng.random()
            regions[i].append(Region.from_fraction(m, rng.choice([1.0, 0.5, 0.37])))
    maps = np.round(maps, 2)
    got = au_spro(maps, regions)
    for limit, value in ((0.05, got.fpr_0_05), (0.3, got.fpr_0_3)):
        assert value == pytest.approx(_reference(maps, regions, limit), abs=1e-9)


def test_the_curve_cut_past_the_limit_gives_the_same_areas() -> None:
    from leaderboard.scoring.pro import area_up_to as _area_up_to

    rng = np.random.default_rng(5)
    maps = rng.random((6, 20, 20)).astype(np.float32)  # float32 maps are not upcast
    regions = [[] for _ in range(6)]
    for i in range(3, 6):
        m = np.zeros((20, 20), bool)
        m[2 + i:9 + i, 4:10] = True
        maps[i][m] += 0.4
        regions[i] = [Region.from_fraction(m, 0.6)]
    full = spro_curve(maps, regions)
    cut = spro_curve(maps, regions, max_fpr=0.3)
    assert len(cut[0]) < len(full[0]) / 2  # most pixels were never sorted
    assert cut[0][-2] > 0.3 and cut[0][-3] <= 0.3 and (cut[0][-1], cut[1][-1]) == (1.0, 1.0)
    for limit in (0.05, 0.3):
        assert _area_up_to(*cut[:2], limit) == pytest.approx(_area_up_to(*full[:2], limit),
                                                            abs=1e-12)
        assert _area_up_to(*full[:2], limit) / limit == pytest.approx(
            _reference(maps, regions, limit), abs=1e-9)


def test_bad_inputs() -> None:
    maps, regions = _hand_case()
    with pytest.raises(ValueError, match="one list of regions per image"):
        au_spro(maps, regions[:2])
    with pytest.raises(ValueError, match=r"region's mask \(3, 3\)"):
        au_spro(maps, [[], [Region(np.ones((3, 3), bool), 1.0)], []])
    with pytest.raises(ValueError, match="must be > 0"):
        au_spro(maps, [[], [Region(_mask((0, 0)), 0.0)], []])
    with pytest.raises(ValueError, match="at least one defect region"):
        au_spro(maps, [[], [], []])
    with pytest.raises(ValueError, match="needs anomalous images"):
        spro_by_group(maps, regions, ["normal"] * 3)
    assert saturation_fraction({"defect_name": "a", "pixel_value": 255,
                                "saturation_threshold": 100, "relative_saturation": False},
                               400) == 0.25  # re-exported from cadsd.zoo.loco
