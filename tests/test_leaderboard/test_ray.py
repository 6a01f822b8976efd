"""`--executor ray` on a real local Ray cluster (started here, stopped at the end): the same
scores and leaderboard as the local executor; a worker that dies mid-cell leaves no partial
record and a rerun completes the cell; without Ray, a clear message."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fixtures import DUMMY, DYING

from leaderboard.errors import BenchError
from leaderboard.records import read_record
from leaderboard.running.bench import bench_run

ray = pytest.importorskip("ray")
TESTS = str(Path(__file__).parents[1])  # the shared helpers


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance for these tests, started as `bench run` starts it: its workers
    import the outside methods (this folder's, by import path) through the PYTHONPATH that
    ``ray_pythonpath`` derives from the loaded modules, not one set by hand."""
    from leaderboard.methods import resolve
    from leaderboard.methods.outside import ray_pythonpath
    from leaderboard.running.runner import ray_session as session

    names, reg = resolve(f"{DUMMY},{DYING}")
    path = ray_pythonpath([reg[n] for n in names])
    assert path == [TESTS]
    with session(None, path):
        yield


def _run(root: Path, out: Path, methods: str, executor: str, **kw: object):
    return bench_run(methods=methods, dataset=str(root), backbone="mobilenet_v2", out=out,
                     executor=executor, echo=lambda line: None, resamples=100, warmup=1, **kw)


def _scores(out: Path) -> dict[str, list[float]]:
    return {p.name: [s.score for s in read_record(p).scores]
            for p in sorted((out / "records").glob("*.json"))}


def _with_anomalib() -> tuple[str, tuple[str, ...]]:
    """anomalib's Patchcore too where the extra is installed (CI installs it): its class is
    made on first use in the worker, from the import path the record names."""
    try:
        import anomalib  # noqa: F401
    except ImportError:
        return "", ()
    return ",anomalib:Patchcore", ("anomalib:Patchcore.image_size=64",
                                   "anomalib:Patchcore.coreset_sampling_ratio=0.5")


@pytest.mark.slow
def test_ray_gives_the_local_scores_and_leaderboard(cluster: None, root: Path,
                                                    tmp_path: Path) -> None:
    extra, params = _with_anomalib()
    local = _run(root, tmp_path / "local", f"patchcore,{DUMMY}{extra}", "local", params=params)
    remote = _run(root, tmp_path / "ray", f"patchcore,{DUMMY}{extra}", "ray", params=params)
    assert not local.failed and not remote.failed
    assert _scores(tmp_path / "local") == _scores(tmp_path / "ray")
    table = lambda out: (out / "leaderboard.md").read_text().split("## Table 4")[0].split(
        "| Date |")[1].split("\n", 1)[1]
    assert table(tmp_path / "local") == table(tmp_path / "ray")  # timings and dates aside
    rec = read_record(next((tmp_path / "ray" / "records").glob("*patchcore*")))
    assert rec.environment.host and rec.ok
    assert len(remote.records) == 3 if extra else 2
    rerun = _run(root, tmp_path / "ray", f"patchcore,{DUMMY}{extra}", "ray", params=params)
    assert [r.environment.started_at for r in rerun.records] == [
        r.environment.started_at for r in remote.records]  # finished cells are kept


@pytest.mark.slow
def test_a_dying_worker_leaves_no_record_and_a_rerun_completes(cluster: None, root: Path,
                                                               tmp_path: Path) -> None:
    marker = tmp_path / "die-once"
    marker.write_text("")
    out = tmp_path / "run"
    first = _run(root, out, f"{DYING},{DUMMY}", "ray", params=[f"dying.marker={marker}"])
    names = sorted(p.name for p in (out / "records").glob("*.json"))
    assert names == ["cadsd__dummy__seed0.json"]  # the killed cell wrote nothing at all
    assert not list((out / "maps").glob("*dying*"))
    assert len(first.records) == 1 and not marker.exists()
    again = _run(root, out, f"{DYING},{DUMMY}", "ray", params=[f"dying.marker={marker}"])
    assert sorted(r.cell.id for r in again.records) == ["cadsd__dummy__seed0",
                                                        "cadsd__dying__seed0"]
    assert all(r.ok for r in again.records)


def test_without_ray_the_message_says_how_to_install(monkeypatch: pytest.MonkeyPatch,
                                                     root: Path, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(BenchError, match=r"pip install 'cadsd-bench\[ray\]'"):
        _run(root, tmp_path / "x", DUMMY, "ray")
    assert not (tmp_path / "x").exists()


def test_one_session_serves_every_category(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench_run opens one Ray session around a benchmark's categories; the per-category
    run_cells inside it joins that session instead of starting and stopping Ray again."""
    from leaderboard.running import runner

    calls: list[str] = []

    class FakeRay:
        up = False

        def is_initialized(self) -> bool:
            return self.up

        def init(self, **kw: object) -> None:
            calls.append(f"init {kw['address']}")
            self.up = True

        def shutdown(self) -> None:
            calls.append("shutdown")
            self.up = False

    fake = FakeRay()
    monkeypatch.setattr(runner, "_ray", lambda: fake)
    with runner.ray_session("ray://head:10001"):
        for _ in range(3):  # three categories
            with runner.ray_session("ray://head:10001"):
                calls.append("cells")
    assert calls == ["init ray://head:10001", "cells", "cells", "cells", "shutdown"]
