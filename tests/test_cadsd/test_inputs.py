"""Inputs that once crashed, misled or changed a result silently: 16-bit images, empty and
undecodable files, layouts told by their structure (never by category names), one mask rule,
BTAD's published facts, MVTec AD's current URL with its fallback, an empty training split."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_bench, run_cli
from fixtures import DUMMY, write_image, write_layout
from PIL import Image
from test_zoo import write_btad, write_loco, write_mvtec

from baselines.errors import InputError
from baselines.preprocess import image_to_uint8, mask_to_tensor
from cadsd import zoo
from cadsd.checking.imagecheck import mode_findings
from cadsd.errors import LayoutError
from cadsd.format.images import mode_problem, to_rgb
from cadsd.zoo.base import MASK_THRESHOLD, binary_mask, union_mask
from leaderboard.running.data import _decode

pytestmark = pytest.mark.usefixtures("private_cache")


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def test_a_16bit_png_reads_as_its_8bit_image_in_both_commands() -> None:
    grey = np.random.default_rng(0).integers(0, 256, (40, 40), dtype=np.uint8)
    deep = _png(grey.astype(np.uint16) * 257)  # the same image at 16 bits
    assert Image.open(io.BytesIO(deep)).mode == "I;16"
    # bench run: scaled, not clipped (PIL's convert("RGB") would clip most of it to 255)
    assert torch.equal(image_to_uint8(deep), image_to_uint8(_png(grey)))
    # cadsd validate: the same rule, a warning that says what loaders do
    (finding,) = mode_findings([("a.png", "I;16", "PNG")])
    assert finding[3] is False and "scale them to 8 bits" in finding[2]
    # a mode with no known range is refused by both, with the same words
    (finding,) = mode_findings([("b.tif", "F", "TIFF")])
    assert finding[3] is True and finding[2] == mode_problem("F", "TIFF")
    with pytest.raises(ValueError, match="no known range"):
        to_rgb(Image.fromarray(np.zeros((4, 4), np.float32)))


@pytest.mark.parametrize("payload,why", [(b"", "zero-byte"), (b"not an image", "cannot decode")])
def test_a_bad_image_in_bench_run_names_its_file(payload: bytes, why: str) -> None:
    row = {"image": {"bytes": payload, "path": None}, "file_name": "test/0_good/x.png",
           "category": "good", "group": "normal", "label": "normal"}
    with pytest.raises(InputError, match=why) as err:
        _decode([row], __import__("baselines.preprocess").preprocess.DEFAULT_INPUT,
                lambda: None, "/data/set")
    assert "/data/set/test/0_good/x.png" in str(err.value) and "BytesIO" not in str(err.value)


def test_bench_run_names_a_zero_byte_file_and_writes_nothing(capsys: pytest.CaptureFixture,
                                                             tmp_path: Path) -> None:
    root = write_layout(tmp_path, fmt="png")
    bad = min((root / "test").rglob("*.png"))
    bad.write_bytes(b"")
    code, text = run_bench(capsys, "run", "--methods", DUMMY, "--dataset", str(root),
                           "--out", str(tmp_path / "run"))
    assert code == 1 and str(bad) in text and "zero-byte" in text
    assert not (tmp_path / "run").exists()


def _rename(root: Path, old: str, new: str) -> Path:
    shutil.move(root / old, root / new)
    return root


def test_layouts_are_told_by_structure_not_by_category_names(tmp_path: Path) -> None:
    loco = _rename(write_loco(tmp_path / "loco"), "breakfast_box", "dummy")
    mvtec = _rename(write_mvtec(tmp_path / "mvtec", ("bottle",)), "bottle", "dummy")
    btad = _rename(write_btad(tmp_path / "btad"), "01", "dummy")
    assert [zoo.detect(p)[0].name for p in (loco, mvtec, btad)] == [
        "loco_layout", "mvtec_layout", "btad_layout"]
    assert zoo.detect(write_loco(tmp_path / "official"))[0] is zoo.MVTEC_LOCO
    generic = zoo.detect(loco)[0]
    assert "AITEX" not in generic.title and "MVTec LOCO AD's layout" in generic.title
    assert not generic.counts and not generic.paper and not generic.url
    dd = zoo.build(generic, loco, "dummy")  # LOCO's masks are read, never dropped
    test = dd["test"]
    assert sum(m is not None for m in test["mask"]) == sum(lab == 1 for lab in test["label"]) == 4
    assert set(test.features["group"].names) == {"normal", "logical", "structural"}


def test_a_layout_named_wrongly_is_refused(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    loco = write_loco(tmp_path / "loco")
    code, text = run_cli(["validate", "--dataset", "aitex", str(loco)], capsys)
    assert code == 1 and "MVTec LOCO AD's layout" in text and "--dataset mvtec_loco" in text
    with pytest.raises(LayoutError, match="BTAD's layout"):
        zoo.MVTEC_AD.samples(_rename(write_btad(tmp_path / "btad"), "01", "bottle"), "bottle")


def test_masks_an_mvtec_layout_cannot_read_are_an_error(tmp_path: Path) -> None:
    root = write_mvtec(tmp_path / "mvtec", ("bottle",))
    nested = root / "bottle" / "ground_truth" / "crack" / "000"
    nested.mkdir()
    shutil.move(root / "bottle" / "ground_truth" / "crack" / "000_mask.png", nested / "000.png")
    with pytest.raises(LayoutError, match="MVTec LOCO AD's layout"):  # told by structure
        zoo.AITEX.samples(root, "bottle")
    from cadsd.zoo.layouts import index_aitex

    with pytest.raises(LayoutError, match="does not read"):  # and the indexer never skips them
        index_aitex(root / "bottle", "bottle")
    # generic MVTec layout: a ground_truth/ folder means every anomalous image needs a mask
    root = _rename(write_mvtec(tmp_path / "other", ("bottle",)), "bottle", "dummy")
    (root / "dummy" / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(LayoutError, match="has no mask"):
        zoo.detect(root)[0].samples(root, "dummy")


def test_one_mask_rule_for_single_masks_and_unions(tmp_path: Path) -> None:
    grey = np.zeros((16, 16), np.uint8)
    grey[:, :4] = MASK_THRESHOLD  # not a defect (at the threshold)
    grey[:, 4:8] = MASK_THRESHOLD + 1  # a defect
    grey[:, 8:12] = 255
    one = write_image(tmp_path / "a.png", grey)
    empty = write_image(tmp_path / "b.png", np.zeros((16, 16), np.uint8))
    from baselines.preprocess import InputSpec

    spec = InputSpec(resize=16, crop=None, resample="nearest")
    single = mask_to_tensor(union_mask((one,))["bytes"], spec).numpy()
    union = mask_to_tensor(union_mask((one, empty))["bytes"], spec).numpy()
    assert (single == union).all() and (single == binary_mask(Image.open(one))).all()
    assert single[:, 4:12].all() and not single[:, :4].any() and not single[:, 12:].any()


def test_btad_licence_counts_and_folder_names(tmp_path: Path) -> None:
    assert zoo.BTAD.license.startswith("CC BY-SA 4.0") and not zoo.BTAD.noncommercial
    assert {c: v["train/ok"] for c, v in zoo.BTAD.counts.items()} == {
        "01": 400, "02": 1000, "03": 399}
    root = write_btad(tmp_path / "btad")
    diffs = zoo.count_report(zoo.BTAD, root, "01", zoo.BTAD.samples(root, "01"))
    assert diffs == ["01/train/ok: 5 images, published 400"]  # the folder as on disk
    from cadsd.zoo.card import HUB_LICENSES, license_warning

    assert HUB_LICENSES[zoo.BTAD.license] == "cc-by-sa-4.0" and "share" in zoo.BTAD.license
    assert "must keep that licence" in license_warning(zoo.BTAD)


def test_mvtec_ad_current_url_first_then_the_fallback(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert zoo.MVTEC_AD.urls[0].startswith("https://www.mydrive.ch/shares/150996/")
    assert len(zoo.MVTEC_AD.urls) == 2
    import tarfile
    from dataclasses import replace

    from cadsd.errors import DownloadError
    from cadsd.zoo import download as zdl

    tree = write_mvtec(tmp_path / "src" / "mvtec_anomaly_detection")
    archive = tmp_path / "mvtec.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tree, arcname="mvtec_anomaly_detection")
    tried = []

    def fake_fetch(url: str, stage: Path, *, sha256: str | None, policy: object) -> Path:
        tried.append((url, sha256))
        if url.endswith("/gone"):
            raise DownloadError(f"{url}: HTTP 404 Not Found; check the URL")
        return archive

    monkeypatch.setattr(zdl, "fetch_url", fake_fetch)
    bench = replace(zoo.MVTEC_AD, url="https://a.example/gone", sha256="ab" * 32,
                    mirrors=("https://b.example/ok",))
    folder, _ = zdl.download(bench, dest=tmp_path / "dest")
    assert [u for u, _ in tried] == ["https://a.example/gone", "https://b.example/ok"]
    assert all(s == "ab" * 32 for _, s in tried)  # every official URL is sha256-checked
    assert (folder / "bottle" / "train").is_dir()
    bench = replace(bench, mirrors=("https://c.example/gone",))
    with pytest.raises(DownloadError, match="none of the 2 official URLs"):
        zdl.download(bench, dest=tmp_path / "dest2")


def test_an_empty_training_split_is_never_accepted(capsys: pytest.CaptureFixture,
                                                   tmp_path: Path) -> None:
    root = write_layout(tmp_path, {"train/good": 0, "test/good": 2, "test/scratch": 2})
    (root / "train" / "0_good").mkdir(parents=True, exist_ok=True)
    code, text = run_cli(["validate", str(root)], capsys)
    assert code == 1 and "never usable" in text and "--expect train/good=0" not in text
    code, text = run_cli(["validate", str(root), "--expect", "train/good=0"], capsys)
    assert code == 1 and "never usable" in text


def test_the_console_summary_of_a_loco_run_shows_its_groups(capsys: pytest.CaptureFixture,
                                                            tmp_path: Path) -> None:
    root = write_loco(tmp_path / "loco")
    code, text = run_bench(capsys, "run", "--methods", DUMMY, "--dataset", str(root),
                           "--out", str(tmp_path / "run"))
    summary = text[text.index("image AUROC (%)"):]
    assert code == 0 and "logical (avg)" in summary and "structural (avg)" in summary
    assert "co-occurrence" not in summary
