"""The other benchmarks (MVTec AD, BTAD, MVTec LOCO AD, an AITEX folder) on generated fixture
trees in each published layout: adapters, bad input, `bench run` per category with its table,
offline behaviour, `cadsd download --source`, and AU-PRO against a plain reference."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_bench, run_cli
from fixtures import DUMMY, noise_pixels, square_mask, write_image

from cadsd import zoo
from cadsd.errors import LayoutError
from leaderboard.records import read_record
from leaderboard.scoring.pro import area_up_to, au_pro

SIZE = 64


def _image(path: Path, seed: int, fmt: str = "PNG") -> None:
    write_image(path, noise_pixels(seed, SIZE), fmt)


def _mask(path: Path, box: tuple[int, int, int, int] = (8, 8, 24, 24)) -> None:
    write_image(path, square_mask(SIZE, box))


def write_mvtec(root: Path, categories: tuple[str, ...] = ("bottle", "screw")) -> Path:
    seed = 0
    for cat in categories:
        for i in range(5):
            _image(root / cat / "train" / "good" / f"{i:03d}.png", seed := seed + 1)
        for i in range(3):
            _image(root / cat / "test" / "good" / f"{i:03d}.png", seed := seed + 1)
        for defect in ("crack", "scratch"):
            for i in range(2):
                _image(root / cat / "test" / defect / f"{i:03d}.png", seed := seed + 1)
                _mask(root / cat / "ground_truth" / defect / f"{i:03d}_mask.png")
    return root


def write_btad(root: Path) -> Path:
    seed = 100
    for i in range(5):
        _image(root / "01" / "train" / "ok" / f"{i:04d}.bmp", seed := seed + 1, "BMP")
    for i in range(3):
        _image(root / "01" / "test" / "ok" / f"{i:04d}.bmp", seed := seed + 1, "BMP")
        _image(root / "01" / "test" / "ko" / f"{i:04d}.bmp", seed := seed + 1, "BMP")
        _mask(root / "01" / "ground_truth" / "ko" / f"{i:04d}.png")
    return root


#: the fixture's defects_config.json, in the published format: 000.png of every anomalous
#: image is an 8x8 region of pixel value 255 (relative saturation: the whole region), 001.png a
#: 16x16 region of value 254 (absolute: 64 of its 256 pixels, i.e. a fraction of 0.25)
LOCO_DEFECTS = [
    {"defect_name": "missing_almonds", "pixel_value": 255, "saturation_threshold": 1.0,
     "relative_saturation": True},
    {"defect_name": "box_damaged", "pixel_value": 254, "saturation_threshold": 64,
     "relative_saturation": False},
]


def _loco_mask(path: Path, box: tuple[int, int, int, int], value: int) -> None:
    write_image(path, (square_mask(SIZE, box) > 0).astype(np.uint8) * np.uint8(value))


def write_loco(root: Path) -> Path:
    seed = 200
    cat = root / "breakfast_box"
    for i in range(5):
        _image(cat / "train" / "good" / f"{i:03d}.png", seed := seed + 1)
    _image(cat / "validation" / "good" / "000.png", seed := seed + 1)
    for i in range(3):
        _image(cat / "test" / "good" / f"{i:03d}.png", seed := seed + 1)
    for kind in ("logical_anomalies", "structural_anomalies"):
        for i in range(2):
            _image(cat / "test" / kind / f"{i:03d}.png", seed := seed + 1)
            _loco_mask(cat / "ground_truth" / kind / f"{i:03d}" / "000.png", (0, 0, 8, 8), 255)
            _loco_mask(cat / "ground_truth" / kind / f"{i:03d}" / "001.png", (40, 40, 56, 56),
                       254)
    (cat / "defects_config.json").write_text(json.dumps(LOCO_DEFECTS, indent=4))
    return root


pytestmark = pytest.mark.usefixtures("private_cache")


def test_mvtec_adapter_builds_the_harness_features(tmp_path: Path) -> None:
    root = write_mvtec(tmp_path / "mvtec")
    dd = zoo.build(zoo.MVTEC_AD, root, "bottle")
    test = dd["test"]
    assert test.features["category"].names == ["good", "crack", "scratch"]
    assert test.features["group"].names == ["normal", "local"]
    assert len(dd["train"]) == 5 and len(test) == 7
    assert test["file_name"] == sorted(test["file_name"]) and test["file_name"][0].startswith("test/")
    assert sum(m is not None for m in test["mask"]) == 4
    found = zoo.detect(tmp_path / "mvtec")
    assert found is not None and found[0].name == "mvtec_ad"
    diffs = zoo.count_report(zoo.MVTEC_AD, root, "bottle", zoo.MVTEC_AD.samples(root, "bottle"))
    assert "bottle/train/good: 5 images, published 209" in diffs


def test_loco_groups_union_masks_and_no_validation(tmp_path: Path) -> None:
    root = write_loco(tmp_path / "loco")
    assert zoo.detect(root)[0].name == "mvtec_loco"
    samples = zoo.MVTEC_LOCO.samples(root, "breakfast_box")
    assert not any("validation" in s.file_name for s in samples)  # never trained on nor scored
    assert {s.group for s in samples if s.label == "anomaly"} == {"logical", "structural"}
    dd = zoo.build(zoo.MVTEC_LOCO, root, "breakfast_box")
    row = next(r for r in dd["test"] if r["group"] == 1)
    mask = np.asarray(row["mask"].convert("L")) > 0
    assert mask[:8, :8].all() and mask[40:56, 40:56].all() and mask.sum() == 64 + 256  # union


def test_btad_bmp_images_and_ok_ko(tmp_path: Path) -> None:
    root = write_btad(tmp_path / "btad")
    assert zoo.detect(root)[0].name == "btad"
    dd = zoo.build(zoo.BTAD, root, "01")
    assert dd["test"].features["category"].names == ["good", "ko"] and len(dd["test"]) == 6


@pytest.mark.parametrize("breakage,message", [
    (lambda r: __import__("shutil").rmtree(r / "bottle" / "ground_truth"), "no ground_truth"),
    (lambda r: (r / "bottle" / "test" / "crack" / "000.png").unlink(), "without an image"),
    (lambda r: (r / "bottle" / "ground_truth" / "crack" / "001_mask.png").unlink(), "has no mask"),
])
def test_bad_trees_say_what_is_wrong(tmp_path: Path, breakage: object, message: str) -> None:
    root = write_mvtec(tmp_path / "mvtec")
    breakage(root)
    with pytest.raises(LayoutError, match=message):
        zoo.MVTEC_AD.samples(root, "bottle")


@pytest.mark.slow
def test_bench_run_per_category_tables(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    for name, writer in (("mvtec", write_mvtec), ("btad", write_btad), ("loco", write_loco)):
        root = writer(tmp_path / name)
        out = tmp_path / f"run-{name}"
        # sa_patchcore_dual too: this project's method runs on every benchmark as it is
        code, text = run_bench(capsys, "run", "--methods", f"{DUMMY},patchcore,sa_patchcore_dual",
                               "--dataset", str(root), "--backbone", "mobilenet_v2",
                               "--out", str(out))
        assert code == 0, text
        md = (out / "leaderboard.md").read_text()
        records = sorted(p.name for p in (out / "records").glob("*.json"))
        bench = zoo.detect(root)[0]
        cats = bench.found_categories(root)
        assert len(records) == 3 * len(cats)  # one record per category and method
        assert "Image AUROC (%) per category" in md and "| **mean** |" in md
        assert "not the official copy" in md and "paper (mean)" not in md
        for cat in cats:
            assert f"| {cat} |" in md
        assert "AU-PRO (%) up to FPR 0.3 per category" in md
        if name == "loco":
            assert "logical anomalies vs normal" in md and "structural anomalies vs normal" in md
        assert all(read_record(out / "records" / r).ok for r in records), text
        rec = read_record(out / "records" / records[0])
        assert rec.dataset.benchmark == bench.name and rec.metrics.au_pro is not None
    code, text = run_bench(capsys, "run", "--methods", DUMMY, "--dataset",
                        f"{tmp_path / 'mvtec'}:bottle,nosuch", "--out", str(tmp_path / "x"))
    assert code == 1 and "no category 'nosuch'" in text and not (tmp_path / "x").exists()


def test_offline_benchmark_fails_once_naming_url_and_source(capsys: pytest.CaptureFixture,
                                                            tmp_path: Path) -> None:
    code, text = run_bench(capsys, "run", "--methods", DUMMY, "--dataset", "mvtec_ad",
                        "--out", str(tmp_path / "run"))
    assert code == 1 and "mvtec_anomaly_detection.tar.xz" in text and "--source PATH" in text
    assert "CC BY-NC-SA 4.0" in text and not (tmp_path / "run").exists()


def test_download_source_archive_then_run_a_subset(capsys: pytest.CaptureFixture,
                                                   tmp_path: Path) -> None:
    tree = write_mvtec(tmp_path / "src" / "mvtec_anomaly_detection")
    archive = tmp_path / "copy.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tree, arcname="mvtec_anomaly_detection")
    code, text = run_cli(["download", "--dataset", "mvtec_ad", "--source", str(tree)], capsys)
    assert code == 1 and "published 209" in text  # a copy, counts reported, kept
    assert (tmp_path / "cache" / "mvtec_ad" / "bottle" / "train").is_dir()
    code, text = run_bench(capsys, "run", "--methods", DUMMY, "--dataset", "mvtec_ad:screw",
                        "--out", str(tmp_path / "run"))
    assert code == 0 and "1 category (screw)" in text
    code, text = run_cli(["download", "--dataset", "mvtec_ad", "--source", str(archive),
                          "--dest", str(tmp_path / "other")], capsys)
    assert code == 1 and "not the published MVTec AD archive" in text  # not the published one


def _reference_au_pro(maps: np.ndarray, masks: np.ndarray, limit: float) -> float:
    """The definition, one threshold at a time: mean region overlap vs normal-pixel FPR."""
    from scipy.ndimage import label

    regions = []
    for i, m in enumerate(masks):
        lab, n = label(m, np.ones((3, 3)))
        regions += [(i, lab == k) for k in range(1, n + 1)]
    normal = ~masks
    points = [(0.0, 0.0)]
    for t in np.unique(maps)[::-1]:
        above = maps >= t
        fpr = (above & normal).sum() / normal.sum()
        pro = np.mean([above[i][r].mean() for i, r in regions])
        points.append((fpr, pro))
    points.append((1.0, 1.0))
    x, y = np.array(points).T
    return area_up_to(x, y, limit) / limit


def test_au_pro_equals_the_definition() -> None:
    rng = np.random.default_rng(0)
    masks = np.zeros((4, 12, 12), bool)
    masks[0, 2:5, 2:5] = True
    masks[0, 8:11, 7:9] = True  # two regions in one image
    masks[1, 0:6, 6:12] = True
    maps = rng.random((4, 12, 12))
    maps[masks] += rng.random(int(masks.sum())) * 0.7
    maps = np.round(maps, 2)  # ties
    for limit in (0.3, 0.05, 1.0):
        assert au_pro(maps, masks, limit) == pytest.approx(_reference_au_pro(maps, masks, limit),
                                                           abs=1e-6)
    perfect = masks.astype(float) + rng.random(masks.shape) * 0.01
    assert au_pro(perfect, masks) == pytest.approx(1.0, abs=1e-6)


def test_validate_a_benchmark_folder(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    root = write_mvtec(tmp_path / "mvtec")
    code, text = run_cli(["validate", "--dataset", "mvtec_ad", str(root)], capsys)
    assert code == 1 and "bottle: 5 train, 7 test images" in text
    assert "category cable is missing" in text and "published 209" in text


def test_push_a_category_states_and_warns_the_licence(capsys: pytest.CaptureFixture,
                                                      tmp_path: Path) -> None:
    root = write_mvtec(tmp_path / "mvtec")
    out = tmp_path / "repo"
    code, text = run_cli(["push", "--repo-id", "me/mvtec-bottle", "--source", f"{root}:bottle",
                          "--dry-run", str(out)], capsys)
    assert code == 0 and "warning: MVTec AD is licensed CC BY-NC-SA 4.0" in text
    card = (out / "README.md").read_text()
    assert "license: cc-by-nc-sa-4.0" in card and "**Licence: CC BY-NC-SA 4.0" in card
    assert "| test | crack | 2 |" in card and list((out / "data").glob("*.parquet"))
