"""Methods from outside the repository, as their authors bring them: by import path from
PYTHONPATH, through an installed package's entry point (the template package, really installed),
and the document that explains both, whose example a test executes. Each gets a built-in's
treatment (``--param``, seeds, records, rows) with its provenance, and each mistake exits 2
before the run folder exists."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import run_bench

from leaderboard.records import load_records

REPO = Path(__file__).parents[2]
DOC = REPO / "docs" / "adding-a-method.md"
TEMPLATE = REPO / "examples" / "plugin"
TEMPLATE_METHOD = TEMPLATE / "src" / "cadsd_example_plugin" / "detector.py"
BIN = Path(sys.executable).parent


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


@pytest.fixture
def outside_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The document's example method saved as ``my_detectors.py`` in a folder on the path."""
    folder = tmp_path / "mine"
    folder.mkdir()
    path = folder / "my_detectors.py"
    path.write_text(_blocks()[0])
    monkeypatch.syspath_prepend(str(folder))
    yield path
    sys.modules.pop("my_detectors", None)


def test_the_document_shows_the_template_method_and_its_test_runs(outside_module: Path) -> None:
    import my_detectors

    method, test = _blocks()[:2]
    assert method == TEMPLATE_METHOD.read_text()  # one method, shown and shipped
    namespace = dict(vars(my_detectors))  # the document's test, beside its method
    exec(compile(test, str(DOC), "exec"), namespace)  # noqa: S102 - the document's own code
    namespace["test_patch_distance_keeps_the_contract"]()


@pytest.mark.slow
def test_an_outside_method_runs_beside_patchcore(capsys: pytest.CaptureFixture, root: Path,
                                                 outside_module: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", "--methods", "patchcore,my_detectors:PatchDistance", "--dataset", str(root),
            "--backbone", "mobilenet_v2", "--seeds", "0,1", "--param", "PatchDistance.grid=8",
            "--param", "patch_distance.patch=2", "--out", str(out)]
    code, text = run_bench(capsys, *args)
    assert code == 0, text
    records = load_records(out)
    assert sorted(r.cell.id for r in records) == [
        "cadsd__patch_distance__seed0", "cadsd__patch_distance__seed1",
        "cadsd__patchcore__seed0", "cadsd__patchcore__seed1"]
    mine = [r for r in records if r.method.name == "patch_distance"]
    m = mine[0].method
    assert (m.origin, m.target, m.source_file) == ("import path", "my_detectors:PatchDistance",
                                                   "my_detectors.py")
    assert m.source_sha256 == hashlib.sha256(outside_module.read_bytes()).hexdigest()
    assert m.params == {"grid": 8, "patch": 2} and m.distribution is None
    assert records[0].method.origin == "builtin"
    md = (out / "leaderboard.md").read_text()
    assert "| patch_distance (outside method) | none |" in md and "| patchcore | mobilenet_v2 |" in md
    assert "`patch_distance` is an outside method (import path `my_detectors:PatchDistance`" in md
    assert str(outside_module.parent) not in (out / "records" / "cadsd__patch_distance__seed0.json").read_text()

    code, text = run_bench(capsys, *args)
    assert code == 0 and "skipped (finished earlier)" in text
    outside_module.write_text(outside_module.read_text() + "\n# edited\n")
    code, text = run_bench(capsys, *args)
    assert code == 1 and "another version of patch_distance's code" in text
    code, text = run_bench(capsys, *args, "--force")
    assert code == 0


def _fake_distribution(site: Path, name: str, version: str, entries: dict[str, str]) -> None:
    """An installed distribution as importlib.metadata finds it: a dist-info folder."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entries.items())
    (info / "entry_points.txt").write_text(f"[cadsd_bench.methods]\n{lines}\n")


def test_entry_points_are_listed_selected_and_refused_by_name(
        capsys: pytest.CaptureFixture, root: Path, outside_module: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    _fake_distribution(site, "acme_detectors", "1.2", {
        "acme": "my_detectors:PatchDistance", "broken": "harness_broken:Detector",
        "patchcore": "my_detectors:PatchDistance"})
    monkeypatch.syspath_prepend(str(site))
    code, text = run_bench(capsys, "list")
    assert code == 0
    assert "acme: distance to the nearest training patch" in text
    assert "(outside method: package acme_detectors 1.2)" in text
    assert "broken: harness_broken:Detector [refused:" in text and "ZeroDivisionError" in text
    assert "--methods all,NAME" in text

    out = tmp_path / "run"
    for method, message in (("broken", "entry point 'broken' of package acme_detectors 1.2"),
                            ("patchcore", "also a built-in method's name")):
        code, text = run_bench(capsys, "run", "--methods", method, "--dataset", str(root),
                               "--out", str(out))
        assert code == 2 and message in text and not out.exists()
    code, text = run_bench(capsys, "run", "--methods", "all", "--dataset", str(root), "--out",
                           str(out), "--budget", "nosuch")  # `all` never reads entry points
    assert code == 2 and "--budget 'nosuch'" in text and "acme" not in text
    code, text = run_bench(capsys, "run", "--methods", "acme", "--dataset", str(root), "--out",
                           str(out))
    assert code == 0, text
    [rec] = load_records(out)
    assert (rec.method.name, rec.method.origin) == ("acme", "entry point")
    assert (rec.method.distribution, rec.method.distribution_version) == ("acme_detectors", "1.2")


@pytest.mark.slow
def test_the_template_package_installs_and_its_method_runs(root: Path, tmp_path: Path) -> None:
    """pip-install examples/plugin (no network: no build isolation, no dependencies), then use it
    as its README says: `bench list`, `bench run --methods patch_distance`, its own tests."""
    source, site = tmp_path / "plugin", tmp_path / "site"
    shutil.copytree(TEMPLATE, source)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(site), str(source)], check=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    listed = subprocess.run([BIN / "bench", "list"], env=env, capture_output=True, text=True,
                            check=False)
    assert "patch_distance: " in listed.stdout
    assert "outside method: package cadsd-example-plugin 0.1.0" in listed.stdout
    out = tmp_path / "run"
    run = subprocess.run([BIN / "bench", "run", "--methods", "patch_distance", "--dataset",
                          str(root), "--out", str(out)], env=env, capture_output=True, text=True,
                         check=False)
    assert run.returncode == 0, run.stderr
    [rec] = load_records(out)
    assert rec.method.origin == "entry point" and rec.method.distribution_version == "0.1.0"
    assert rec.method.source_file == "cadsd_example_plugin/detector.py"
    own = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(source / "tests")], env=env, capture_output=True, text=True,
                         cwd=source, check=False)
    assert own.returncode == 0, own.stdout + own.stderr
