"""`bench` as a user meets it: bad input gives one clear line, exit 1 and no files; a run writes
records, leaderboard.md, results.csv and plots; reruns skip; `bench predict` scores with a
saved model; `auto` choices say what they picked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_bench
from fixtures import COUNTS, DUMMY, DUMMY_TRAINED, EXPLODING, planned_records, plans, write_layout

from leaderboard.methods import METHODS, resolve, suite
from leaderboard.records import read_record
from leaderboard.reporting.report import render_markdown
from leaderboard.running import choices, data

pytestmark = pytest.mark.usefixtures("private_cache")


@pytest.mark.parametrize("args,message,rc", [
    (["--methods", "nosuch"], "unknown method 'nosuch'", 2),
    (["--methods", "nosuch_mod:Det"], "no module named 'nosuch_mod'", 2),
    (["--methods", "harness_methods:Nope"], "has no 'Nope' (its Detector subclasses: PixelStats", 2),
    (["--methods", "fixtures:load"], "is a function, not a class", 2),
    (["--methods", "leaderboard.errors:BenchError"], "not a subclass of baselines.base.Detector", 2),
    (["--methods", "fixtures:NoPredict"], "does not define predict", 2),
    (["--methods", "fixtures:Impostor"], "its name 'patchcore' is the built-in method's", 2),
    (["--methods", "harness_broken:Detector"],
     "importing harness_broken failed: ZeroDivisionError", 2),
    (["--dataset", "/nonexistent/cadsd"], "dataset not found: /nonexistent/cadsd", 1),
    (["--seeds", "x"], "--seeds 'x'", 2),
    (["--seeds", "-1"], "--seeds '-1'", 2),
])
def test_bad_input_clear_message_no_files(capsys: pytest.CaptureFixture, tmp_path: Path,
                                          root: Path, args: list[str], message: str,
                                          rc: int) -> None:
    out = tmp_path / "run"
    base = {"--methods": DUMMY, "--dataset": str(root)}
    base.update(dict(zip(args[::2], args[1::2])))
    flat = [x for kv in base.items() for x in kv]
    code, text = run_bench(capsys, "run", *flat, "--backbone", "mobilenet_v2", "--out", str(out))
    assert code == rc and message in text and "Traceback" not in text
    assert not out.exists()


def test_no_anomalies_in_test(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    normal_only = write_layout(tmp_path, counts={"train/good": 3, "test/good": 2}, name="normals")
    out = tmp_path / "run"
    code, text = run_bench(capsys, "run", "--methods", DUMMY, "--dataset", str(normal_only),
                        "--backbone", "mobilenet_v2", "--out", str(out))
    assert code == 1 and "no anomalous images" in text and "cadsd validate" in text
    assert not out.exists()


def test_run_leaderboard_rerun_predict(capsys: pytest.CaptureFixture, tmp_path: Path,
                                       root: Path) -> None:
    out = tmp_path / "run"
    args = ["run", "--methods", DUMMY, "--dataset", str(root), "--backbone", "mobilenet_v2",
            "--out", str(out), "--save-models"]
    code, text = run_bench(capsys, *args)
    assert code == 0 and "leaderboard.md" in text
    for name in ("leaderboard.md", "results.csv", "plots/roc.png", "plots/gallery.png",
                 "records/cadsd__dummy__seed0.json", "models/cadsd__dummy__seed0.safetensors"):
        assert (out / name).is_file(), name
    md = (out / "leaderboard.md").read_text()
    assert "## Table 3" in md and "![plots/roc.png](plots/roc.png)" in md

    (out / "leaderboard.md").unlink()
    code, _ = run_bench(capsys, "leaderboard", str(out), "--no-plots")
    assert code == 0 and (out / "leaderboard.md").read_text() == md

    code, text = run_bench(capsys, *args)
    assert code == 0 and "skipped" in text

    picked = read_record(out / "records/cadsd__dummy__seed0.json").scores[:2]
    images = [str(root / s.file_name) for s in picked]
    code, text = run_bench(capsys, "predict", "--model",
                           str(out / "models/cadsd__dummy__seed0.safetensors"), "--method",
                           DUMMY, "--json", *images)
    assert code == 0
    got = [json.loads(line) for line in text.replace("} {", "}\n{").splitlines()]
    assert [g["score"] for g in got] == pytest.approx([s.score for s in picked], rel=1e-6)


def test_failing_method_exit_code(capsys: pytest.CaptureFixture, tmp_path: Path, root: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    code, text = run_bench(capsys, "run", "--methods", f"{EXPLODING},{DUMMY}", "--dataset", str(root),
                        "--backbone", "mobilenet_v2", "--out", str(out))
    assert code == 1 and "1 cell(s) failed" in text
    md = (out / "leaderboard.md").read_text()
    assert "## Failed cells" in md and "boom" in md and "| dummy (outside method) |" in md


def test_auto_dataset_says_which(tmp_path: Path, root: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import cadsd.synth

    monkeypatch.setattr(cadsd.synth, "ensure_synthetic", lambda **kw: root)
    from cadsd.format.layout import write_synth_marker

    write_synth_marker(root, {"seed": 0, "render_version": 1})  # as `cadsd synth` writes it
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
    code, text = run_bench(capsys, "run", "--methods", DUMMY, "--dataset", "cadsd",
                        "--backbone", "mobilenet_v2", "--out", str(tmp_path / "run"))
    assert code == 1 and "cadsd download" in text and not (tmp_path / "run").exists()


def test_auto_backbone_offline_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    from baselines.components import backbones
    from leaderboard.running.plan import plan_methods

    names, reg = resolve(f"patchcore,padim,{DUMMY}")
    made = plan_methods(names, reg, (), "quick")
    lines: list[str] = []
    monkeypatch.setattr(backbones, "imagenet_available",
                        lambda name: backbones.get_spec(name).offline)
    flow = plan_methods(["cs_flow", "patchsvdd"], METHODS, (), "quick")
    got = choices.resolve_backbones("auto", "imagenet", flow, lines.append, probe=lambda: False)
    assert [p.backbone for p in got] == ["efficientnet_lite2", None]  # CS-Flow's fallback
    assert "efficientnet_lite2" in lines[0] and "efficientnet_b5" in lines[0]
    assert choices.run_tag(got) == "efficientnet_lite2"
    lines.clear()
    got = choices.resolve_backbones("auto", "imagenet", made, lines.append, probe=lambda: False)
    assert [(p.backbone, p.weights) for p in got] == [("mobilenet_v2", "imagenet")] * 2 + [(None, None)]
    assert len(lines) == 1 and "patchcore, padim" in lines[0]
    assert "offline" in lines[0] and "--weights PATH" in lines[0]
    monkeypatch.setattr(backbones, "imagenet_available", lambda name: True)
    monkeypatch.setattr(backbones, "ensure_weights", lambda name, weights: None)
    got = choices.resolve_backbones("auto", "imagenet", made, lines.append)
    assert got[0].backbone == "wide_resnet50_2" and "the paper's" in lines[-1]
    assert choices.run_tag(got) == "wide_resnet50_2"
    assert choices.default_out("synthetic", "mobilenet_v2") == Path("runs/synthetic-mobilenet_v2")


def test_list_shows_methods_and_planned(capsys: pytest.CaptureFixture) -> None:
    code, text = run_bench(capsys, "list")
    assert code == 0 and "not yet implemented" not in text and "dummy" not in text
    for name in ("patchcore", "sa_patchcore", "padim", "cs_flow", "patchsvdd"):
        assert f"{name}: " in text  # one plain line per method when the output is not a terminal
    assert "budgets: paper, quick, smoke" in text
    assert "dummy" not in text


def test_option_parsing() -> None:
    from leaderboard.errors import UsageError
    from leaderboard.running.plan import plan_methods

    assert choices.parse_seeds("0-2,5,1") == [0, 1, 2, 5]
    made = plan_methods(["patchcore", "padim"], METHODS,
                        ["patchcore.coreset_ratio=0.1", "sigma=2", "padim.eps=1"], "quick")
    assert [p.overrides for p in made] == [{"coreset_ratio": 0.1, "sigma": 2.0},
                                           {"sigma": 2.0, "eps": 1.0}]  # ints made floats
    for items, match in [(["padim.eps=1"], "not among --methods"), (["novalue"], "METHOD.KEY=VALUE"),
                         (["patchcore.reweight=1"], "expected bool"),
                         (["patchcore.precision=fp16"], "expected 'fp32' | 'bf16'")]:
        with pytest.raises(UsageError, match=match):
            plan_methods(["patchcore"], METHODS, items, "quick")


@pytest.mark.parametrize("param,message", [
    ("coreset_ratio=0.1", "padim has no setting 'coreset_ratio'"),  # not for every method
    ("patchcore.coreset_ration=0.1", "no setting 'coreset_ration'"),  # misspelt
    ("patchcore.coreset_ratio=2", "coreset_ratio must be in (0, 1]"),  # out of range
    ("patchcore.seed=3", "set it with --seeds"),
])
def test_bad_params_exit_2_before_anything(capsys: pytest.CaptureFixture, tmp_path: Path,
                                           root: Path, param: str, message: str) -> None:
    out = tmp_path / "run"
    code, text = run_bench(capsys, "run", "--methods", "patchcore,padim", "--param", param,
                        "--dataset", str(root), "--out", str(out))
    assert code == 2 and message in text and "Traceback" not in text
    assert not out.exists()
    if "coreset_ration" in param:
        assert "coreset_ratio=0.01" in text  # the valid keys are listed


def test_offline_backbone_fails_once_before_any_cell(capsys: pytest.CaptureFixture,
                                                    tmp_path: Path, root: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.error

    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    calls = []

    def offline(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    out = tmp_path / "run"
    code, text = run_bench(capsys, "run", "--methods", "patchcore,padim", "--dataset", str(root),
                        "--backbone", "wide_resnet50_2", "--out", str(out))
    assert code == 1 and text.count("ImageNet weights for wide_resnet50_2") == 1
    assert "--backbone mobilenet_v2" in text and len(calls) == 1 and not out.exists()


def test_cuda_without_gpu(capsys: pytest.CaptureFixture, tmp_path: Path, root: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code, text = run_bench(capsys, "run", "--methods", DUMMY, "--dataset", str(root),
                        "--device", "cuda", "--out", str(tmp_path / "run"))
    assert code == 2 and "no CUDA device" in text and not (tmp_path / "run").exists()


def test_ctrl_c_says_how_to_resume(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import leaderboard.running.bench

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(leaderboard.running.bench, "bench_run", interrupted)
    code, text = run_bench(capsys, "run", "--methods", DUMMY)
    assert code == 130 and "rerun the same command to resume" in text and "Traceback" not in text


def test_budget_is_announced_recorded_and_shown(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                root: Path) -> None:
    out = tmp_path / "run"
    code, text = run_bench(capsys, "run", "--methods", f"{DUMMY},{DUMMY_TRAINED}", "--dataset", str(root),
                        "--out", str(out))
    assert code == 0
    assert "Budget: quick (the default on a CPU" in text and "epochs 12 -> 4" in text
    assert "dummy_trained" in text and "epoch 1/4" in text  # one line per epoch in a log
    md = (out / "leaderboard.md").read_text()
    assert "| Budget | dummy: none (no training); dummy_trained: quick (epochs 4) |" in md
    assert "| dummy_trained (outside method; budget quick) |" in md and "| dummy (outside method) |" in md
    assert "## Training" in md and "plots/training.png" in md
    rec = read_record(out / "records/cadsd__dummy_trained__seed0.json")
    assert rec.method.budget == "quick" and rec.training.series("epoch")[-1] == 4


def test_paper_budget_on_a_cpu_states_its_cost() -> None:
    from leaderboard.running.plan import budget_lines, plan_methods

    plans = plan_methods(["cs_flow", "patchcore"], METHODS, (), "paper")
    plans = choices.resolve_backbones("efficientnet_lite2", "imagenet", plans, echo=lambda s: None)
    lines = budget_lines(plans, "paper", "cpu", 400, lambda: 180.0)
    assert len(lines) == 2 and "patchcore" not in " ".join(lines)  # only trained methods
    assert "the official settings" in lines[0] and "cs_flow" in lines[1]
    assert "PFLOP" in lines[1] and " h at this cpu" in lines[1] and "--budget quick" in lines[1]
    quick = plan_methods(["cs_flow"], METHODS, ("cs_flow.epochs=3",), "quick")
    quick = choices.resolve_backbones("efficientnet_lite2", "imagenet", quick, echo=lambda s: None)
    [_, line] = budget_lines(quick, "quick", "cpu", 400, lambda: 180.0)
    assert "input_size 768 -> 256" in line and "then --param epochs=3" in line and "min at" in line


def test_unknown_budget_and_budget_a_method_lacks(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                  root: Path) -> None:
    code, text = run_bench(capsys, "run", "--methods", DUMMY, "--dataset", str(root),
                        "--budget", "fast", "--out", str(tmp_path / "run"))
    assert code == 2 and "choose one of auto, paper, quick, smoke" in text


def test_ablation_suite_plans_and_labels_tables_7_and_8(capsys: pytest.CaptureFixture,
                                                      tmp_path: Path, root: Path) -> None:
    """The suite's default row is a plain sa_patchcore (same plan); Tables 7 and 8 name each
    variant (fabricated scores: only the labels are checked)."""
    names = suite("ablations")
    for name in ("sa_patchcore-avgpool", "sa_patchcore_eq4-nopool", "sa_patchcore-layer2and3"):
        assert name in names
    [in_suite] = [p for p in plans(names) if p.name == "sa_patchcore"]
    [plain] = plans(["sa_patchcore"])
    assert in_suite.settings() == plain.settings() and in_suite.entry == plain.entry
    md = render_markdown(planned_records(names))
    assert "## Table 7: which layers go into the self-attention" in md
    assert "## Table 8: the pooling before the self-attention" in md
    for name in ("sa_patchcore-avgpool", "sa_patchcore_eq4-nopool", "sa_patchcore-layer2and3"):
        assert f"`{name}`" in md
    code, text = run_bench(capsys, "run", "--suite", "ablations", "--methods", "patchcore",
                           "--dataset", str(root), "--out", str(tmp_path / "x"))
    assert code == 2 and "drop --methods" in text and not (tmp_path / "x").exists()


def test_few_shot_cells_subsets_and_rerun(capsys: pytest.CaptureFixture, tmp_path: Path,
                                          root: Path) -> None:
    """K-shot cells: one seeded subset per seed, the same for every method, kept sorted; a
    rerun skips them all; K over the training set is refused before the run."""
    out = tmp_path / "shots"
    args = ["run", "--methods", f"{DUMMY},{DUMMY_TRAINED}", "--shots", "1,4", "--seeds", "0-2",
            "--dataset", str(root), "--budget", "smoke", "--out", str(out)]
    code, text = run_bench(capsys, *args)
    assert code == 0, text
    md = (out / "leaderboard.md").read_text()
    assert "## Few-shot: K = 1 training images (seeds 0, 1, 2" in md and "## Few-shot: K = 4" in md
    recs = {p.name: read_record(p) for p in (out / "records").glob("*.json")}
    assert len(recs) == 2 * 2 * 3 and "cadsd__dummy_trained__4shot__seed1.json" in recs
    one = [recs[f"cadsd__dummy__1shot__seed{s}.json"].cell.train_files for s in range(3)]
    assert all(len(f) == 1 for f in one) and len({f[0] for f in one}) > 1  # seeded subsets
    four = recs["cadsd__dummy_trained__4shot__seed0.json"].cell.train_files
    assert four == sorted(four) and len(set(four)) == 4 and all(f.startswith("train/") for f in four)
    assert four == recs["cadsd__dummy__4shot__seed0.json"].cell.train_files  # same per seed
    code, text = run_bench(capsys, *args)
    assert code == 0 and text.count("skipped") == 12
    assert (out / "leaderboard.md").read_text().split("| Date |")[0] == md.split("| Date |")[0]
    code, text = run_bench(capsys, "run", "--methods", DUMMY, "--shots", "99", "--dataset",
                           str(root), "--out", str(tmp_path / "y"))
    assert code == 2 and "has 6 images" in text and not (tmp_path / "y").exists()


def test_few_shot_tables_label_k_seeds_and_spread() -> None:
    """One table per K, its seeds named, each cell mean ± std over the seeds (fabricated
    scores: only the labels are checked)."""
    md = render_markdown(planned_records(["patchcore", "sa_patchcore"], seeds=(0, 1, 2),
                                         shots=(1, 4)))
    assert "## Few-shot: K = 1 training images (seeds 0, 1, 2: one seeded subset each)" in md
    assert "## Few-shot: K = 4 training images" in md
    rows = [line for line in md.splitlines() if line.startswith("| patchcore | ")]
    assert len(rows) >= 2 and all(" ± " in line for line in rows[:2])
