"""cadsd.format.hf and `cadsd build`: exact features, byte-identical images, save/load round trips."""

from __future__ import annotations

import re
from collections import Counter

import datasets
import pytest
from cli_helpers import expect_args, run_cli

from cadsd.errors import CadsdError, DownloadError, LayoutError
from cadsd.format.hf import build, features, fingerprint, load, save
from cadsd.format.layout import CATEGORY_NAMES, GROUP_NAMES, LABEL_NAMES, index


def raw_images(ds: datasets.Dataset, column: str = "image") -> list[dict | None]:
    """The stored {bytes, path} structs, without decoding."""
    return ds.cast_column(column, datasets.Image(decode=False))[column]


def test_features_are_the_contract() -> None:
    feats = features(with_mask=False)
    assert list(feats) == ["image", "label", "category", "group", "file_name"]
    assert isinstance(feats["image"], datasets.Image) and feats["image"].decode
    assert feats["label"].names == list(LABEL_NAMES) == ["normal", "anomaly"]
    assert feats["category"].names == [
        "good",
        "scratch",
        "paint",
        "over_coupling",
        "lacking",
    ]
    assert feats["group"].names == list(GROUP_NAMES) == ["normal", "local", "co_occurrence"]
    assert feats["file_name"] == datasets.Value("string")
    assert list(features(with_mask=True))[-1] == "mask"


def test_build_save_load_round_trip(make_layout, tmp_path, small_counts) -> None:
    root = make_layout(tmp_path)
    out = save(build(root), tmp_path / "ds")
    dd = datasets.load_from_disk(str(out))
    assert list(dd) == ["train", "test"]
    samples = index(root)
    for split, ds in dd.items():
        assert ds.features == features(with_mask=False)
        rows = [s for s in samples if s.split == split]
        assert ds["file_name"][:] == [s.file_name for s in rows]  # index() order
        assert [CATEGORY_NAMES[i] for i in ds["category"]] == [s.category for s in rows]
        assert [LABEL_NAMES[i] for i in ds["label"]] == [s.label for s in rows]
        assert [GROUP_NAMES[i] for i in ds["group"]] == [s.group for s in rows]
        # The JPEG bytes are the files' bytes: nothing was re-encoded.
        assert [r["bytes"] for r in raw_images(ds)] == [s.path.read_bytes() for s in rows]
        assert all(r["path"] is None for r in raw_images(ds))
        counts = Counter(f"{split}/{CATEGORY_NAMES[i]}" for i in ds["category"])
        assert counts == {k: n for k, n in small_counts.items() if k.startswith(split)}
    assert dd["test"][0]["image"].size == (32, 32)
    assert {p.name for p in tmp_path.iterdir()} == {"cadsd", "ds"}  # no staging left


def test_masks_and_pngs_round_trip(make_layout, tmp_path) -> None:
    root = make_layout(tmp_path, fmt="PNG", mode="L", masks=True)
    dd = load(save(build(root), tmp_path / "ds"))
    test = dd["test"]
    assert test.features == features(with_mask=True)
    masks = raw_images(test, "mask")
    for name, mask in zip(test["file_name"], masks):
        assert (mask is None) == name.startswith("test/0_good/")
    first_anomaly = next(i for i, m in enumerate(masks) if m is not None)
    stem = test["file_name"][first_anomaly].rsplit("/", 1)[1].rsplit(".", 1)[0]
    mask_file = next((root / "ground_truth").rglob(f"{stem}_mask.png"))
    assert masks[first_anomaly]["bytes"] == mask_file.read_bytes()
    assert raw_images(test)[0]["bytes"][:8] == b"\x89PNG\r\n\x1a\n"  # PNG stays PNG
    assert test[0]["image"].mode == "L"


def test_save_refuses_to_overwrite(make_layout, tmp_path) -> None:
    dd = build(make_layout(tmp_path, {"train/good": 2, "test/good": 1}))
    out = save(dd, tmp_path / "ds")
    with pytest.raises(CadsdError, match="--force"):
        save(dd, out)
    small = datasets.DatasetDict({"train": dd["train"].select([0]), "test": dd["test"]})
    save(small, out, overwrite=True)
    assert datasets.load_from_disk(str(out))["train"].num_rows == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cadsd", "ds"]
    (tmp_path / "empty").mkdir()
    assert save(dd, tmp_path / "empty").name == "empty"  # an empty folder is fine


def test_load_sources_and_errors(make_layout, tmp_path, small_counts) -> None:
    root = make_layout(tmp_path)
    assert load(root)["test"].num_rows == sum(small_counts.values()) - 4
    assert load(save(build(root), tmp_path / "ds"))["train"].num_rows == 4
    with pytest.raises(LayoutError, match="not found"):
        load(tmp_path / "nope")
    (tmp_path / "other").mkdir()
    with pytest.raises(LayoutError, match="neither a dataset folder"):
        load(tmp_path / "other")
    build(root)["train"].save_to_disk(str(tmp_path / "single"))
    with pytest.raises(CadsdError, match="single split"):
        load(tmp_path / "single")
    with pytest.raises(CadsdError, match="hf:ORG/NAME"):
        load("hf:no-slash")


def test_load_from_hub_casts_and_reports_errors(make_layout, tmp_path, monkeypatch) -> None:
    built = build(make_layout(tmp_path, {"train/good": 2, "test/good": 1, "test/paint": 1}))
    # A Hub copy whose file_name/label came back as plain columns is cast to the contract.
    plain = datasets.DatasetDict(
        {s: ds.cast_column("group", datasets.Value("int64")) for s, ds in built.items()}
    )
    calls = []
    monkeypatch.setattr(
        datasets,
        "load_dataset",
        lambda repo, revision=None: calls.append((repo, revision)) or plain,
    )
    dd = load("hf:org/cadsd@v1.0")
    assert calls == [("org/cadsd", "v1.0")]
    assert dd["test"].features == features(with_mask=False)
    assert fingerprint(dd) == fingerprint(built)

    renamed = datasets.DatasetDict(
        {
            s: ds.cast_column("label", datasets.ClassLabel(names=["ok", "bad"]))
            for s, ds in built.items()
        }
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda repo, revision=None: renamed)
    with pytest.raises(CadsdError, match="classes"):
        load("hf:org/cadsd")

    def offline(repo, revision=None):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DownloadError, match="could not load org/cadsd"):
        load("hf:org/cadsd")


def test_fingerprint_is_the_same_for_folder_built_and_saved(make_layout, tmp_path) -> None:
    root = make_layout(tmp_path)
    out = save(build(root), tmp_path / "ds")
    value = fingerprint(root)
    assert len(value) == 64
    assert fingerprint(build(root)) == value == fingerprint(out) == fingerprint(load(out))
    (root / "test" / "2_paint" / "paint_000.jpg").rename(root / "test" / "2_paint" / "x.jpg")
    assert fingerprint(root) != value
    other = make_layout(tmp_path, name="other", seed=1)
    assert fingerprint(other) != value


def test_build_cli(make_layout, tmp_path, small_counts, capsys) -> None:
    root = make_layout(tmp_path)
    out = tmp_path / "ds"
    code, text = run_cli(["build", str(root), "--out", str(out)], capsys)
    assert code == 1 and "refusing to build" in text and "expected 400" in text
    assert not out.exists()
    code, text = run_cli(
        ["build", str(root), "--out", str(out), *expect_args(small_counts)], capsys
    )
    assert code == 0 and re.search(r"over_coupling\W+2\b", text)
    assert re.search(r"test\W+all\W+11\b", text)
    assert datasets.load_from_disk(str(out))["train"].num_rows == 4
    code, text = run_cli(["build", str(root), "--out", str(out), "--no-validate"], capsys)
    assert code == 1 and "--force" in text
    code, _ = run_cli(["build", str(root), "--out", str(out), "--no-validate", "--force"], capsys)
    assert code == 0
    code, text = run_cli(["build", str(tmp_path / "nope"), "--out", str(out)], capsys)
    assert code == 1 and "not found" in text
