"""Synthetic CAD-SD: layout and counts, masks, determinism, defect geometry, audit, CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from PIL import Image

from cadsd.errors import CadsdError
from cadsd.format import cache, layout
from cadsd.synth import (
    COUNTS,
    audit,
    dataset,
    ensure_synthetic,
    generate,
    is_complete,
    render_sample,
    violations,
)

SIZE = 96  # small images keep the suite fast; geometry tests render at the paper's 256


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "small"
    return generate(out, seed=0, counts="small", size=SIZE, workers=1, progress=False)


def test_small_counts_and_layout(small: Path) -> None:
    samples = layout.index(small)
    got: dict[tuple[str, str], int] = {}
    for s in samples:
        got[(s.split, s.category)] = got.get((s.split, s.category), 0) + 1
    assert got == COUNTS["small"]
    # Exactly the official folders, plus ground_truth for the four anomaly folders.
    for split, folders in layout.SPLIT_FOLDERS.items():
        assert sorted(p.name for p in (small / split).iterdir()) == sorted(folders)
    anomaly_folders = sorted(c.folder for c in layout.CATEGORIES if c.label != "normal")
    assert sorted(p.name for p in (small / layout.MASK_DIR).iterdir()) == anomaly_folders
    assert sorted(p.name for p in small.iterdir()) == sorted(
        [*layout.SPLITS, layout.MASK_DIR, layout.SYNTH_MARKER]
    )
    # the set says what it is, inside the folder (a copy keeps it): settings and renderer
    assert layout.synth_settings(small) == {
        "generator": "cadsd synth", "render_version": dataset.RENDER_VERSION,
        "seed": 0, "counts": "small", "size": SIZE,
    }
    names = [p.name for p in sorted((small / "train" / "0_good").iterdir())]
    assert names == [f"{i:03d}.jpg" for i in range(COUNTS["small"][("train", "good")])]
    with Image.open(samples[0].path) as img:
        assert img.mode == "RGB" and img.size == (SIZE, SIZE)
        assert "exif" not in img.info
    assert is_complete(small, "small") and not is_complete(small, "paper")


def test_paper_counts_are_the_papers() -> None:
    assert COUNTS["paper"] == layout.PAPER_COUNTS
    assert sum(n for (split, _), n in COUNTS["paper"].items() if split == "test") == 376


def test_masks_only_for_anomalies(small: Path) -> None:
    for s in layout.index(small):
        if s.label == "normal":
            assert s.mask is None
            continue
        assert s.mask == layout.mask_path(small, s.path.parent.name, s.path)
        with Image.open(s.mask) as m:
            assert m.mode == "L" and m.size == (SIZE, SIZE)
            values = np.unique(np.asarray(m))
        assert set(values.tolist()) <= {0, 255} and 255 in values, s.file_name


def test_same_seed_identical_bytes_any_workers(small: Path, tmp_path: Path) -> None:
    again = generate(tmp_path / "again", seed=0, counts="small", size=SIZE, workers=2,
                     progress=False)
    assert _digests(again) == _digests(small)
    other = generate(tmp_path / "seed1", seed=1, counts="small", size=SIZE, workers=2,
                     progress=False)
    a, b = _digests(small), _digests(other)
    assert a.keys() == b.keys()
    assert sum(a[k] != b[k] for k in a) == len(a)  # every file differs


def test_refuses_non_empty_out_and_overwrites_with_force(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(CadsdError, match="--force"):
        generate(out, counts="small", size=SIZE, workers=1, progress=False)
    # --force replaces only a folder `cadsd synth` wrote: never the user's own
    with pytest.raises(CadsdError, match="cadsd synth"):
        generate(out, counts="small", size=SIZE, workers=1, progress=False, overwrite=True)
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    generate(out, counts="small", size=SIZE, workers=1, progress=False)
    generate(out, seed=1, counts="small", size=SIZE, workers=1, progress=False, overwrite=True)
    assert is_complete(out, "small") and layout.synth_settings(out)["seed"] == 1
    with pytest.raises(CadsdError, match="unknown counts"):
        generate(tmp_path / "x", counts="huge", progress=False)


def test_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    calls = {"n": 0}
    real = dataset.render_sample

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(dataset, "render_sample", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "cut", counts="small", size=SIZE, workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []  # neither the dataset nor its staging folder


def test_scratch_area_is_2_to_4_percent_of_product() -> None:
    for i in range(5):
        r = render_sample(0, "test", "scratch", i, size=256)
        frac = r.mask.sum() / r.product.sum()
        assert 0.02 <= frac <= 0.04, (i, frac)
        assert (r.mask & ~r.product).sum() == 0  # the mark is on the product


def test_nuts_per_category_from_geometry() -> None:
    good = render_sample(0, "test", "good", 0, size=128)
    over = render_sample(0, "test", "over_coupling", 0, size=128)
    lack = render_sample(0, "test", "lacking", 0, size=128)
    assert len(good.scene.nuts) == 1 and good.nuts.sum() > 0 and good.mask is None
    assert len(over.scene.nuts) == 2 and over.nuts.sum() > 1.5 * good.nuts.sum()
    assert np.array_equal(over.mask, over.nuts)
    assert lack.scene.nuts == () and lack.nuts.sum() == 0
    # The mask marks where the nuts should be; there, only the thin rod is drawn.
    assert lack.mask.sum() > 0
    assert (lack.mask & lack.product).sum() < 0.6 * lack.mask.sum()
    # Paint and scratch stay off the co-occurrence structure: still one nut.
    for cat in ("scratch", "paint"):
        r = render_sample(0, "test", cat, 1, size=128)
        assert len(r.scene.nuts) == 1 and r.mask.sum() > 0


def test_audit_reports_aurocs(small: Path) -> None:
    rows = audit(small)
    assert {r.category for r in rows} == {"scratch", "paint", "over_coupling", "lacking"}
    assert {r.statistic for r in rows} >= {"mean_saturation", "dark_area", "product_area"}
    assert all(0.0 <= r.auroc <= 1.0 and 0.5 <= r.separation <= 1.0 for r in rows)
    paint_sat = next(r for r in rows if (r.statistic, r.category) == ("mean_saturation", "paint"))
    assert paint_sat.limit == 0.8


def test_ensure_synthetic_uses_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    path = ensure_synthetic(seed=3, counts="small", size=64, progress=False)
    assert path == cache.synthetic_dataset_dir(3, "small", 64) and is_complete(path, "small")
    first = path / "train" / "0_good" / "000.jpg"
    inode = first.stat().st_ino
    assert ensure_synthetic(seed=3, counts="small", size=64, progress=False) == path
    assert first.stat().st_ino == inode  # cached: not regenerated
    # A set drawn by another renderer version is regenerated in place; so is a damaged one.
    monkeypatch.setattr(dataset, "RENDER_VERSION", dataset.RENDER_VERSION + 1)
    assert ensure_synthetic(seed=3, counts="small", size=64, progress=False) == path
    assert first.stat().st_ino != inode
    first.unlink()
    assert ensure_synthetic(seed=3, counts="small", size=64, progress=False) == path
    assert is_complete(path, "small")
    assert sorted(p.name for p in tmp_path.rglob("*") if p.name.startswith(".")) == []


def test_a_cached_set_from_before_the_file_list_is_redrawn(tmp_path: Path, monkeypatch) -> None:
    """A marker without its file list (written before issue 33): the files a synth set of its
    counts holds are the tool's, so the cache is redrawn; a file synth never writes blocks it."""
    import json

    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    path = ensure_synthetic(seed=3, counts="small", size=64, progress=False)
    marker = path / layout.SYNTH_MARKER

    def forget_files() -> None:
        doc = json.loads(marker.read_text())
        doc.pop("files")
        marker.write_text(json.dumps(doc))

    forget_files()
    assert layout.synth_settings(path) is None  # unverifiable: not "drawn by cadsd synth"
    assert ensure_synthetic(seed=3, counts="small", size=64, progress=False) == path
    assert layout.synth_settings(path)["seed"] == 3
    forget_files()
    (path / "train" / "0_good" / "mine.jpg").write_bytes(b"x")
    with pytest.raises(CadsdError, match="mine.jpg"):
        ensure_synthetic(seed=3, counts="small", size=64, progress=False)
    assert (path / "train" / "0_good" / "mine.jpg").read_bytes() == b"x"


def test_cli_generate_refuse_force_and_audit(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "cli")
    args = ["synth", "--out", out, "--counts", "small", "--size", "64", "--workers", "1"]
    assert run_cli(args, capsys)[0] == 0
    assert is_complete(out, "small")
    code, text = run_cli(args, capsys)
    assert code == 1 and "not empty" in text and "--force" in text
    assert run_cli([*args, "--force"], capsys)[0] == 0
    expected = 1 if violations(audit(out)) else 0
    code, text = run_cli(["synth", "--audit", out], capsys)
    assert code == expected and "mean_saturation" in text
    assert run_cli(["synth"], capsys)[0] == 2  # neither --out nor --audit
    assert run_cli(["synth", "--audit", str(tmp_path / "missing")], capsys)[0] == 1


def test_audit_judges_limits_only_with_enough_images(small: Path) -> None:
    from cadsd.synth.audit import MIN_IMAGES, AuditRow

    rows = audit(small)  # 6 normal, 3 per anomaly: too few to judge any limit
    assert all(r.images[0] == 6 and r.images[1] == 3 for r in rows)
    assert not any(r.judged for r in rows) and violations(rows) == []
    enough = (MIN_IMAGES, MIN_IMAGES)
    assert not AuditRow("mean_saturation", "paint", 0.95, 0.8, enough).ok
    assert AuditRow("mean_saturation", "paint", 0.95, 0.8, (MIN_IMAGES, MIN_IMAGES - 1)).ok
    assert AuditRow("mean_saturation", "paint", 0.75, 0.8, enough).ok
    assert AuditRow("product_area", "lacking", 1.0, None, enough).ok  # reported, no limit
