"""Faults that must never change a result silently or lose one: two runs into one folder, record
files that are unreadable, edited or truncated, a run folder that cannot be written (a file, a
read-only filesystem, a full disk), and the exit codes of command-line mistakes."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import run_bench
from fixtures import DUMMY

from leaderboard.records import read_record
from leaderboard.running.lock import run_lock


def _run(capsys: pytest.CaptureFixture, root: Path, out: Path, *extra: str) -> tuple[int, str]:
    return run_bench(capsys, "run", "--methods", DUMMY, "--seeds", "0,1", "--dataset",
                     str(root), "--out", str(out), *extra)


def _hold(out: Path, until: Callable[[], None]) -> threading.Thread:
    """A thread that takes the run lock of ``out``, holds it until ``until()`` returns, then
    releases it; returned once the lock is held."""
    held = threading.Event()

    def hold() -> None:
        with run_lock(out):
            held.set()
            until()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    return holder


def test_a_second_run_into_a_held_folder_exits_naming_the_holder(
        capsys: pytest.CaptureFixture, root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    release = threading.Event()
    holder = _hold(out, lambda: release.wait(30))
    try:
        code, text = _run(capsys, root, out)
        assert code == 1 and f"{out} is in use by" in text and f"pid {os.getpid()}" in text
        assert "--wait SECONDS" in text and not (out / "records").exists()  # no work done
    finally:
        release.set()
        holder.join()
    code, _ = _run(capsys, root, out)
    assert code == 0 and len(list((out / "records").glob("*.json"))) == 2


def test_a_waiting_run_starts_when_the_holder_ends_and_skips_its_cells(
        capsys: pytest.CaptureFixture, root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _run(capsys, root, out)[0] == 0
    before = {p.name: p.read_bytes() for p in (out / "records").glob("*.json")}
    holder = _hold(out, lambda: time.sleep(1.5))
    code, text = _run(capsys, root, out, "--wait", "30")
    holder.join()
    assert code == 0 and text.count("skipped (finished earlier)") == 2
    assert {p.name: p.read_bytes() for p in (out / "records").glob("*.json")} == before


def test_a_killed_holder_leaves_no_stale_lock(capsys: pytest.CaptureFixture, root: Path,
                                              tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = ("import sys, time; from pathlib import Path; from leaderboard.running.lock import "
            "run_lock\nwith run_lock(Path(sys.argv[1])):\n    print('held', flush=True)\n"
            "    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    assert _run(capsys, root, out)[0] == 1  # held
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _run(capsys, root, out)[0] == 0  # the OS released it with the process


def test_unusable_records_are_named_rendered_around_and_set_aside_by_force(
        capsys: pytest.CaptureFixture, root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _run(capsys, root, out)[0] == 0
    broken = out / "records" / "cadsd__dummy__seed1.json"
    good = read_record(out / "records" / "cadsd__dummy__seed0.json")
    broken.write_text("{")  # a half-copied or hand-edited file

    code, text = _run(capsys, root, out)
    assert code == 1 and f"{broken} cannot be read as JSON" in text
    assert "`bench run --force` moves it aside" in text
    code, text = run_bench(capsys, "leaderboard", str(out))
    assert code == 1 and "cadsd__dummy__seed1.json cannot be read as JSON" in text
    md = (out / "leaderboard.md").read_text()
    assert "## Records left out" in md and "`cadsd__dummy__seed1.json` cannot be read" in md
    assert "| dummy (outside method) | none |" in md  # the rest is rendered

    code, text = _run(capsys, root, out, "--force")
    assert code == 0 and "kept as cadsd__dummy__seed1.json.unusable-" in text
    [kept] = (out / "records").glob("cadsd__dummy__seed1.json.unusable-*")
    assert kept.read_text() == "{"  # nothing lost
    assert read_record(broken).ok
    assert [s.score for s in read_record(out / "records/cadsd__dummy__seed0.json").scores] == [
        s.score for s in good.scores]  # --force recomputes to the same scores
    assert run_bench(capsys, "leaderboard", str(out))[0] == 0


@pytest.mark.parametrize("tamper,message", [
    (lambda r: r["scores"][0].update(score=r["scores"][0]["score"] + 100.0),
     "give all AUROC"),
    (lambda r: r["scores"].pop(), "anomalous per-image scores, but its metrics were computed"),
    (lambda r: r["metrics"]["image_auroc"]["category"]["paint"].update(auroc=0.99),
     "give paint AUROC"),
])
def test_a_record_whose_scores_disagree_with_its_metrics_is_refused_by_name(
        capsys: pytest.CaptureFixture, root: Path, tmp_path: Path, tamper, message: str) -> None:
    out = tmp_path / "run"
    assert _run(capsys, root, out)[0] == 0
    path = out / "records" / "cadsd__dummy__seed0.json"
    record = json.loads(path.read_text())
    tamper(record)
    path.write_text(json.dumps(record))
    code, text = run_bench(capsys, "leaderboard", str(out))
    assert code == 1 and "cadsd__dummy__seed0.json" in text and message in text
    assert "edited or truncated" in text
    code, text = _run(capsys, root, out)
    assert code == 1 and message in text


def test_an_out_that_is_a_file_is_refused_before_any_work(
        capsys: pytest.CaptureFixture, root: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.txt"
    out.write_text("mine")
    code, text = _run(capsys, root, out)
    assert code == 1 and f"--out {out} is a file, not a folder" in text
    assert out.read_text() == "mine"


def test_a_read_only_destination_gets_a_clean_error(capsys: pytest.CaptureFixture, root: Path,
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "ro" / "run"

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    code, text = _run(capsys, root, out)
    assert code == 1 and "Read-only file system" in text and str(tmp_path / "ro") in text
    assert "this run had finished no cell" in text


def test_a_full_disk_keeps_the_finished_cells_and_a_rerun_resumes(
        capsys: pytest.CaptureFixture, root: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from leaderboard.records import store

    out = tmp_path / "run"
    real = store.atomic_write_text
    calls = []

    def fills_up(path: Path, text: str) -> Path:
        calls.append(path)
        if len(calls) == 2:  # the second record: the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, text)

    monkeypatch.setattr(store, "atomic_write_text", fills_up)
    code, text = _run(capsys, root, out)
    assert code == 1 and "No space left on device" in text
    assert "the 1 cell record(s) this run wrote before it are kept" in text and "rerun" in text
    assert sorted(p.name for p in (out / "records").iterdir()) == ["cadsd__dummy__seed0.json"]
    monkeypatch.setattr(store, "atomic_write_text", real)
    code, text = _run(capsys, root, out)
    assert code == 0 and text.count("skipped (finished earlier)") == 1


@pytest.mark.parametrize("args,message", [
    (["--seeds", "x"], "--seeds 'x'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--backbone", "resnet9000"], "unknown backbone 'resnet9000'"),
    (["--threads", "0"], "--threads"),
    (["--wait", "-1"], "--wait"),
    (["--budget", "huge"], "--budget 'huge'"),
    (["--suite", "nosuch", "--methods", "all"], "unknown suite 'nosuch'"),
])
def test_command_line_mistakes_exit_2(capsys: pytest.CaptureFixture, root: Path,
                                      tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "run"
    code, text = run_bench(capsys, "run", "--methods", f"patchcore,{DUMMY}", "--dataset",
                           str(root), "--out", str(out), *args)
    assert code == 2 and message in text and not out.exists()
