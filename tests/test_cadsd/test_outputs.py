"""Folders the toolkit writes (issue 33): `--force` replaces only a folder the tool wrote (its
marker file, and no file it did not list), never the source, a folder holding the source or a
plain user folder; links that leave a dataset are refused wherever files are read or copied;
errors stay short."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_helpers import run_cli
from fixtures import noise_pixels, square_mask, write_image

from cadsd import zoo
from cadsd.checking.validate import validate
from cadsd.errors import CadsdError, LinkError
from cadsd.format import hf
from cadsd.format.layout import index
from cadsd.getting.download import download
from cadsd.synth import generate
from cadsd.zoo.download import download as zoo_download

pytestmark = pytest.mark.usefixtures("private_cache")


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _mvtec(root: Path) -> Path:
    seed = 0
    for i in range(3):
        write_image(root / "bottle" / "train" / "good" / f"{i:03d}.png", noise_pixels(seed := seed + 1, 32))
        write_image(root / "bottle" / "test" / "good" / f"{i:03d}.png", noise_pixels(seed := seed + 1, 32))
        write_image(root / "bottle" / "test" / "crack" / f"{i:03d}.png", noise_pixels(seed := seed + 1, 32))
        write_image(root / "bottle" / "ground_truth" / "crack" / f"{i:03d}_mask.png", square_mask(32))
    return root


# --- item 1: --force ---------------------------------------------------------------------------


def test_build_force_never_deletes_the_source_or_a_user_folder(make_layout, tmp_path, capsys):
    parent = tmp_path / "parent"
    data = make_layout(parent)  # parent/cadsd
    (parent / "notes.txt").write_text("mine")
    before = _tree(parent)
    code, text = run_cli(["build", str(data), "--out", str(parent), "--force", "--no-validate"],
                         capsys)
    assert code == 1 and "source" in text and _tree(parent) == before
    code, text = run_cli(["build", str(data), "--out", str(data), "--force", "--no-validate"],
                         capsys)
    assert code == 1 and "source" in text and _tree(parent) == before
    # a plain user folder that was never a build: refused, named why
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("x")
    code, text = run_cli(["build", str(data), "--out", str(mine), "--force", "--no-validate"],
                         capsys)
    assert code == 1 and "cadsd build" in text and (mine / "thesis.tex").read_text() == "x"
    # a build folder is replaced; a file added to it afterwards blocks the replacement
    out = tmp_path / "built"
    assert run_cli(["build", str(data), "--out", str(out), "--no-validate"], capsys)[0] == 0
    assert run_cli(["build", str(data), "--out", str(out), "--no-validate", "--force"],
                   capsys)[0] == 0
    (out / "extra.txt").write_text("mine")
    code, text = run_cli(["build", str(data), "--out", str(out), "--no-validate", "--force"],
                         capsys)
    assert code == 1 and "extra.txt" in text and (out / "extra.txt").is_file()
    assert hf.load(out)["train"].num_rows == 4


def test_save_api_follows_the_same_rule(make_layout, tmp_path):
    data = make_layout(tmp_path)
    dd = hf.build(data)
    with pytest.raises(CadsdError, match="source"):
        hf.build_to_disk(data, tmp_path, overwrite=True)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "a.txt").write_text("a")
    with pytest.raises(CadsdError, match="did not write|not written"):
        hf.save(dd, tmp_path / "plain", overwrite=True)
    assert (tmp_path / "plain" / "a.txt").read_text() == "a"
    (tmp_path / "file").write_text("f")
    with pytest.raises(CadsdError, match="file"):
        hf.save(dd, tmp_path / "file", overwrite=True)
    assert (tmp_path / "file").read_text() == "f"


def test_synth_force_replaces_only_its_own_folder(tmp_path, capsys):
    args = ["synth", "--counts", "small", "--size", "32", "--workers", "1"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    code, text = run_cli([*args, "--out", str(mine), "--force"], capsys)
    assert code == 1 and "cadsd synth" in text and (mine / "keep.txt").read_text() == "mine"
    (tmp_path / "a_file").write_text("x")  # --force used to delete a file at --out
    with pytest.raises(CadsdError, match="is a file"):
        generate(tmp_path / "a_file", counts="small", size=32, workers=1, progress=False,
                 overwrite=True)
    assert (tmp_path / "a_file").read_text() == "x"
    out = tmp_path / "set"
    assert run_cli([*args, "--out", str(out)], capsys)[0] == 0
    assert run_cli([*args, "--out", str(out), "--force", "--seed", "1"], capsys)[0] == 0
    (out / "test" / "0_good" / "my_photo.jpg").write_bytes(b"not theirs")
    code, text = run_cli([*args, "--out", str(out), "--force"], capsys)
    assert code == 1 and "my_photo.jpg" in text
    assert (out / "test" / "0_good" / "my_photo.jpg").read_bytes() == b"not theirs"


def test_download_force_never_replaces_the_source_or_a_user_folder(make_layout, tmp_path):
    data = make_layout(tmp_path / "parent")
    before = _tree(tmp_path / "parent")
    for dest in (tmp_path / "parent", data):
        with pytest.raises(CadsdError, match="source"):
            download(str(data), dest, force=True, run_validation=False)
        assert _tree(tmp_path / "parent") == before
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "sub" / "x.txt").write_text("x")
    with pytest.raises(CadsdError, match="cadsd download"):
        download(str(data), mine, force=True, run_validation=False)
    assert (mine / "sub" / "x.txt").read_text() == "x"
    # a download is replaced by --force
    dest = tmp_path / "dest"
    download(str(data), dest, run_validation=False)
    assert download(str(data), dest, force=True, run_validation=False).files == 15


def test_zoo_download_force_follows_the_same_rule(tmp_path):
    src = _mvtec(tmp_path / "src")
    bench = zoo.get("mvtec_ad")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "x.txt").write_text("x")
    with pytest.raises(CadsdError, match="cadsd download"):
        zoo_download(bench, str(src), mine, force=True)
    assert (mine / "x.txt").read_text() == "x"
    before = _tree(src)
    with pytest.raises(CadsdError, match="source"):
        zoo_download(bench, str(src), tmp_path, force=True)
    assert _tree(src) == before
    dest = tmp_path / "copy"
    zoo_download(bench, str(src), dest)
    assert zoo_download(bench, str(src), dest, force=True)[0] == dest.absolute()


# --- item 13: dest inside source; short errors -------------------------------------------------


def test_download_dest_inside_source_is_refused_before_copying(make_layout, tmp_path, capsys):
    data = make_layout(tmp_path)
    before = _tree(data)
    code, text = run_cli(["download", "--source", str(data), "--dest", str(data / "copy")],
                         capsys)
    assert code == 1 and "inside" in text and len(text) < 400
    assert _tree(data) == before and not (data / "copy").exists()
    assert not any(p.name.startswith(".") for p in data.iterdir())
    with pytest.raises(CadsdError, match="inside"):
        zoo_download(zoo.get("mvtec_ad"), str(_mvtec(tmp_path / "m")), tmp_path / "m" / "x")


def test_a_huge_error_message_is_cut_to_a_line(capsys, monkeypatch):
    from cadsd.errors import short_message

    huge = "/x" * 6000
    err = OSError(36, "File name too long")
    err.filename = huge
    text = short_message(f"cannot write the dataset: {err}")
    assert len(text) < 600 and "File name too long" in text
    many = short_message(" ".join(f"word{i}" for i in range(400)))  # short words, long message
    assert len(many) <= 500 + 3 + 250 and many.startswith("word0 ") and many.endswith("word399")

    def boom(*args: object, **kwargs: object) -> None:
        raise CadsdError(f"cannot copy {huge}/file.jpg: {err}; pick another --dest")

    monkeypatch.setattr("cadsd.getting.download.download", boom)
    code, text = run_cli(["download", "--source", "gdrive"], capsys)
    assert code == 1 and len(text) < 1000 and "pick another --dest" in text


# --- item 3: links that leave the dataset ------------------------------------------------------


def _outside(tmp_path: Path) -> Path:
    out = tmp_path / "elsewhere"
    write_image(out / "secret.jpg", noise_pixels(99, 32), "JPEG")
    (out / "deep" / "private.txt").parent.mkdir(parents=True)
    (out / "deep" / "private.txt").write_text("private")
    return out


def test_index_and_validate_refuse_a_file_link_out_but_follow_links_inside(make_layout,
                                                                          tmp_path, capsys):
    data = make_layout(tmp_path / "d")
    out = _outside(tmp_path)
    inside = data / "extra.jpg"
    write_image(inside, noise_pixels(7, 32), "JPEG")
    os.symlink(inside, data / "train" / "0_good" / "linked_inside.jpg")
    assert any(s.path.name == "linked_inside.jpg" for s in index(data))
    link = data / "train" / "0_good" / "good_999.jpg"
    os.symlink(out / "secret.jpg", link)
    with pytest.raises(LinkError, match="good_999.jpg") as err:
        index(data)
    assert str(out / "secret.jpg") in str(err.value)
    with pytest.raises(LinkError, match="outside"):
        hf.load(data)
    report = validate(data)
    found = [p for p in report.problems if p.kind == "link_outside"]
    assert len(found) == 1 and "secret.jpg" in found[0].message
    code, text = run_cli(["validate", str(data)], capsys)
    assert code == 1 and "secret.jpg" in text


def test_a_folder_link_out_is_refused(make_layout, tmp_path):
    data = make_layout(tmp_path / "d")
    out = _outside(tmp_path)
    for p in (data / "test" / "1_scratch").iterdir():
        p.unlink()
    (data / "test" / "1_scratch").rmdir()
    os.symlink(out, data / "test" / "1_scratch")
    with pytest.raises(LinkError, match="1_scratch"):
        index(data)
    assert "link_outside" in [p.kind for p in validate(data).problems]


def test_download_source_folder_never_copies_through_a_link_out(make_layout, tmp_path):
    data = make_layout(tmp_path / "d")
    out = _outside(tmp_path)
    os.symlink(out, data / "train" / "0_good" / "home")  # as a link to / or ~ would be
    dest = tmp_path / "dest"
    with pytest.raises(CadsdError, match="home"):
        download(str(data), dest, run_validation=False)
    assert not dest.exists()
    assert not [p for p in tmp_path.rglob("private.txt") if out not in p.parents]
    # a loop inside the dataset is refused too, never copied until the path is too long
    (data / "train" / "0_good" / "home").unlink()
    os.symlink("..", data / "train" / "0_good" / "loop")
    with pytest.raises(CadsdError, match="loop"):
        download(str(data), dest, run_validation=False)
    # links that stay inside are copied as the files they point to
    (data / "train" / "0_good" / "loop").unlink()
    os.symlink("good_000.jpg", data / "train" / "0_good" / "good_100.jpg")
    download(str(data), dest, run_validation=False)
    copy = dest / "train" / "0_good" / "good_100.jpg"
    assert not copy.is_symlink() and copy.read_bytes() == (data / "train" / "0_good" /
                                                           "good_000.jpg").read_bytes()


def test_zoo_indexers_and_copy_refuse_links_out(tmp_path):
    src = _mvtec(tmp_path / "src")
    out = _outside(tmp_path)
    os.symlink(out / "secret.jpg", src / "bottle" / "train" / "good" / "009.png")
    bench = zoo.get("mvtec_ad")
    with pytest.raises(LinkError, match="009.png"):
        bench.samples(src, "bottle")
    with pytest.raises(CadsdError, match="009.png"):
        zoo_download(bench, str(src), tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


def test_bench_names_a_link_out_and_reads_nothing(make_layout, tmp_path, capsys):
    from cli_helpers import run_bench
    from fixtures import DUMMY

    data = make_layout(tmp_path / "cache", name="CAD-SD")  # the cached real CAD-SD
    os.symlink(_outside(tmp_path) / "secret.jpg", data / "train" / "0_good" / "good_999.jpg")
    for dataset in (str(data), "auto", "cadsd"):  # auto used to fall back to synthetic
        code, text = run_bench(capsys, "run", "--methods", DUMMY, "--dataset", dataset,
                               "--backbone", "mobilenet_v2", "--out", str(tmp_path / "run"))
        assert code == 1 and "good_999.jpg" in text and "secret.jpg" in text
    src = _mvtec(tmp_path / "m")
    os.symlink(tmp_path / "elsewhere" / "secret.jpg", src / "bottle" / "train" / "good" / "9.png")
    code, text = run_cli(["validate", "--dataset", "mvtec_ad", str(src)], capsys)
    assert code == 1 and "9.png" in text and "outside" in text


def test_verify_reports_a_file_turned_into_a_link_out_as_changed(make_layout, tmp_path):
    from cadsd.getting.manifest import verify

    dest = tmp_path / "dest"
    download(str(make_layout(tmp_path / "src")), dest, run_validation=False)
    image = dest / "test" / "0_good" / "good_000.jpg"
    outside = tmp_path / "same.jpg"
    outside.write_bytes(image.read_bytes())  # same bytes: only the link gives it away
    image.unlink()
    os.symlink(outside, image)
    assert verify(dest).changed == ["test/0_good/good_000.jpg"]


def test_force_counts_a_link_the_tool_did_not_write_as_foreign(tmp_path):
    out = generate(tmp_path / "set", counts="small", size=32, workers=1, progress=False)
    mine = _outside(tmp_path)
    os.symlink(mine, out / "my_data")
    with pytest.raises(CadsdError, match="my_data"):
        generate(out, counts="small", size=32, workers=1, progress=False, overwrite=True)
    assert (out / "my_data").is_symlink() and (mine / "deep" / "private.txt").is_file()
