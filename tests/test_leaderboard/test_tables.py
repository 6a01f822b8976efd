"""Tables are pure functions of the records: every number in leaderboard.md and results.csv
equals the one recomputed from the records' per-image scores; paper numbers appear only for
the real CAD-SD; synthetic runs say so."""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json

import numpy as np
import pytest
from fixtures import COUNTS, DUMMY, EXPLODING, load, options, write_layout
from sklearn.metrics import roc_auc_score

from leaderboard.records import Record
from leaderboard.reporting.report import render_markdown
from leaderboard.reporting.results_csv import render_csv
from leaderboard.running import runner
from leaderboard.running.progress import Reporter


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[Record]:
    tmp = tmp_path_factory.mktemp("tables")
    data = load(write_layout(tmp, counts=COUNTS, size=40, masks=True), kind="synthetic")
    opts = options(tmp / "run", [DUMMY, EXPLODING], seeds=[0, 1])
    return runner.run(data, opts, Reporter())


def _recompute(rec: Record) -> dict[str, float]:
    y = np.array([r.label for r in rec.scores])
    s = np.array([r.score for r in rec.scores])
    cats = np.array([r.category for r in rec.scores])
    out = {"all": roc_auc_score(y, s)}
    for c in set(cats) - {"good"}:
        sel = (cats == "good") | (cats == c)
        out[c] = roc_auc_score(y[sel], s[sel])
    return out


def _row(md: str, label: str) -> str:
    return next(line for line in md.splitlines() if line.startswith(f"| {label} |"))


def test_csv_equals_recomputed_from_records(records: list[Record]) -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv(records))))
    assert len(rows) == len(records) == 4
    by_id = {(r.method.name, r.seed): r for r in records}
    img = "metrics.image_auroc"
    for row in rows:
        rec = by_id[(row["method.name"], int(row["cell.seed"]))]
        if not rec.ok:
            assert row["status"] == "failed" and "boom" in row["error"]
            assert row[f"{img}.all.auroc"] == ""
            continue
        expect = _recompute(rec)
        assert float(row[f"{img}.all.auroc"]) == pytest.approx(expect["all"], abs=1e-12)
        assert float(row[f"{img}.all.ci.low"]) == rec.metrics.image_auroc.all.ci.low
        for c in ("scratch", "paint", "over_coupling", "lacking"):
            assert float(row[f"{img}.category.{c}.auroc"]) == pytest.approx(expect[c], abs=1e-12)
        avg = (expect["over_coupling"] + expect["lacking"]) / 2
        assert float(row[f"{img}.average.co_occurrence.auroc"]) == pytest.approx(avg, abs=1e-12)
        assert float(row["timing.latency_ms.mean"]) == rec.timing.latency_ms.mean
        assert json.loads(row["memory.load_avg_after"]) == rec.memory.load_avg_after
    assert "scores" not in rows[0] and "training.log" not in rows[0]


def test_markdown_single_seed_numbers_trace_to_the_record(records: list[Record]) -> None:
    rec = next(r for r in records if r.ok and r.seed == 0)
    md = render_markdown([rec])
    expect = _recompute(rec)
    ci = rec.metrics.image_auroc.all.ci
    assert f"| dummy (outside method) | none | {100 * expect['all']:.1f} [{100 * ci.low:.1f}, {100 * ci.high:.1f}] |" in md
    for c, label in (("scratch", "Scratch"), ("lacking", "Lacking")):
        assert _row(md, label).startswith(f"| {label} | {100 * expect[c]:.1f} [")
    avg = (expect["scratch"] + expect["paint"]) / 2
    assert _row(md, "**Average (local)**").startswith(f"| **Average (local)** | {100 * avg:.1f} [")
    lat = rec.timing.latency_ms
    table4 = md.split("## Table 4")[1]
    assert f"| dummy (outside method) | {lat.mean:.1f} / {lat.median:.1f} / {lat.p95:.1f}" in table4


def test_markdown_several_seeds_mean_and_std(records: list[Record]) -> None:
    md = render_markdown(records)
    ok = [r for r in records if r.ok]
    values = [_recompute(r)["paint"] for r in ok]
    mean, std = np.mean(values), np.std(values, ddof=1)
    same = all([s.score for s in r.scores] == [s.score for s in ok[0].scores] for r in ok)
    spread = "(deterministic)" if same else f"± {100 * std:.1f}"
    assert _row(md, "Paint") == f"| Paint | {100 * mean:.1f} {spread} |"
    assert "## Failed cells" in md and "boom" in md
    assert md == render_markdown(records)  # pure: no clock, no randomness
    # the seeds' scores made different: a measured spread again, never "(deterministic)"
    varied = copy.deepcopy(records)
    moved = next(r for r in varied if r.ok and r is not varied[0])
    moved.scores[0].score += 1e-3
    from leaderboard.reporting.cells import seeds_identical

    assert not seeds_identical([r for r in varied if r.ok])
    assert same == seeds_identical(ok)


def test_synthetic_is_labelled_and_never_shows_paper_numbers(records: list[Record]) -> None:
    fake = copy.deepcopy([r for r in records if r.ok])
    for r in fake:
        r.method.name = "patchcore"
    md = render_markdown(fake)
    assert "SYNTHETIC CAD-SD" in md and "NOT the paper's data" in md
    assert "paper" not in md.split("## Table 2")[1].split("## Notes")[0]
    assert "83.5" not in md and "99.6" not in md


def test_real_cadsd_shows_paper_numbers_beside_ours(records: list[Record]) -> None:
    fake = copy.deepcopy([r for r in records if r.ok and r.seed == 0])
    for r in fake:
        r.method.name, r.method.origin = "sa_patchcore", "builtin"
        r.dataset.kind = "cadsd"
    md = render_markdown(fake)
    assert "the real CAD-SD" in md and "SYNTHETIC" not in md
    assert _row(md, "sa_patchcore").endswith(" 97.6 |")  # Table 2 paper column
    assert "· paper 92.9" in _row(md, "Lacking")
    assert "· paper 96.3" in _row(md, "**Average (co-occurrence)**")  # (99.7 + 92.9) / 2
    assert "| 25.0 |" in md.split("## Table 4")[1]


def test_custom_dataset_is_not_called_cadsd(records: list[Record]) -> None:
    fake = copy.deepcopy(records)
    for r in fake:
        r.dataset.kind = "custom"
    md = render_markdown(fake)
    assert "not the real CAD-SD" in md and "· paper" not in md


def test_an_official_benchmark_copy_shows_the_papers_means() -> None:
    """Every BTAD category present with its published counts: the paper's Table 6 means sit
    under their methods, whatever the row label (a budget in brackets) says."""
    from pathlib import Path

    from leaderboard.records import load_records

    stop10 = load_records(Path(__file__).parent / "data" / "records_v1", verify=False)
    fake = []
    for cat in ("01", "02", "03"):
        for r in copy.deepcopy(stop10):
            r.dataset.benchmark, r.dataset.category, r.dataset.published_counts = "btad", cat, True
            fake.append(r)
    md = render_markdown(fake)
    assert "BTAD, the official copy" in md
    cells = [[c.strip() for c in _row(md, label).strip("|").split("|")][1:]
             for label in ("Category", "paper (mean)")]
    paper = dict(zip(*cells))
    assert paper["patchcore"] == "92.3" and paper["cs_flow (budget quick)"] == ""
    assert paper["sa_patchcore"] == "93.7" and paper["sa_patchcore_eq4"] == paper["padim"] == ""


def test_a_single_seed_of_a_trained_method_at_a_cpu_budget_says_it_is_one_draw() -> None:
    """Issue 36, item 4: a trained row at `quick` from one seed is flagged as one draw; a
    training-free row is not, and neither is a trained row with several seeds (mean ± std)."""
    from pathlib import Path

    from leaderboard.records import load_records

    stop10 = load_records(Path(__file__).parent / "data" / "records_v1", verify=False)
    md = render_markdown(stop10)
    flagged = [m for m in ("cs_flow", "patchsvdd", "patchcore", "padim")
               if f"- **{m}** is one seed trained at the `quick` budget" in md]
    assert flagged == ["cs_flow", "patchsvdd"]
    seeds = copy.deepcopy([r for r in stop10 if r.method.name == "cs_flow"])
    seeds[0].cell.seed = 1
    assert "is one seed trained" not in render_markdown(
        [r for r in stop10 if r.method.name == "cs_flow"] + seeds)


def test_anomalib_s_model_beside_ours_says_whether_it_is_like_with_like() -> None:
    """Issue 32, item 6: under Table 4, this project's PatchCore and anomalib's Patchcore of the
    same run are said to compare like with like only when backbone, input, coreset ratio and
    k agree; otherwise the differences and the --param that matches them are named."""
    from pathlib import Path

    from leaderboard.records import load_records

    stop10 = load_records(Path(__file__).parent / "data" / "records_v1", verify=False)
    ours = next(r for r in stop10 if r.method.name == "patchcore")
    theirs = copy.deepcopy(ours)
    theirs.method.name = theirs.cell.method = "anomalib-patchcore"
    theirs.cell.id = ours.cell.id.replace("patchcore", "anomalib-patchcore")
    theirs.method.origin, theirs.method.distribution_version = "anomalib", "2.7.0"
    theirs.method.params = {"coreset_sampling_ratio": ours.method.params["coreset_ratio"],
                            "num_neighbors": ours.method.params["num_neighbors"],
                            "layers": None}
    md = render_markdown([ours, theirs])
    line = next(x for x in md.splitlines() if x.startswith("- patchcore vs patchcore · anomalib"))
    assert "like with like (backbone" in line and "not like" not in line
    theirs.method.params["coreset_sampling_ratio"] = 0.1
    theirs.input = dataclasses.replace(theirs.input, resample="bilinear")
    md = render_markdown([ours, theirs])
    line = next(x for x in md.splitlines() if x.startswith("- patchcore vs patchcore · anomalib"))
    assert "**not like with like**" in line and "coreset_ratio 0.01 vs 0.1" in line
    assert "--param anomalib:Patchcore.coreset_sampling_ratio=0.01" in line
    assert f"--param anomalib:Patchcore.resample={ours.input.resample}" in line
    theirs.backbone = dataclasses.replace(theirs.backbone, name="efficientnet_lite2")
    theirs.method.params["layers"] = ["blocks.2", "blocks.3"]
    md = render_markdown([ours, theirs])
    line = next(x for x in md.splitlines() if x.startswith("- patchcore vs patchcore · anomalib"))
    assert f"--backbone {ours.backbone.name}" in line
    assert "anomalib's layers set to ['blocks.2', 'blocks.3']" in line


def test_a_group_missing_a_type_says_what_its_average_is_over() -> None:
    from leaderboard.reporting.tables import missing_type_notes

    note, blank = missing_type_notes(["good", "scratch", "over_coupling", "lacking"])
    assert note == ("- The test set has no Paint image: *Average (local)* and the local pooled "
                    "row are over Scratch alone.") and blank == ""
    assert missing_type_notes(["good", "crack", "hole"]) == []  # another layout's own types


def test_a_method_run_below_float32_is_said_in_the_notes() -> None:
    from fixtures import planned_records

    bf16, fp32 = planned_records(["cs_flow", "patchcore"])
    bf16.model = dataclasses.replace(bf16.model, fit_notes={"flow_precision": "bf16"})
    fp32.model = dataclasses.replace(fp32.model, fit_notes={"flow_precision": "fp32"})
    md = render_markdown([bf16, fp32])
    said = [line for line in md.splitlines() if "below float32" in line]
    assert said == [("- **cs_flow** ran below float32: flow_precision bf16 (setting auto); see "
                     "its records' fit_notes.")]
