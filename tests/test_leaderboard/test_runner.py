"""The runner: one atomic record per cell with every field of DESIGN.md "Results"; reruns skip
finished cells, an interrupted run resumes with identical results, a failing method is recorded
and the run goes on, and a folder holding other results is refused."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import harness_methods
import numpy as np
import pytest
from fixtures import (
    COUNTS,
    DUMMY,
    DUMMY_TRAINED,
    EXPLODING,
    INTERRUPTED,
    load,
    options,
    write_layout,
)
from sklearn.metrics import roc_auc_score

from leaderboard.errors import BenchError
from leaderboard.records import SCHEMA_VERSION, Record, load_records, read_record, record_path
from leaderboard.records.schema import BackboneInfo
from leaderboard.running import runner
from leaderboard.running.data import BenchData
from leaderboard.running.progress import Reporter


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> BenchData:
    return load(write_layout(tmp_path_factory.mktemp("data"), counts=COUNTS, size=40, masks=True))


def _run(tiny: BenchData, out: Path, methods: list[str], **kw: object) -> list[Record]:
    return runner.run(tiny, options(out, methods, **kw), Reporter())


def test_record_has_every_field(tiny: BenchData, tmp_path: Path) -> None:
    [rec] = _run(tiny, tmp_path, [DUMMY], save_models=True)
    assert rec.status == "ok" and rec.error is None
    path = record_path(tmp_path, rec.cell.id)
    on_disk = json.loads(path.read_text())
    assert on_disk["schema_version"] == SCHEMA_VERSION == 4 and read_record(path) == rec
    m = rec.method  # an outside method's provenance
    assert (m.origin, m.target, m.source_file) == ("import path", DUMMY, "harness_methods.py")
    assert m.source_sha256 == hashlib.sha256(Path(harness_methods.__file__).read_bytes()).hexdigest()
    assert m.distribution is None and m.distribution_version is None  # not an installed package
    assert rec.method.params["grid"] == 28 and rec.seed == 0 and rec.cell.train_files is None
    assert rec.method.budget is None and rec.training is None  # dummy does not train
    assert rec.backbone == BackboneInfo()  # none used
    assert rec.input.resize == 256 and rec.input.crop == 224
    d = rec.dataset
    assert d.fingerprint == tiny.fingerprint and d.kind == "custom" and not d.synthetic
    assert d.counts["test/lacking"] == 2 and d.has_masks
    env = rec.environment
    assert env.git_sha and env.threads >= 1 and env.device == "cpu"
    assert env.versions["torch"] and env.started_at <= env.finished_at
    t = rec.timing
    assert t.fit_s > 0 and t.latency_ms.n == 12 and t.throughput.images_per_s > 0
    assert t.latency_ms.min <= t.latency_ms.median <= t.latency_ms.p95
    assert t.throughput.batch_consistency_max_abs < 1e-3
    assert t.throughput.images == 12  # the test set is under the 128 images timed
    assert "throughput = the first 128 test images at batch 32" in t.protocol
    assert rec.memory.peak_rss_mb >= rec.memory.rss_before_mb > 0
    assert 0 <= rec.memory.other_cpu_cores <= (os.cpu_count() or 1)
    assert rec.model.state_summary["mean_"] == [3, 28, 28]
    assert (tmp_path / rec.model.saved).is_file()
    assert (tmp_path / rec.artifacts.maps).is_file()
    assert [s.file_name for s in rec.scores] == tiny.test.file_names
    assert rec.metrics.pixel_auroc.all is not None


def test_throughput_times_the_first_images_only(tiny: BenchData, tmp_path: Path) -> None:
    [rec] = _run(tiny, tmp_path, [DUMMY], throughput_images=5, throughput_batch=2)
    t = rec.timing.throughput
    assert (t.images, t.batch) == (5, 2) and t.images_per_s > 0
    assert "throughput = the first 5 test images at batch 2" in rec.timing.protocol
    assert len(rec.scores) == 12 and rec.timing.latency_ms.n == 12  # every image still scored
    [whole] = _run(tiny, tmp_path / "all", [DUMMY], throughput_images=0)
    assert whole.timing.throughput.images == 12
    assert "throughput = the test set at batch 32" in whole.timing.protocol


def test_metrics_recompute_from_the_record(tiny: BenchData, tmp_path: Path) -> None:
    [rec] = _run(tiny, tmp_path, [DUMMY])
    rows = rec.scores
    rng = np.random.default_rng(0)
    rows = [rows[i] for i in rng.permutation(len(rows))]  # order must not matter
    y = np.array([r.label for r in rows])
    s = np.array([r.score for r in rows])
    cats = np.array([r.category for r in rows])
    m = rec.metrics.image_auroc
    assert m.all.auroc == pytest.approx(roc_auc_score(y, s))
    for c, entry in m.category.items():
        sel = (cats == "good") | (cats == c)
        assert entry.auroc == pytest.approx(roc_auc_score(y[sel], s[sel]))


def test_rerun_skips_force_redoes(tiny: BenchData, tmp_path: Path) -> None:
    first = _run(tiny, tmp_path, [DUMMY], seeds=[0, 1])
    path = record_path(tmp_path, first[0].cell.id)
    before = path.read_bytes()
    again = _run(tiny, tmp_path, [DUMMY], seeds=[0, 1])
    assert path.read_bytes() == before and again[0] == first[0]
    forced = _run(tiny, tmp_path, [DUMMY], seeds=[0], force=True)
    assert forced[0].environment.started_at >= first[0].environment.started_at
    assert forced[0].scores == first[0].scores  # deterministic


def test_failure_is_recorded_and_the_run_goes_on(tiny: BenchData, tmp_path: Path) -> None:
    recs = _run(tiny, tmp_path, [EXPLODING, DUMMY])
    assert [r.status for r in recs] == ["failed", "ok"]
    assert "boom" in recs[0].error and "during fit" in recs[0].error
    assert "Traceback" in recs[0].traceback and recs[0].metrics is None
    stored = {r.cell.id: r.status for r in load_records(tmp_path)}
    assert sorted(stored.values()) == ["failed", "ok"]


def test_interrupted_run_resumes_with_identical_results(tiny: BenchData, tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        _run(tiny, tmp_path, [DUMMY, INTERRUPTED])
    done = {p.name: p.read_bytes() for p in (tmp_path / "records").glob("*.json")}
    assert list(done) == ["cadsd__dummy__seed0.json"]  # the interrupted cell wrote nothing
    assert not list((tmp_path / "records").glob(".*"))
    clean = _run(tiny, tmp_path / "clean", [DUMMY])
    resumed = _run(tiny, tmp_path, [DUMMY, EXPLODING])
    assert {p.name: p.read_bytes() for p in (tmp_path / "records").glob("*dummy*.json")} == done
    assert resumed[0].scores == clean[0].scores
    assert resumed[0].metrics == clean[0].metrics


@pytest.mark.slow
def test_folder_with_other_results_is_refused(tiny: BenchData, tmp_path: Path) -> None:
    _run(tiny, tmp_path, ["padim"])
    with pytest.raises(BenchError, match="--force"):
        _run(tiny, tmp_path, ["padim"], backbone="efficientnet_lite2")
    [rec] = _run(tiny, tmp_path, ["padim"], backbone="efficientnet_lite2", force=True)
    assert rec.ok and rec.backbone.name == "efficientnet_lite2"
    _run(tiny, tmp_path, [DUMMY], backbone="efficientnet_lite2")  # no backbone: another method is fine


def test_git_sha_unknown_outside_a_checkout(tmp_path: Path) -> None:
    from leaderboard.running.environment import git_sha

    assert git_sha(tmp_path) == "unknown"
    checkout = (Path(__file__).parents[2] / ".git").exists()
    assert len(git_sha().split("+")[0]) == 40 if checkout else git_sha() == "unknown"


def test_saved_dataset_and_folder_agree(tmp_path: Path) -> None:
    import cadsd.format.hf
    from leaderboard.running import data

    root = write_layout(tmp_path, counts=COUNTS, size=40, masks=True)
    cadsd.format.hf.build_to_disk(root, tmp_path / "built")
    a, b = load(root), load(tmp_path / "built")
    assert a.fingerprint == b.fingerprint
    assert a.test.file_names == b.test.file_names and a.test.categories == b.test.categories
    assert (a.test.images == b.test.images).all() and (a.test.masks == b.test.masks).all()
    from baselines.preprocess import image_to_tensor

    first = image_to_tensor(root / a.test.file_names[0])
    assert (a.test.batch(0, 1)[0] == first).all()  # uint8 storage is exact
    hub = data.resolve("hf:org/name@rev")
    assert (hub.name, hub.kind, hub.source) == ("org__name", "custom", "hf:org/name@rev")


def test_one_dataset_per_run_folder(tiny: BenchData, tmp_path: Path) -> None:
    _run(tiny, tmp_path, [DUMMY])
    other = BenchData(**{**tiny.__dict__, "name": "other", "fingerprint": "f" * 64})
    with pytest.raises(BenchError, match="new --out"):
        _run(other, tmp_path, [DUMMY], force=True)  # --force cannot mix datasets either
    with pytest.raises(BenchError, match="other method settings"):
        _run(tiny, tmp_path, [DUMMY], params=("dummy.grid=14",))
    [rec] = _run(tiny, tmp_path, [DUMMY], params=("dummy.grid=14",), force=True)
    assert rec.method.params["grid"] == 14 and rec.model.state_summary["mean_"] == [3, 14, 14]


def test_trained_method_runs_its_budget_seeded(tiny: BenchData, tmp_path: Path) -> None:
    """dummy_trained: the epoch loop, the budget in the record, the same scores for the same
    seed, other scores for another seed (its batches are shuffled with the cell's seed)."""
    [a] = _run(tiny, tmp_path / "a", [DUMMY_TRAINED], budget="quick")
    assert a.ok and a.method.budget == "quick"
    assert a.method.budget_overrides == {"epochs": 4} and a.method.params["epochs"] == 4
    assert a.training.series("epoch") == [1, 2, 3, 4]
    [b] = _run(tiny, tmp_path / "b", [DUMMY_TRAINED], budget="quick")
    assert a.scores == b.scores
    [c] = _run(tiny, tmp_path / "c", [DUMMY_TRAINED], budget="quick", seeds=[1])
    assert [s.score for s in c.scores] != [s.score for s in a.scores]
    with pytest.raises(BenchError, match="another budget"):
        _run(tiny, tmp_path / "a", [DUMMY_TRAINED], budget="smoke")


@pytest.mark.slow
def test_each_method_gets_its_own_input(tiny: BenchData, tmp_path: Path) -> None:
    recs = _run(tiny, tmp_path, [DUMMY, "patchsvdd"])
    by = {r.method.name: r for r in recs}
    svdd = by["patchsvdd"]
    assert svdd.ok, svdd.error
    assert svdd.input.resize == 256 and svdd.input.crop is None
    assert svdd.input.resample == "bicubic"
    assert by["dummy"].input.crop == 224
    assert set(tiny.views) >= {(256, None, "bicubic"), (256, 224, "lanczos")}  # decoded once each
    assert svdd.metrics.pixel_auroc is not None  # masks decoded at 256 too
    assert svdd.backbone.name is None  # trained from scratch
