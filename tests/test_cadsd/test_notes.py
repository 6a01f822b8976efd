"""Issue 33, what a user is told: EXIF orientation is read one way everywhere (stored pixel
order, as the official loader; masks match), and `cadsd validate` notes what loaders will do
(orientation tags, tiny or extreme images, a group missing a type); file names, never object
reprs; a synthetic set is "drawn by cadsd synth" only while its files are unchanged."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import numpy as np
from cli_helpers import expect_args, run_cli
from fixtures import noise_pixels, square_mask, write_image
from PIL import Image

import cadsd
from cadsd.checking.validate import validate
from cadsd.format import hf, layout
from cadsd.publishing.card import detect_provenance
from cadsd.synth import generate

ORIENTATION = 0x0112


def _rotated_jpeg(path: Path, seed: int, tag: int = 6) -> Path:
    """A 48x24 JPEG whose EXIF says "rotate 90° to display" (tag 6)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 48, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[ORIENTATION] = tag
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, "JPEG", exif=exif.tobytes())
    return path


def _layout_with_a_rotated_anomaly(make_layout, tmp_path: Path) -> tuple[Path, Path]:
    root = make_layout(tmp_path, masks=True)
    image = _rotated_jpeg(root / "test" / "1_scratch" / "scratch_000.jpg", 1)
    write_image(root / "ground_truth" / "1_scratch" / "scratch_000_mask.png",
                square_mask(48)[:24])  # 48x24, as the stored pixels
    return root, image


def _stored(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))  # the official loaders' read


def test_load_gives_stored_orientation_and_keeps_the_bytes(make_layout, tmp_path) -> None:
    root, image = _layout_with_a_rotated_anomaly(make_layout, tmp_path / "d")
    saved = hf.save(hf.build(root), tmp_path / "built")
    for dd in (cadsd.load(root), cadsd.load(saved), hf.build(root)):
        test = dd["test"]
        i = test["file_name"].index("test/1_scratch/scratch_000.jpg")
        row = test[i]
        assert row["image"].size == (48, 24) == row["mask"].size  # image still matches its mask
        assert np.array_equal(np.asarray(row["image"].convert("RGB")), _stored(image))
        raw = test.cast_column("image", datasets.Image(decode=False))[i]["image"]
        assert raw["bytes"] == image.read_bytes()  # never re-encoded
        assert next(iter(test.select([i])))["image"].size == (48, 24)
    assert hf.fingerprint(cadsd.load(saved)) == hf.fingerprint(root)


def test_validate_notes_each_orientation_tag(make_layout, tmp_path, small_counts, capsys):
    root, _ = _layout_with_a_rotated_anomaly(make_layout, tmp_path)
    _rotated_jpeg(root / "train" / "0_good" / "good_000.jpg", 2, tag=1)  # 1: as stored
    report = validate(root, small_counts)
    notes = [n for n in report.notes if n.kind == "exif_orientation"]
    assert report.ok and [n.path for n in notes] == ["test/1_scratch/scratch_000.jpg"]
    assert "6" in notes[0].message and "stored" in notes[0].message
    code, text = run_cli(["validate", str(root), *expect_args(small_counts)], capsys)
    assert code == 0 and "scratch_000.jpg" in text and "orientation" in text


def test_validate_names_files_never_object_reprs(make_layout, tmp_path, small_counts, capsys):
    root = make_layout(tmp_path)
    (root / "test" / "2_paint" / "paint_000.jpg").write_bytes(b"this is not an image at all")
    report = validate(root, small_counts)
    [problem] = report.problems
    assert problem.path == "test/2_paint/paint_000.jpg" and "paint_000.jpg" in problem.message
    code, text = run_cli(["validate", str(root), *expect_args(small_counts)], capsys)
    assert code == 1 and "object at 0x" not in text and "BytesIO" not in text


def test_tiny_and_extreme_images_get_a_note(make_layout, tmp_path, small_counts, capsys):
    root = make_layout(tmp_path)
    write_image(root / "train" / "0_good" / "good_000.jpg", noise_pixels(1, 1), "JPEG")
    write_image(root / "test" / "0_good" / "good_000.jpg",
                np.zeros((20, 2000, 3), np.uint8), "JPEG")
    report = validate(root, small_counts)
    by_kind = {n.kind: n for n in report.notes}
    assert report.ok and set(by_kind) >= {"small_image", "aspect_ratio"}
    small = [n for n in report.notes if n.kind == "small_image"]
    assert "1x1" in small[0].message and "2000x20" in small[1].message
    assert by_kind["aspect_ratio"].path == "test/0_good/good_000.jpg"
    assert "2000x20" in by_kind["aspect_ratio"].message
    assert [n.path for n in small] == ["train/0_good/good_000.jpg",
                                       "test/0_good/good_000.jpg"]  # 20 px high: both notes
    assert all("stretched" in n.message for n in by_kind.values())
    assert {n["kind"] for n in json.loads(report.to_json())["notes"]} >= {"small_image"}
    code, text = run_cli(["validate", str(root), *expect_args(small_counts)], capsys)
    assert code == 0 and "stretched" in text
    clean = make_layout(tmp_path, name="clean")
    assert validate(clean, small_counts).notes == []


def test_a_group_missing_a_type_gets_a_note(make_layout, tmp_path, small_counts) -> None:
    counts = {**small_counts, "test/paint": 0}
    root = make_layout(tmp_path, counts)
    report = validate(root, counts)
    [note] = [n for n in report.notes if n.kind == "missing_type"]
    assert report.ok and "paint" in note.message and "scratch" in note.message
    assert layout.missing_types(["good", "scratch", "over_coupling", "lacking"]) == {
        "local": ("paint",)}
    assert layout.missing_types(["good", "scratch"]) == {
        "local": ("paint",), "co_occurrence": ("over_coupling", "lacking")}
    assert layout.missing_types(layout.CATEGORY_NAMES) == {}


def test_synth_provenance_holds_only_while_its_files_are_unchanged(tmp_path,
                                                                   monkeypatch) -> None:
    out = generate(tmp_path / "s", counts="small", size=32, workers=1, progress=False)
    drawn = layout.synth_settings(out)
    assert drawn is not None and drawn["seed"] == 0 and "files" not in drawn
    assert detect_provenance(out).seed == 0
    image = out / "test" / "2_paint" / "000.jpg"
    buf = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(buf, "JPEG")
    image.write_bytes(buf.getvalue())
    assert layout.synth_settings(out) is None
    assert detect_provenance(out).seed is None
    # a cached set edited in place: its folder name (seedN-...) is no provenance either
    from cadsd.format import cache

    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "cache"))
    cached = generate(cache.synthetic_dataset_dir(4, "small", 32), counts="small", size=32,
                      seed=4, workers=1, progress=False)
    assert detect_provenance(cached).seed == 4
    (cached / "train" / "0_good" / "000.jpg").write_bytes(buf.getvalue())
    assert detect_provenance(cached).seed is None
    for change in ("removed", "added"):
        fresh = generate(tmp_path / change, counts="small", size=32, workers=1, progress=False)
        if change == "removed":
            (fresh / "test" / "2_paint" / "000.jpg").unlink()
        else:
            write_image(fresh / "test" / "0_good" / "999.jpg", noise_pixels(3, 32), "JPEG")
        assert layout.synth_settings(fresh) is None
