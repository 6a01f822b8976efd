"""cadsd.checking.validate and `cadsd validate`: every bad input gets a clear finding and exit code 1."""

from __future__ import annotations

import json
import shutil

import pytest
from cli_helpers import expect_args, run_cli
from PIL import ImageFile

from cadsd.checking.validate import expected_counts, parse_expect, validate
from cadsd.errors import CadsdError
from cadsd.format.layout import WRAPPER_NAME


def kinds(report) -> list[str]:
    return [p.kind for p in report.problems]


@pytest.fixture
def root(make_layout, tmp_path):
    return make_layout(tmp_path)


def test_clean_set_is_ok(root, small_counts, capsys) -> None:
    report = validate(root, small_counts)
    assert report.ok and report.problems == []
    assert report.counts[("test", "over_coupling")] == 2
    assert report.images.sizes == {(32, 32): 15} and report.images.modes == {"RGB": 15}
    code, text = run_cli(["validate", str(root), *expect_args(small_counts)], capsys)
    assert code == 0 and "OK: 15 images" in text


def test_counts_differing_from_the_paper_name_both_numbers(root) -> None:
    report = validate(root)
    assert kinds(report) == ["count"] * 6
    by_path = {p.path: p.message for p in report.problems}
    assert "found 4 images, expected 400" in by_path["train/0_good"]
    lacking = by_path["test/4_lacking"]
    assert "expected 40" in lacking and "44" in lacking and "--expect lacking=2" in lacking


def test_expect_keys() -> None:
    counts = expected_counts({"good": 7, "train/good": 5, "4_lacking": 44, "3_over-coupling": 1})
    assert counts[("train", "good")] == 5 and counts[("test", "good")] == 7
    assert counts[("test", "lacking")] == 44 and counts[("test", "over_coupling")] == 1
    assert parse_expect(["lacking=44", "train/good = 3"]) == {"lacking": 44, "train/good": 3}
    for bad in ({"screws": 1}, {"train/lacking": 1}, {"lacking": -1}):
        with pytest.raises(CadsdError):
            expected_counts(bad)
    with pytest.raises(CadsdError, match="KEY=N"):
        parse_expect(["lacking"])


def test_truncated_jpeg(root, small_counts, capsys) -> None:
    path = root / "test" / "1_scratch" / "scratch_001.jpg"
    path.write_bytes(path.read_bytes()[:-200])
    report = validate(root, small_counts)
    assert kinds(report) == ["decode_error"] and report.problems[0].path.endswith("scratch_001.jpg")
    code, text = run_cli(["validate", str(root), *expect_args(small_counts)], capsys)
    assert code == 1 and "does not decode fully" in text and "scratch_001.jpg" in text


def test_truncated_images_flag_must_stay_off(root, small_counts, monkeypatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(CadsdError, match="LOAD_TRUNCATED_IMAGES"):
        validate(root, small_counts)


def test_zero_byte_file(root, small_counts, capsys) -> None:
    (root / "test" / "0_good" / "good_000.jpg").write_bytes(b"")
    assert kinds(validate(root, small_counts)) == ["empty_file"]
    code, text = run_cli(["validate", str(root), *expect_args(small_counts)], capsys)
    assert code == 1 and "zero-byte file" in text and "test/0_good/good_000.jpg" in text


def test_missing_test_folder(root, small_counts, capsys) -> None:
    shutil.rmtree(root / "test")
    report = validate(root, small_counts)
    assert kinds(report) == ["missing_folder"] and report.problems[0].path == "test"
    code, text = run_cli(["validate", str(root), *expect_args(small_counts)], capsys)
    assert code == 1 and "missing test/" in text


def test_missing_category_folder(root, small_counts) -> None:
    shutil.rmtree(root / "test" / "2_paint")
    report = validate(root, small_counts)
    assert kinds(report) == ["missing_folder"] and "2 expected" in report.problems[0].message
    assert validate(root, {**small_counts, "test/paint": 0}).ok


def test_unknown_folders_and_stray_files(root, small_counts, capsys) -> None:
    (root / "validation").mkdir()
    (root / "train" / "1_scratch").mkdir()
    (root / "test" / "2_paint" / "notes.txt").write_text("hi")
    (root / "README.md").write_text("a dataset")
    (root / "cadsd-manifest.json").write_text("{}")  # written by `cadsd download`: no finding
    report = validate(root, small_counts)
    found = {(p.kind, p.path) for p in report.problems}
    assert found == {
        ("unknown_folder", "validation"),
        ("unknown_folder", "train/1_scratch"),
        ("stray_file", "test/2_paint/notes.txt"),
    }
    assert "belongs in test/" in next(p.message for p in report.problems if "train/" in p.path)
    assert [w.kind for w in report.warnings] == ["root_file"]
    code, text = run_cli(["validate", str(root), *expect_args(small_counts)], capsys)
    assert code == 1 and "unknown folder" in text and "notes.txt" in text


def test_hidden_nested_and_misplaced_entries(make_layout, tmp_path, small_counts) -> None:
    """Hidden entries are ignored with one warning; a stray file in a split, a folder inside a
    category, a non-mask file or foreign folder in ground_truth/, PNG data under a .jpg name
    and a mask that does not decode are each named."""
    root = make_layout(tmp_path, masks=True)
    (root / ".DS_Store").write_bytes(b"x")
    (root / "train" / "0_good" / ".thumbs").write_bytes(b"x")
    (root / "train" / "list.txt").write_text("a")
    (root / "test" / "0_good" / "more").mkdir()
    gt = root / "ground_truth"
    (gt / "1_scratch" / "notes.txt").write_text("a")
    (gt / "extra").mkdir()
    image = root / "test" / "2_paint" / "paint_000.jpg"
    shutil.copy(gt / "1_scratch" / "scratch_000_mask.png", image)  # PNG bytes, .jpg name
    mask = gt / "3_over-coupling" / "over_coupling_000_mask.png"
    mask.write_bytes(mask.read_bytes()[:60])
    report = validate(root, small_counts)
    assert {(p.kind, p.path) for p in report.problems} >= {
        ("stray_file", "train/list.txt"),
        ("unknown_folder", "test/0_good/more"),
        ("stray_file", "ground_truth/1_scratch/notes.txt"),
        ("unknown_folder", "ground_truth/extra"),
        ("decode_error", "ground_truth/3_over-coupling/over_coupling_000_mask.png"),
    }
    warnings = {(w.kind, w.path): w.message for w in report.warnings}
    assert warnings[("hidden_file", ".DS_Store")] == "2 hidden entries ignored (as loaders do)"
    assert warnings[("suffix", "test/2_paint/paint_000.jpg")] == "PNG data under a .jpg name"


def test_duplicate_across_train_and_test_is_leakage(root, small_counts, capsys) -> None:
    src = root / "train" / "0_good" / "good_002.jpg"
    shutil.copy(src, root / "test" / "4_lacking" / "copy.jpg")
    report = validate(root, {**small_counts, "test/lacking": 3})
    assert kinds(report) == ["leakage"]
    message = report.problems[0].message
    assert "train/0_good/good_002.jpg" in message and "test/4_lacking/copy.jpg" in message
    args = ["validate", str(root), *expect_args({**small_counts, "test/lacking": 3})]
    code, text = run_cli(args, capsys)
    assert code == 1 and "leakage" in text


def test_duplicate_within_a_split(root, small_counts) -> None:
    shutil.copy(root / "test" / "0_good" / "good_000.jpg", root / "test" / "0_good" / "z.jpg")
    report = validate(root, {**small_counts, "test/good": 4})
    assert kinds(report) == ["duplicate"]
    assert "good_000.jpg" in report.problems[0].message and "z.jpg" in report.problems[0].message


def test_grayscale_pngs_warn_but_pass(make_layout, tmp_path, small_counts, capsys) -> None:
    root = make_layout(tmp_path, fmt="png", mode="L")
    report = validate(root, small_counts)
    assert report.ok and report.images.modes == {"L": 15}
    assert [w.kind for w in report.warnings] == ["mode"] and "mode L" in report.warnings[0].message
    code, text = run_cli(["validate", str(root), *expect_args(small_counts)], capsys)
    assert code == 0 and "L (15)" in text and "mode L" in text


def test_nonexistent_path(tmp_path, capsys) -> None:
    code, text = run_cli(["validate", str(tmp_path / "missing")], capsys)
    assert code == 1 and "dataset folder not found" in text


def test_default_path_is_the_cache(make_layout, tmp_path, small_counts, monkeypatch, capsys):
    monkeypatch.setenv("CADSD_CACHE", str(tmp_path / "cache"))
    code, text = run_cli(["validate"], capsys)
    assert code == 1 and "cache/CAD-SD" in text
    make_layout(tmp_path / "cache", name="CAD-SD")
    code, _ = run_cli(["validate", *expect_args(small_counts)], capsys)
    assert code == 0


def test_wrapper_folder_and_mixed_suffixes_are_accepted(make_layout, tmp_path, capsys):
    base = tmp_path / "download"
    counts = {"train/good": 2, "test/good": 1, "test/scratch": 1}
    root = make_layout(base, counts, fmt="JPG", name=WRAPPER_NAME)
    make_layout(base, {"test/paint": 1}, fmt="jpeg", name=WRAPPER_NAME, seed=1)
    make_layout(
        base, {"test/over_coupling": 1, "test/lacking": 1}, fmt="PNG", name=WRAPPER_NAME, seed=2
    )
    expect = {**counts, "paint": 1, "over_coupling": 1, "lacking": 1}
    report = validate(base, expect)
    assert report.ok and report.root == root and report.images.total == 7
    assert report.images.formats == {"JPEG": 5, "PNG": 2}
    code, _ = run_cli(["validate", str(base), *expect_args(expect)], capsys)
    assert code == 0


def test_masks_without_image_and_wrong_size(make_layout, tmp_path, small_counts) -> None:
    root = make_layout(tmp_path, masks=True)
    assert validate(root, small_counts).ok
    gt = root / "ground_truth" / "1_scratch"
    shutil.copy(gt / "scratch_000_mask.png", gt / "ghost_mask.png")
    small = make_layout(tmp_path, {"test/paint": 1}, name="small", size=16, masks=True)
    shutil.copy(small / "ground_truth/2_paint/paint_000_mask.png", root / "ground_truth/2_paint")
    found = {(p.kind, p.path) for p in validate(root, small_counts).problems}
    assert found == {
        ("orphan_mask", "ground_truth/1_scratch/ghost_mask.png"),
        ("mask_size", "ground_truth/2_paint/paint_000_mask.png"),
    }


def test_json_report_is_written(root, small_counts, tmp_path, capsys) -> None:
    (root / "test" / "0_good" / "good_001.jpg").write_bytes(b"")
    out = tmp_path / "reports" / "r.json"
    code, _ = run_cli(["validate", str(root), "--json", str(out)], capsys)
    data = json.loads(out.read_text())
    assert code == 1 and data["ok"] is False and data["schema_version"] == 1
    assert data["counts"]["test/good"] == 3 and data["expected"]["test/lacking"] == 40
    assert {
        "kind": "empty_file",
        "path": "test/0_good/good_001.jpg",
        "message": "zero-byte file",
    } in (data["problems"])
    assert [p.name for p in out.parent.iterdir()] == ["r.json"]  # no temp file left


def test_unreadable_file_is_a_finding_not_a_crash(tmp_path) -> None:
    from cadsd.checking.imagecheck import inspect_file

    info = inspect_file(tmp_path)  # a directory: reading it fails
    assert info.sha256 is None and info.error.startswith("cannot read")


def test_root_files_include_the_download_manifest() -> None:
    manifest = pytest.importorskip("cadsd.getting.manifest")
    from cadsd.format.layout import ROOT_FILES

    assert manifest.MANIFEST_NAME in ROOT_FILES
