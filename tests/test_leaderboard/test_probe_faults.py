"""A new user's probe (issue 33), harness side: nothing imported, averaged or started that the
user did not ask for, and every mistake refused before the run folder exists.

Each test feeds the input that went wrong and checks the fault is gone: a model file that names
a module, a damaged model header, records of two datasets in one folder, a record that is not
the cell its name says, test images that are training images, degenerate settings, huge or
out-of-range seeds, a record that cannot be replaced."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from cli_helpers import run_bench
from fixtures import COUNTS, DUMMY, write_layout
from safetensors.torch import load_file, save_file

from leaderboard.records import RECORDS_DIR, read_record, scan_records


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_layout(tmp_path_factory.mktemp("data"), counts=COUNTS, size=40, masks=True)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, root: Path) -> Path:
    """One finished run of the dummy method, seeds 0 and 1, with its model saved."""
    from leaderboard.running.bench import bench_run

    out = tmp_path_factory.mktemp("runs") / "run"
    bench_run(methods=DUMMY, dataset=str(root), seeds="0,1", out=out, save_models=True,
              echo=lambda line: None, resamples=100, warmup=1)
    return out


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    return out


# -- item 2 and 11: a model file never imports a module; a damaged header is one message --
def _model(run_dir: Path) -> Path:
    return next((run_dir / "models").glob("*seed0.safetensors"))


def _rewrite_header(src: Path, dest: Path, **changes: str | None) -> Path:
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    save_file(load_file(str(src)), str(dest), metadata=meta)
    return dest


def test_a_model_file_naming_a_module_is_refused_without_importing_it(
        capsys: pytest.CaptureFixture, run_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    side = tmp_path / "imported.txt"
    (tmp_path / "evil_module.py").write_text(
        f"from pathlib import Path\nPath({str(side)!r}).write_text('ran')\n"
        "from harness_methods import PixelStats as Evil\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = _rewrite_header(_model(run_dir), tmp_path / "m.safetensors", **{
        "class": "evil_module:Evil"})
    image = next((Path(read_record(next((run_dir / RECORDS_DIR).glob("*.json"))).dataset.source)
                  / "test").rglob("*.jpg"))
    code, text = run_bench(capsys, "predict", "--model", str(model), str(image))
    assert code == 2 and "'evil_module:Evil'" in text and "--method evil_module:Evil" in text
    assert not side.exists() and "evil_module" not in sys.modules
    code, text = run_bench(capsys, "predict", "--model", str(model), "--method",
                           "evil_module:Evil", "--json", str(image))
    assert code == 0 and side.exists()  # named by the user: trusted
    assert json.loads(text)["score"] > 0


@pytest.mark.parametrize("change,match", [
    ({"config": "{not json"}, "are not JSON"),
    ({"config": None}, "are missing"),
    ({"config": '["a list"]'}, "not a JSON object"),
    ({"config": '{"grid": "wide"}'}, "do not fit"),
    ({"config": '{"no_such_setting": 1}'}, "no setting 'no_such_setting'"),
])
def test_a_damaged_model_header_is_one_message(
        capsys: pytest.CaptureFixture, run_dir: Path, tmp_path: Path,
        change: dict[str, str | None], match: str) -> None:
    model = _rewrite_header(_model(run_dir), tmp_path / "m.safetensors", **change)
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (40, 40)).save(image)
    code, text = run_bench(capsys, "predict", "--model", str(model), "--method", DUMMY,
                           str(image))
    assert code == 1 and "m.safetensors" in text and match in text


def test_detector_load_never_imports_what_a_file_names(run_dir: Path, tmp_path: Path) -> None:
    from baselines.base import Detector
    from baselines.errors import DetectorError

    model = _rewrite_header(_model(run_dir), tmp_path / "m.safetensors", **{
        "class": "json:JSONDecoder"})
    with pytest.raises(DetectorError, match="never makes this loader import"):
        Detector.load(model)
    from harness_methods import PixelStats

    assert isinstance(Detector.load(_model(run_dir)), PixelStats)  # imported: found


# -- item 5 and 6: records of two datasets, or of another cell, are never averaged ----------
def test_two_datasets_in_one_folder_get_two_sections(
        capsys: pytest.CaptureFixture, run_dir: Path, tmp_path: Path) -> None:
    out = _copy(run_dir, tmp_path)
    path = out / RECORDS_DIR / next(p.name for p in (out / RECORDS_DIR).glob("*seed1.json"))
    record = json.loads(path.read_text())
    record["dataset"]["fingerprint"] = "f" * 64  # the same cell on other data
    path.write_text(json.dumps(record))
    code, _ = run_bench(capsys, "leaderboard", str(out))
    board = (out / "leaderboard.md").read_text()
    assert code == 0 and board.count("## Data ") == 2 and "2 different datasets" in board
    # each section has one seed (a CI), never a mean over the two datasets' cells
    assert "| (deterministic)" not in board.replace("dummy (outside method) | ", "| ")
    assert not re.search(r"± \d", board)
    tables2 = [part.split("\n### ", 1)[0] for part in board.split("### Table 2:")[1:]]
    rows = [line for t in tables2 for line in t.splitlines() if line.startswith("| dummy")]
    # Table 2's row in each section: a single seed's value [CI], the same in both
    assert len(rows) == 2 and all(re.search(r"\| \d+\.\d \[", r) for r in rows)


def test_a_record_that_is_not_its_files_cell_is_refused(
        capsys: pytest.CaptureFixture, root: Path, run_dir: Path, tmp_path: Path) -> None:
    out = _copy(run_dir, tmp_path)
    seed1 = next((out / RECORDS_DIR).glob("*seed1.json"))
    record = json.loads(seed1.read_text())
    record["cell"]["seed"] = 7  # says seed 7 in seed 1's file
    seed1.write_text(json.dumps(record))
    _, bad = scan_records(out)
    assert len(bad) == 1 and "says it is cell" in bad[0].reason
    args = ["run", "--methods", DUMMY, "--dataset", str(root), "--seeds", "0-2", "--out",
            str(out)]
    code, text = run_bench(capsys, *args)
    assert code == 1 and seed1.name in text and "--force" in text  # not skipped as finished
    code, text = run_bench(capsys, *args, "--force")
    assert code == 0 and list((out / RECORDS_DIR).glob(f"{seed1.name}.unusable-*"))
    assert read_record(seed1).cell.seed == 1  # recomputed, the edited file kept aside
    renamed = out / RECORDS_DIR / seed1.name.replace("seed1", "seed2")
    shutil.copyfile(seed1, renamed)  # a copy under another cell's name
    assert "is named" in scan_records(out)[1][0].reason


# -- item 7: leakage --------------------------------------------------------------------------
def test_test_images_that_are_training_images_are_refused_or_said(
        capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    data = write_layout(tmp_path / "data", counts=COUNTS, size=40)
    train = min((data / "train").rglob("*.jpg"))
    leak = min((data / "test" / "0_good").glob("*.jpg"))
    shutil.copyfile(train, leak)
    args = ["run", "--methods", DUMMY, "--dataset", str(data), "--out", str(tmp_path / "r")]
    code, text = run_bench(capsys, *args)
    assert code == 1 and "leakage" in text and leak.name in text and train.name in text
    assert not (tmp_path / "r").exists()
    code, text = run_bench(capsys, *args, "--allow-leakage")
    assert code == 0 and "--allow-leakage" in text
    record = next(iter(scan_records(tmp_path / "r")[0]))
    assert record.dataset.leaked == [f"test/0_good/{leak.name}"]
    assert "Leakage: 1 test image(s) are also training images" in (
        tmp_path / "r" / "leaderboard.md").read_text()


# -- items 8, 10, 12: checked before the run folder exists ------------------------------------
@pytest.mark.parametrize("extra,match", [
    (["--methods", "patchcore", "--param", "patchcore.projection_dim=0"], "projection_dim"),
    (["--methods", "patchcore", "--param", "patchcore.projection_dim=-3"], "projection_dim"),
    (["--methods", "padim", "--param", "padim.sigma=1e308"], "sigma"),
    (["--methods", "padim", "--param", "padim.sigma=1e999"], "a finite number"),
    (["--methods", "patchcore", "--param", "patchcore.coreset_start=99999"], "coreset_start"),
    (["--methods", "sa_patchcore_dual", "--shots", "2"], "at least 3 training images"),
    (["--methods", DUMMY, "--seeds", "4294967296"], "below 2^32"),
    (["--methods", DUMMY, "--seeds", "0-9999999999"], "at most 10000"),
    (["--methods", DUMMY, "--seeds", "0-2000"], "--max-cells"),
    (["--methods", DUMMY, "--seeds", "5-2"], "backwards"),
])
def test_degenerate_settings_and_huge_plans_exit_2_before_the_folder(
        capsys: pytest.CaptureFixture, root: Path, tmp_path: Path, extra: list[str],
        match: str) -> None:
    out = tmp_path / "r"
    code, text = run_bench(capsys, "run", "--dataset", str(root), "--out", str(out),
                           "--backbone", "mobilenet_v2", *extra)
    assert code == 2 and match in text and not out.exists()


def test_the_plan_size_is_said_and_max_cells_lets_a_big_plan_through(
        capsys: pytest.CaptureFixture, root: Path, tmp_path: Path) -> None:
    code, text = run_bench(capsys, "run", "--methods", DUMMY, "--dataset", str(root), "--out",
                           str(tmp_path / "r"), "--seeds", "0-2", "--max-cells", "3")
    assert code == 0 and "Plan: 3 cell(s) (1 method(s) x 3 seed(s))" in text


# -- item 14: a record that cannot be replaced -------------------------------------------------
def test_a_record_that_cannot_be_replaced_names_it_and_the_fix(
        capsys: pytest.CaptureFixture, root: Path, run_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from cadsd import files

    out = _copy(run_dir, tmp_path)
    real = files.os.replace

    def protected(src: str, dest: str) -> None:  # every record file is protected
        if Path(dest).parent.name == RECORDS_DIR:
            raise PermissionError(errno.EPERM, "Operation not permitted", src)
        real(src, dest)

    monkeypatch.setattr(files.os, "replace", protected)
    code, text = run_bench(capsys, "run", "--methods", DUMMY, "--dataset", str(root),
                           "--seeds", "0,1", "--out", str(out), "--force")
    record = out / RECORDS_DIR / next(p.name for p in (out / RECORDS_DIR).glob("*seed0.json"))
    assert code == 1 and ".tmp" not in text and f"could not write {record}" in text
    assert "this run had finished no cell" in text and f"make {record} replaceable" in text


def test_a_write_names_the_file_not_its_temp_file(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os as os_module

    from cadsd.files import atomic_write_text

    def refuse(src: str, dest: str) -> None:
        raise OSError(errno.EPERM, "Operation not permitted", src)

    monkeypatch.setattr(os_module, "replace", refuse)
    with pytest.raises(OSError) as err:
        atomic_write_text(tmp_path / "record.json", "{}")
    assert err.value.filename == str(tmp_path / "record.json")
    assert not list(tmp_path.iterdir())


def test_the_leaderboard_is_written_after_every_cell(run_dir: Path) -> None:
    """(Issue 36 item 3.) A run rewrites leaderboard.md and results.csv after each cell."""
    from leaderboard.running import bench

    seen: list[bool] = []
    real = bench.write_outputs

    def spy(out: Path, **kw: object) -> dict:
        seen.append(kw.get("plots", True))
        return real(out, **kw)

    mp = pytest.MonkeyPatch()
    mp.setattr(bench, "write_outputs", spy)
    try:
        out = run_dir.parent / "again"
        bench.bench_run(methods=DUMMY, dataset=str(read_record(next(
            (run_dir / RECORDS_DIR).glob("*.json"))).dataset.source), seeds="0,1", out=out,
            echo=lambda line: None, resamples=50, warmup=1)
    finally:
        mp.undo()
    assert seen == [False, False, True]  # after each of 2 cells, then with plots
