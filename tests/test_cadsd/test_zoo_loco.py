"""MVTec LOCO AD keeps each defect region (for sPRO): the ``regions`` column beside the union
mask, the saturation fraction rule, and clear errors for a missing or malformed
defects_config.json and for masks it does not describe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_zoo import SIZE, _loco_mask, write_loco

from cadsd import zoo
from cadsd.errors import LayoutError
from cadsd.zoo.loco import DefectType, read_defects_config, saturation_fraction

CAT = "breakfast_box"


def test_regions_column_keeps_each_mask_file_with_its_defect(tmp_path: Path) -> None:
    from datasets import Image, Value

    root = write_loco(tmp_path / "loco")
    dd = zoo.build(zoo.MVTEC_LOCO, root, CAT)
    test = dd["test"]
    assert "mask" in test.column_names and "regions" in test.column_names  # union kept
    assert all(r == [] for r in dd["train"]["regions"])
    raw = test.cast_column("regions", [{"mask": Image(decode=False), "defect": Value("string"),
                                        "saturation": Value("float64")}])
    assert sum(bool(r) for r in raw["regions"]) == 4
    for row, cells in zip(test, raw["regions"]):
        if row["label"] == 0:
            assert cells == []
            continue
        kind, stem = row["file_name"].split("/")[1], Path(row["file_name"]).stem
        files = [root / CAT / "ground_truth" / kind / stem / f"00{k}.png" for k in (0, 1)]
        assert [c["mask"]["bytes"] for c in cells] == [f.read_bytes() for f in files]  # as stored
        assert [c["defect"] for c in cells] == ["missing_almonds", "box_damaged"]
        assert [c["saturation"] for c in cells] == [1.0, 0.25]  # relative 1.0; 64 px of 256
        first = np.asarray(row["regions"][0]["mask"].convert("L")) > 0
        assert first[:8, :8].all() and first.sum() == 64
        assert (np.asarray(row["mask"].convert("L")) > 0).sum() == 64 + 256


def test_regions_survive_save_and_load(tmp_path: Path) -> None:
    import datasets

    dd = zoo.build(zoo.MVTEC_LOCO, write_loco(tmp_path / "loco"), CAT)
    dd.save_to_disk(str(tmp_path / "saved"))
    back = datasets.load_from_disk(str(tmp_path / "saved"))
    assert back["test"].features == dd["test"].features
    assert back["test"]["regions"][3][1]["saturation"] == 0.25


def test_other_benchmarks_have_no_regions(tmp_path: Path) -> None:
    from test_zoo import write_mvtec

    dd = zoo.build(zoo.MVTEC_AD, write_mvtec(tmp_path / "mvtec"), "bottle")
    assert "regions" not in dd["test"].column_names


def test_saturation_fraction_rule() -> None:
    relative = {"defect_name": "a", "pixel_value": 255, "saturation_threshold": 0.5,
                "relative_saturation": True}
    absolute = {**relative, "saturation_threshold": 3000, "relative_saturation": False}
    assert saturation_fraction(relative, 10) == 0.5  # whatever the area
    assert saturation_fraction(absolute, 12000) == 0.25
    assert saturation_fraction(absolute, 2000) == 1.0  # capped at the region's area
    assert saturation_fraction(DefectType.from_entry(absolute), 6000) == 0.5
    for bad, message in (({**relative, "saturation_threshold": 1.5}, r"lies in \(0, 1\]"),
                         ({**absolute, "saturation_threshold": 0}, "pixel count >= 1"),
                         ({**relative, "pixel_value": 0}, "integer in 1..255"),
                         ({**relative, "relative_saturation": "yes"}, "true/false"),
                         ({"defect_name": "a"}, "lacks pixel_value")):
        with pytest.raises((TypeError, ValueError), match=message):
            saturation_fraction(bad, 10)
    with pytest.raises(ValueError, match="at least one pixel"):
        saturation_fraction(relative, 0)


@pytest.mark.parametrize("text,message", [
    (None, "defects_config.json is missing"),
    ("[{", "is not valid JSON"),
    ('{"defect_name": "a"}', "expected a non-empty JSON list"),
    ('[{"defect_name": "a", "pixel_value": 255, "saturation_threshold": 1.0}]',
     "entry 0: an entry lacks relative_saturation"),
    (json.dumps([{"defect_name": n, "pixel_value": 255, "saturation_threshold": 1.0,
                  "relative_saturation": True} for n in "ab"]), "pixel_value 255 is given twice"),
])
def test_a_missing_or_malformed_config_names_the_file(tmp_path: Path, text: str | None,
                                                      message: str) -> None:
    root = write_loco(tmp_path / "loco")
    config = root / CAT / "defects_config.json"
    config.unlink() if text is None else config.write_text(text)
    for call in (lambda: zoo.build(zoo.MVTEC_LOCO, root, CAT),
                 lambda: zoo.MVTEC_LOCO.samples(root, CAT)):  # validate and build both say it
        with pytest.raises(LayoutError, match=message) as err:
            call()
        assert str(config) in str(err.value)
    _, problems = zoo.check_copy(zoo.MVTEC_LOCO, root)
    assert any(str(config) in p for p in problems)


@pytest.mark.parametrize("value,message", [
    (200, r"pixel value 200 is not in .*defects_config.json \(its pixel values: 254, 255\)"),
    (None, "found 2 grey values"),
    (0, "found no defect pixels"),
])
def test_a_mask_the_config_does_not_describe_names_the_mask(tmp_path: Path, value: int | None,
                                                            message: str) -> None:
    root = write_loco(tmp_path / "loco")
    mask = root / CAT / "ground_truth" / "structural_anomalies" / "001" / "000.png"
    if value is None:  # two defects' values in one file
        pixels = np.zeros((SIZE, SIZE), np.uint8)
        pixels[:4, :4], pixels[10:14, 10:14] = 255, 254
        from fixtures import write_image

        write_image(mask, pixels)
    else:
        _loco_mask(mask, (0, 0, 8, 8), value)
    with pytest.raises(LayoutError, match=message) as err:
        zoo.build(zoo.MVTEC_LOCO, root, CAT)
    assert str(mask) in str(err.value)


def test_config_by_pixel_value(tmp_path: Path) -> None:
    root = write_loco(tmp_path / "loco")
    config = read_defects_config(root / CAT)
    assert sorted(config) == [254, 255] and config[254].name == "box_damaged"
    assert not config[254].relative and config[254].saturation_threshold == 64
    entries = json.loads((root / CAT / "defects_config.json").read_text())
    assert {e["pixel_value"] for e in entries} == set(config)


def test_the_dataset_card_describes_regions(tmp_path: Path) -> None:
    from cadsd.zoo.card import benchmark_card

    root = write_loco(tmp_path / "loco")
    card = str(benchmark_card(zoo.MVTEC_LOCO, CAT, zoo.build(zoo.MVTEC_LOCO, root, CAT)))
    assert "`regions` keeps each mask file" in card and "defects_config.json" in card
