"""The result record's files: version-1 records (stops 1-10) are migrated on reading and give
the leaderboard their own code rendered; newer, foreign and malformed files are refused with a
message that says what to do; a record round-trips through its JSON file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from leaderboard.errors import BenchError
from leaderboard.records import (
    SCHEMA_VERSION,
    BadRecord,
    load_records,
    parse_record,
    read_record,
)
from leaderboard.reporting.report import render_markdown
from leaderboard.reporting.results_csv import render_csv

#: records written by stop 10's code (schema version 1) on the synthetic CAD-SD by
#: `make bench`, per-image scores cut to one image per type, and the leaderboard that code
#: rendered from them
V1 = Path(__file__).parent / "data" / "records_v1"
PLOTS = ["plots/roc.png", "plots/gallery.png", "plots/training.png"]


def test_version_1_records_render_the_leaderboard_their_code_rendered() -> None:
    # the fixture's per-image scores were trimmed to one per type (to keep the repository
    # small), so they no longer give the stored metrics: a reader refuses such a file...
    with pytest.raises(BadRecord, match="holds 1 normal and 4 anomalous per-image scores, but "
                                        "its metrics were computed on 210 and 166"):
        load_records(V1)
    records = load_records(V1, verify=False)  # ...and this test reads them knowingly
    assert [r.method.name for r in records] == ["padim", "patchcore", "sa_patchcore",
                                                "sa_patchcore_eq4", "patchsvdd", "cs_flow"]
    assert all(r.schema_version == SCHEMA_VERSION for r in records)
    # stop 10's rendering, except that its pixel table now names the budget as every other
    # table does (stop 26: a quick-budget row never passes for the paper's method)
    expected = (V1 / "leaderboard.md").read_text()
    for m in ("patchsvdd", "cs_flow"):
        expected = expected.replace(f"\n| {m} | ", f"\n| {m} (budget quick) | ", 1)
    # stop 27: the notes say what "(deterministic)" means and name each search a record names
    expected = expected.replace(
        "mean ± standard deviation over seeds instead.",
        "mean ± standard deviation over seeds instead, or *(deterministic)* where every seed "
        "gave the same per-image scores (the seed changes nothing in that method).", 1)
    state = next(line for line in expected.splitlines() if line.startswith("- *learned state*"))
    expected = expected.replace(state, state + "\n- Nearest-neighbour search of **patchsvdd**: "
                                "K = 32: approximate (faiss IVF-Flat).", 1)
    # stop 38: a trained row from one seed at a CPU budget says it is one draw
    search = "K = 32: approximate (faiss IVF-Flat)."
    expected = expected.replace(search, search + "".join(
        f"\n- **{m}** is one seed trained at the `quick` budget: one draw, not a result. At CPU "
        "budgets a trained method's AUROC moves by several points between seeds and machines "
        "(measured on the synthetic set: CS-Flow's seeds 0-2 at `quick` gave 0.633 to 0.732 "
        "on one machine, and one seed gave 0.639 on one machine and 0.692 on another); "
        "`--seeds 0-2` shows the spread as mean ± std." for m in ("patchsvdd", "cs_flow")), 1)
    # stop 28: a leaderboard travels, so a local folder shows its last component only
    expected = expected.replace("from `/cache/synthetic/seed0-paper-256`",
                                "from `…/seed0-paper-256`", 1)
    assert expected != (V1 / "leaderboard.md").read_text()
    # stop 31: paired differences and "what it catches" (pure functions of the scores, which
    # these trimmed files hold only a few of) come after the pixel table
    rendered = render_markdown(records, PLOTS)
    start = rendered.index("## Paired differences")
    end = rendered.index("## Table 4")
    assert "## What it catches" in rendered[start:end]
    assert rendered[:start] + rendered[end:] == expected
    svdd = next(r for r in records if r.method.name == "patchsvdd")
    assert svdd.training.verdict and svdd.input.resample == "bicubic"
    assert svdd.method.target == "baselines.patchsvdd:PatchSVDD"
    assert render_csv(records).count("\n") == len(records) + 1


def _v1(name: str = "synthetic__padim__seed0.json") -> dict:
    return json.loads((V1 / "records" / name).read_text())


def test_migration_moves_every_version_1_field() -> None:
    old = _v1()
    rec = parse_record(old, verify=False)  # trimmed scores (see above)
    assert rec.cell.seed == old["seed"] and rec.cell.train_files is None
    assert rec.metrics.image_auroc.all.ci.low == old["metrics"]["image_auroc"]["all"]["ci"][0]
    assert rec.metrics.image_auroc.average["local"].ci.high == \
        old["metrics"]["image_auroc"]["average"]["local"]["ci"][1]
    assert rec.dataset.decode_ms_per_image == old["timing"]["decode_ms_per_image"]
    assert rec.input.describe() == old["input"]["description"]
    again = parse_record(json.loads(json.dumps(rec.to_json_dict())), verify=False)
    assert again == rec  # the migrated record is a valid current one


def test_newer_foreign_and_malformed_files_are_refused(tmp_path: Path) -> None:
    newer = {**_v1(), "schema_version": SCHEMA_VERSION + 1}
    with pytest.raises(BenchError, match="upgrade cadsd-bench"):
        parse_record(newer)
    with pytest.raises(BenchError, match="not a cadsd-bench result record"):
        parse_record({"cell": {}})
    bad = _v1()
    bad["timing"]["latency_ms"]["mean"] = "fast"
    with pytest.raises(BenchError, match=r"malformed version-1 record .*latency_ms\.mean"):
        parse_record(bad)
    spec = _v1()
    spec["input"]["resample"] = "sideways"
    with pytest.raises(BenchError, match="unknown resample 'sideways'"):
        parse_record(spec)
    extra = _v1()
    extra["memory"]["surprise"] = 1
    with pytest.raises(BenchError, match="surprise"):
        parse_record(extra)
    folder = tmp_path / "run"
    shutil.copytree(V1, folder)
    (folder / "records" / "broken.json").write_text("{")
    with pytest.raises(BenchError, match="broken.json cannot be read as JSON"):
        load_records(folder, verify=False)
    with pytest.raises(BenchError, match="not a `bench run` output folder"):
        load_records(tmp_path)
    assert read_record(V1 / "records" / "synthetic__padim__seed0.json", verify=False).ok
