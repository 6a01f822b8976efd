"""The speed benchmark runs end to end on a tiny set: cells in subprocesses, paired timings."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from leaderboard import perf


@pytest.mark.slow
def test_perf_runs_cells_and_times_partners_in_turns(
    tmp_path: Path, make_layout: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_layout(tmp_path)  # 4 train, 11 test images
    out = tmp_path / "perf.json"
    argv = ["--data", str(root), "--backbones", "mobilenet_v2", "--out", str(out),
            "--methods", "sa_patchcore,patchcore"]  # the partner is run first whatever the order
    assert perf.main(argv) == 0
    results = json.loads(out.read_text())
    cells = {c["method"]: c for c in results["cells"]}
    assert [c["method"] for c in results["cells"]] == ["patchcore", "sa_patchcore"]
    for cell in cells.values():
        assert cell["train_images"] == 4 and cell["test_images"] == 11
        assert cell["fit"]["coreset"] > 0 and cell["forward_plus_search_ms"] > 0
        assert cell["latency_ms"]["median"] <= cell["latency_ms"]["p95"]
    pair = cells["sa_patchcore"]["paired"]
    assert pair["partner"] == "patchcore" and pair["images"] == 6  # every other test image
    assert pair["ratio"] == pytest.approx(pair["median_ms"] / pair["partner_median_ms"])
    assert "paired" not in cells["patchcore"]
    labels = {t["label"] for t in results["targets"]}
    assert "patchcore: fit / backbone forward" in labels
    assert "timed in turns with patchcore" in capsys.readouterr().out
    assert not list(tmp_path.glob(".perf.json.tmp"))


def test_perf_unknown_method(capsys: pytest.CaptureFixture[str]) -> None:
    assert perf.main(["--data", "/nonexistent", "--methods", "nosuch"]) == 2
    assert "unknown method" in capsys.readouterr().err


@pytest.mark.slow
def test_perf_times_training_steps_of_trained_methods(
    tmp_path: Path, make_layout: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_layout(tmp_path)
    out = tmp_path / "perf.json"
    argv = ["--data", str(root), "--backbones", "mobilenet_v2,wide_resnet50_2", "--out", str(out),
            "--methods", "cs_flow,patchsvdd", "--budget", "smoke", "--weights", "none"]
    assert perf.main(argv) == 0
    results = json.loads(out.read_text())
    cells = {(c["method"], c["backbone"]) for c in results["cells"]}
    # CS-Flow has no stride-32 tap on WRN50-2 here; Patch SVDD has no backbone: measured once
    assert cells == {("cs_flow", "mobilenet_v2"), ("patchsvdd", "none")}
    for cell in results["cells"]:
        step = cell["train_step"]
        assert step["step_s"] > 0 and step["step_gflop"] > 0 and step["gemm_gflops"] > 0
        assert step["step_over_gemm"] == pytest.approx(
            step["step_s"] * step["gemm_gflops"] / step["step_gflop"])
    flow = next(c for c in results["cells"] if c["method"] == "cs_flow")
    assert flow["backbone_images_per_train_image"] == 3.0  # three scales, once per image
    svdd = next(c for c in results["cells"] if c["method"] == "patchsvdd")
    assert svdd["recall32_test"]["recall"] == 1.0  # a tiny bank is searched exactly
    labels = {t["label"] for t in results["targets"]}
    assert {"cs_flow: train step / (FLOPs / GEMM rate)", "patchsvdd: predict b1 median, seconds",
            "cs_flow: backbone passes per training image"} <= labels
    assert "one training step" in capsys.readouterr().out
