"""`bench` as a user meets it: bad input gives one clear line, exit 1 and no files; a run writes
records, leaderboard.md, results.csv and plots; reruns skip; `bench predict` scores with a
saved model; `auto` choices say what they picked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness_fixtures import COUNTS, write_layout

from leaderboard import choices, data
from leaderboard.cli import main
from leaderboard.registry import METHODS, MethodEntry


def _bench(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return exc.value.code, " ".join((out.out + out.err).split())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_layout(tmp_path, counts=COUNTS, size=40, masks=True)


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADSD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "200")  # rich tables: no wrapping inside the words we check


@pytest.mark.parametrize("args,message", [
    (["--methods", "nosuch"], "unknown method 'nosuch'"),
    (["--dataset", "/nonexistent/cadsd"], "dataset not found: /nonexistent/cadsd"),
    (["--seeds", "x"], "--seeds 'x'"),
])
def test_bad_input_clear_message_no_files(capsys: pytest.CaptureFixture, tmp_path: Path,
                                          root: Path, args: list[str], message: str) -> None:
    out = tmp_path / "run"
    base = {"--methods": "dummy", "--dataset": str(root)}
    base.update(dict(zip(args[::2], args[1::2])))
    flat = [x for kv in base.items() for x in kv]
    code, text = _bench(capsys, "run", *flat, "--backbone", "mobilenet_v2", "--out", str(out))
    assert code == 1 and message in text and "Traceback" not in text
    assert not out.exists()


def test_no_anomalies_in_test(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    normal_only = write_layout(tmp_path, counts={"train/good": 3, "test/good": 2}, name="normals")
    out = tmp_path / "run"
    code, text = _bench(capsys, "run", "--methods", "dummy", "--dataset", str(normal_only),
                        "--backbone", "mobilenet_v2", "--out", str(out))
    assert code == 1 and "no anomalous images" in text and "cadsd validate" in text
    assert not out.exists()


def test_run_leaderboard_rerun_predict(capsys: pytest.CaptureFixture, tmp_path: Path,
                                       root: Path) -> None:
    out = tmp_path / "run"
    args = ["run", "--methods", "dummy", "--dataset", str(root), "--backbone", "mobilenet_v2",
            "--out", str(out), "--save-models"]
    code, text = _bench(capsys, *args)
    assert code == 0 and "leaderboard.md" in text
    for name in ("leaderboard.md", "results.csv", "plots/roc.png", "plots/gallery.png",
                 "records/cadsd__dummy__seed0.json", "models/cadsd__dummy__seed0.safetensors"):
        assert (out / name).is_file(), name
    md = (out / "leaderboard.md").read_text()
    assert "## Table 3" in md and "![plots/roc.png](plots/roc.png)" in md

    (out / "leaderboard.md").unlink()
    code, _ = _bench(capsys, "leaderboard", str(out), "--no-plots")
    assert code == 0 and (out / "leaderboard.md").read_text() == md

    code, text = _bench(capsys, *args)
    assert code == 0 and "skipped" in text

    record = json.loads((out / "records/cadsd__dummy__seed0.json").read_text())
    picked = record["scores"][:2]
    images = [str(root / s["file_name"]) for s in picked]
    code, text = _bench(capsys, "predict", "--model",
                        str(out / "models/cadsd__dummy__seed0.safetensors"), "--json", *images)
    assert code == 0
    got = [json.loads(line) for line in text.replace("} {", "}\n{").splitlines()]
    assert [g["score"] for g in got] == pytest.approx([s["score"] for s in picked], rel=1e-6)


def test_failing_method_exit_code(capsys: pytest.CaptureFixture, tmp_path: Path, root: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(METHODS, "exploding",
                        MethodEntry("exploding", "harness_fixtures:Exploding", hidden=True))
    out = tmp_path / "run"
    code, text = _bench(capsys, "run", "--methods", "exploding,dummy", "--dataset", str(root),
                        "--backbone", "mobilenet_v2", "--out", str(out))
    assert code == 1 and "1 cell(s) failed" in text
    md = (out / "leaderboard.md").read_text()
    assert "## Failed cells" in md and "boom" in md and "| dummy |" in md


def test_auto_dataset_says_which(tmp_path: Path, root: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import cadsd.synth

    monkeypatch.setattr(cadsd.synth, "ensure_synthetic", lambda **kw: root)
    (root / "cadsd-synth.json").write_text('{"seed": 0, "render_version": 1}')
    lines: list[str] = []
    picked = data.resolve("auto", lines.append)
    assert picked.kind == "synthetic" and picked.source == str(root)
    assert picked.generator == {"seed": 0, "render_version": 1}
    assert "SYNTHETIC" in lines[0] and "cadsd download" in lines[0]

    write_layout(tmp_path / "cache", counts=COUNTS, name="CAD-SD")  # the real one, cached
    lines.clear()
    picked = data.resolve("auto", lines.append)
    assert picked.kind == "cadsd" and "the real CAD-SD" in lines[0]
    assert data.resolve(str(tmp_path / "cache" / "CAD-SD")).kind == "cadsd"
    assert data.resolve(str(root)).kind == "synthetic"  # the marker travels with the folder
    (root / "cadsd-synth.json").unlink()
    assert data.resolve(str(root)).kind == "custom"


def test_cadsd_missing_names_download(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code, text = _bench(capsys, "run", "--methods", "dummy", "--dataset", "cadsd",
                        "--backbone", "mobilenet_v2", "--out", str(tmp_path / "run"))
    assert code == 1 and "cadsd download" in text and not (tmp_path / "run").exists()


def test_auto_backbone_offline_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    from baselines.components import backbones

    lines: list[str] = []
    monkeypatch.setattr(backbones, "imagenet_available", lambda name: False)
    assert choices.resolve_backbone("auto", "imagenet", lines.append, probe=lambda: False) == (
        "mobilenet_v2", "imagenet")
    assert "offline" in lines[0] and "--weights PATH" in lines[0]
    monkeypatch.setattr(backbones, "imagenet_available", lambda name: True)
    assert choices.resolve_backbone("auto", "imagenet", lines.append)[0] == "wide_resnet50_2"
    assert choices.default_out("synthetic", "mobilenet_v2", "imagenet") == Path(
        "runs/synthetic-mobilenet_v2")


def test_list_shows_methods_and_planned(capsys: pytest.CaptureFixture) -> None:
    code, text = _bench(capsys, "list")
    assert code == 0 and "patchsvdd" in text and "not yet implemented" in text
    assert "dummy" not in text


def test_option_parsing() -> None:
    from leaderboard.errors import BenchError

    assert choices.parse_seeds("0-2,5,1") == [0, 1, 2, 5]
    params = choices.parse_params(["patchcore.coreset_ratio=0.1", "sigma=2", "x.y=abc"],
                                  ["patchcore", "x"])
    assert params == {"patchcore": {"coreset_ratio": 0.1, "sigma": 2}, "x": {"sigma": 2, "y": "abc"}}
    with pytest.raises(BenchError, match="not among --methods"):
        choices.parse_params(["padim.eps=1"], ["patchcore"])
    with pytest.raises(BenchError, match="METHOD.KEY=VALUE"):
        choices.parse_params(["novalue"], ["patchcore"])


def test_cuda_without_gpu(capsys: pytest.CaptureFixture, tmp_path: Path, root: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code, text = _bench(capsys, "run", "--methods", "dummy", "--dataset", str(root),
                        "--device", "cuda", "--out", str(tmp_path / "run"))
    assert code == 1 and "no CUDA device" in text and not (tmp_path / "run").exists()


def test_ctrl_c_says_how_to_resume(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import leaderboard.bench

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(leaderboard.bench, "bench_run", interrupted)
    code, text = _bench(capsys, "run", "--methods", "dummy")
    assert code == 130 and "rerun the same command to resume" in text and "Traceback" not in text
