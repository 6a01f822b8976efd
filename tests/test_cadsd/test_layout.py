"""cadsd.format.layout: folder names, resolve_root (wrapping folder) and index order."""

from __future__ import annotations

import pytest

from cadsd.errors import LayoutError
from cadsd.format.layout import CATEGORY_NAMES, PAPER_COUNTS, WRAPPER_NAME, index, resolve_root


def test_paper_counts_cover_every_category() -> None:
    assert sum(PAPER_COUNTS.values()) == 776
    assert {c for _, c in PAPER_COUNTS} == set(CATEGORY_NAMES)


def test_index_is_sorted_and_labelled(make_layout, tmp_path, small_counts) -> None:
    root = make_layout(tmp_path)
    samples = index(root)
    assert len(samples) == sum(small_counts.values())
    order = [(s.split, CATEGORY_NAMES.index(s.category), s.path.name) for s in samples]
    assert order == sorted(order, key=lambda t: (t[0] != "train", t[1], t[2]))
    first = samples[0]
    assert (first.split, first.category, first.label, first.group) == (
        "train",
        "good",
        "normal",
        "normal",
    )
    over = next(s for s in samples if s.category == "over_coupling")
    assert (over.label, over.group) == ("anomaly", "co_occurrence")
    assert over.file_name == f"test/3_over-coupling/{over.path.name}"
    assert all(s.mask is None for s in samples)


def test_index_attaches_masks_to_test_anomalies(make_layout, tmp_path) -> None:
    samples = index(make_layout(tmp_path, masks=True))
    for s in samples:
        assert (s.mask is not None) == (s.split == "test" and s.category != "good")
        if s.mask is not None:
            assert s.mask.name == f"{s.path.stem}_mask.png"


@pytest.mark.parametrize("fmt", ["JPG", "jpeg", "Jpeg", "png", "PNG"])
def test_suffixes_in_any_case_are_images(make_layout, tmp_path, fmt) -> None:
    samples = index(make_layout(tmp_path, fmt=fmt))
    assert len(samples) == 15 and all(s.path.suffix == f".{fmt}" for s in samples)


def test_hidden_files_are_skipped(make_layout, tmp_path) -> None:
    root = make_layout(tmp_path)
    n = len(index(root))
    (root / "train" / "0_good" / "._good_000.jpg").write_bytes(b"\x00\x05\x16\x07")
    assert len(index(root)) == n


def test_wrapping_folder_is_accepted(make_layout, tmp_path) -> None:
    inner = make_layout(tmp_path / "download", name=WRAPPER_NAME)
    assert resolve_root(tmp_path / "download") == inner
    assert len(index(tmp_path / "download")) == 15


def test_any_single_wrapping_folder_is_accepted_but_two_are_ambiguous(make_layout, tmp_path):
    make_layout(tmp_path / "d", name="copy-a")
    assert resolve_root(tmp_path / "d").name == "copy-a"
    make_layout(tmp_path / "d", name="copy-b")
    with pytest.raises(LayoutError, match="several datasets"):
        resolve_root(tmp_path / "d")


def test_missing_path_file_path_and_empty_folder_raise(tmp_path) -> None:
    with pytest.raises(LayoutError, match="not found"):
        index(tmp_path / "nope")
    (tmp_path / "data.zip").write_bytes(b"PK")
    with pytest.raises(LayoutError, match="is a file"):
        index(tmp_path / "data.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError, match="no train/ or test/"):
        index(tmp_path / "empty")
