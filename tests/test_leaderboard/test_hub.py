"""`bench push` and `bench leaderboard hf:...`: results that travel, against the local Hub.

The Hub clients read ``HF_ENDPOINT`` at import, so every command runs in a subprocess (as
`cadsd push`'s round trip does) against ``tests/hub_server.py`` on 127.0.0.1. The runs are made
once per module by the runner with the harness's dummy method (seconds).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from fixtures import COUNTS, DUMMY, EXPLODING, load, options, write_layout
from hub_server import HubServer

from leaderboard.hub.push import MANIFEST, build, model_repo_id, push_run
from leaderboard.records import RECORDS_DIR, read_record
from leaderboard.reporting.public import public_json, public_text
from leaderboard.reporting.report import write_outputs
from leaderboard.running import runner
from leaderboard.running.predict import score_images

TOKEN = "hf_benchPushToken_0a1b2c3d4e5f"  # distinctive: must never show up anywhere
REPO_ROOT = Path(__file__).parents[2]


class _Quiet:
    def __getattr__(self, name: str):
        return lambda *a, **k: None


def _run(base: Path, data_seed: int, seeds: list[int], methods: list[str]) -> Path:
    data = load(write_layout(base, counts=COUNTS, size=40, masks=True, seed=data_seed),
                kind="synthetic")
    opts = options(base / "run", methods, seeds=seeds, save_models=True)
    runner.run(data, opts, _Quiet())
    write_outputs(base / "run")
    return base / "run"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """a: dummy seeds 0-1 + a failing method (a traceback full of paths); b: the same data,
    another "lab" (its records say another host); c: other data (another fingerprint)."""
    tmp = tmp_path_factory.mktemp("hubruns")
    out = {"a": _run(tmp / "a", 0, [0, 1], [DUMMY, EXPLODING]), "b": tmp / "b" / "run",
           "c": _run(tmp / "c", 5, [0], [DUMMY])}
    # Lab b measured the same data on its own machine (the dummy method is deterministic, so
    # a's record with b's host is what b's run writes).
    cell = "cadsd__dummy__seed0.json"
    data = json.loads((out["a"] / RECORDS_DIR / cell).read_text())
    data["environment"]["host"] = "lab-b-node"
    (out["b"] / RECORDS_DIR).mkdir(parents=True)
    (out["b"] / RECORDS_DIR / cell).write_text(json.dumps(data, indent=1) + "\n")
    write_outputs(out["b"])
    return out


def _env(hub: HubServer, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HOME=str(tmp / "hf"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_TOKEN=TOKEN,
               PYTHONPATH=os.pathsep.join(map(str, (Path(__file__).parents[1], REPO_ROOT))))
    return env


def _bench(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "leaderboard.cli", *args], env=env,
                         capture_output=True, text=True, timeout=180, check=False)
    assert TOKEN not in run.stdout + run.stderr and "Traceback" not in run.stderr, run.stderr
    return run


def _local_strings(tmp: Path) -> list[str]:
    """Absolute paths of this machine that must not leave it."""
    return [str(tmp), str(REPO_ROOT), str(Path.home()), str(Path(sys.executable).parent)]


def _leaks(files: dict[str, bytes], local: list[str]) -> list[str]:
    """Files that hold the token or a local absolute path (the parquet table read as cells)."""
    found = []
    for name, data in files.items():
        if name.endswith(".parquet"):
            data = pd.read_parquet(io.BytesIO(data)).to_csv().encode()
        if TOKEN.encode() in data or any(s.encode() in data for s in local):
            found.append(name)
    return found


def test_dry_run_writes_the_repos_without_local_paths(runs, tmp_path):
    # The failed cell's record holds absolute paths (its traceback, the data folder) locally.
    failed = (runs["a"] / RECORDS_DIR / "cadsd__exploding__seed0.json").read_text()
    assert str(REPO_ROOT) in failed
    result = push_run(runs["a"], "lab-a/run1", models=True, dry_run=tmp_path / "dry")
    folder = tmp_path / "dry" / "datasets" / "lab-a" / "run1"
    files = {p.relative_to(folder).as_posix(): p.read_bytes()
             for p in folder.rglob("*") if p.is_file()}
    assert set(files) == set(result.repos[0].files) == {
        "README.md", MANIFEST, "results.parquet", "plots/roc.png", "plots/gallery.png",
        *(f"records/{p.name}" for p in (runs["a"] / RECORDS_DIR).glob("*.json"))}
    assert _leaks(files, _local_strings(runs["a"].parent)) == []
    # Records as written, but each absolute path cut to its last component.
    clean = "records/cadsd__dummy__seed0.json"
    for path in (runs["a"] / RECORDS_DIR).glob("*.json"):
        mine = json.loads(path.read_text())
        theirs = json.loads(files[f"records/{path.name}"])
        assert theirs == public_json(mine) and theirs["scores"] == mine["scores"]
    pushed = json.loads(files["records/cadsd__exploding__seed0.json"])
    assert pushed["traceback"] == public_text(json.loads(failed)["traceback"])
    assert pushed["dataset"]["source"] == "…/cadsd"
    # The parquet table is results.csv's rows without per-image scores.
    table = pd.read_parquet(io.BytesIO(files["results.parquet"]))
    local_csv = pd.read_csv(runs["a"] / "results.csv")
    assert list(table.columns) == list(local_csv.columns) and len(table) == 4
    assert not any(c.startswith("scores") for c in table.columns)
    # README: a dataset card header, then the run's leaderboard as `bench leaderboard` renders it.
    readme = files["README.md"].decode()
    meta = yaml.safe_load(readme.split("---\n")[1])
    assert meta["configs"][0]["data_files"][0]["path"] == "results.parquet"
    facts = meta["cadsd_bench"]
    assert facts["datasets"][0]["fingerprint"] == read_record(runs["a"] / clean).dataset.fingerprint
    assert facts["git_sha"] and facts["versions"]["torch"] and facts["machines"]
    board = (runs["a"] / "leaderboard.md").read_text()
    assert board.rstrip() in readme
    # One model repo per saved model; model-index holds the record's AUROC per type.
    models = {r.repo_id: r for r in result.repos[1:]}
    record = read_record(runs["a"] / clean)
    card = models[model_repo_id("lab-a/run1", record)].files["README.md"].decode()
    index = yaml.safe_load(card.split("---\n")[1])["model-index"][0]["results"][0]
    assert index["dataset"]["args"]["fingerprint"] == record.dataset.fingerprint
    metrics = {m["name"]: m["value"] for m in index["metrics"]}
    assert metrics["Image AUROC % (all)"] == round(100 * record.metrics.image_auroc.all.auroc, 2)
    assert metrics["Image AUROC % (lacking)"] == round(
        100 * record.metrics.image_auroc.category["lacking"].auroc, 2)
    assert len(models) == 2 and "--" not in "".join(models)
    # A dry run never overwrites a folder with content.
    with pytest.raises(Exception, match="not empty"):
        push_run(runs["a"], "lab-a/run1", dry_run=tmp_path / "dry")


def test_parquet_keeps_a_column_of_mixed_types(runs):
    from leaderboard.hub.push import _parquet

    records = [read_record(p) for p in sorted((runs["a"] / RECORDS_DIR).glob("*dummy*.json"))]
    records[0].method.params["mode"], records[1].method.params["mode"] = 3, "x"
    table = pd.read_parquet(io.BytesIO(_parquet(records)))
    assert table["method.params.mode"].tolist() == ["3", '"x"'] and len(table) == 2


def test_push_refuses_a_run_with_a_bad_record(runs, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(runs["b"], copy)
    path = next((copy / RECORDS_DIR).glob("*.json"))
    data = json.loads(path.read_text())
    normal = next(x for x in data["scores"] if x["label"] == 0)
    normal["score"] = max(x["score"] for x in data["scores"]) + 1.0  # AUROC no longer follows
    path.write_text(json.dumps(data))
    with pytest.raises(Exception, match=re.escape(path.name) + ".*edited or truncated"):
        build(copy, "lab-b/run")
    with pytest.raises(Exception, match="ORG/NAME"):
        build(runs["b"], "no-slash")


def test_push_pull_repush_and_merge_through_a_local_hub(runs, tmp_path):
    local = _local_strings(runs["a"].parent)
    with HubServer(token=TOKEN) as hub:
        env = _env(hub, tmp_path)
        push = _bench(env, "push", str(runs["a"]), "--repo-id", "lab-a/run1", "--models")
        assert push.returncode == 0, push.stderr
        assert ("dataset", "lab-a/run1") in hub.repos and hub.auth_headers == {f"Bearer {TOKEN}"}
        uploaded = {f"{kind}:{rid}/{p}": data for (kind, rid) in hub.repos
                    for p, data in hub.repo_files(kind, rid).items()}
        assert len([k for k in hub.repos if k[0] == "model"]) == 2
        assert _leaks(uploaded, local) == []

        # A pushed model scores as the local file does.
        image = min((runs["a"].parent / "cadsd" / "test").rglob("*.jpg"))
        local_model = runs["a"] / "models" / "cadsd__dummy__seed0.safetensors"
        pushed = _bench(env, "predict", "--model", "hf:lab-a/run1-cadsd-dummy-seed0",
                        "--method", DUMMY, str(image), "--json")
        assert pushed.returncode == 0, pushed.stderr
        local = score_images(local_model, [image], trusted=[DUMMY])[0]["score"]
        assert json.loads(pushed.stdout)["score"] == local

        # Pulled back, the run renders its local leaderboard, rows marked with their source.
        pulled = _bench(env, "leaderboard", "hf:lab-a/run1", "--out", str(tmp_path / "pa"))
        assert pulled.returncode == 0, pulled.stderr
        mine = (runs["a"] / "leaderboard.md").read_text()
        theirs = (tmp_path / "pa" / "leaderboard.md").read_text()
        assert theirs != mine and theirs.replace(" · hf:lab-a/run1", "") == mine
        assert (tmp_path / "pa" / "plots" / "roc.png").read_bytes() == (
            runs["a"] / "plots" / "roc.png").read_bytes()

        # Re-pushing the same run changes nothing; someone else's file survives a re-push, and
        # a record the run no longer has is removed (it was ours).
        head = hub.repos[("dataset", "lab-a/run1")].head
        again = _bench(env, "push", str(runs["a"]), "--repo-id", "lab-a/run1", "--models")
        assert again.returncode == 0 and again.stderr.count("unchanged") == 3, again.stderr
        assert hub.repos[("dataset", "lab-a/run1")].head == head
        hub.put("dataset", "lab-a/run1", {"NOTES.md": b"hand-written notes\n"})
        gone = runs["a"] / RECORDS_DIR / "cadsd__dummy__seed1.json"
        kept = gone.read_bytes()
        gone.unlink()
        try:
            third = _bench(env, "push", str(runs["a"]), "--repo-id", "lab-a/run1", "--models")
        finally:
            gone.write_bytes(kept)
        assert third.returncode == 0, third.stderr
        files = hub.repo_files("dataset", "lab-a/run1")
        assert "NOTES.md" in files and "records/cadsd__dummy__seed1.json" not in files
        assert "records/cadsd__dummy__seed0.json" in files

        # Two labs on the same data share one table; a run on other data (here a local folder,
        # labelled without its absolute path) gets its own section.
        assert _bench(env, "push", str(runs["b"]), "--repo-id", "lab-b/run").returncode == 0
        merged = _bench(env, "leaderboard", "hf:lab-a/run1", "hf:lab-b/run", str(runs["c"]),
                        "--out", str(tmp_path / "m"))
        assert merged.returncode == 0, merged.stderr
        text = (tmp_path / "m" / "leaderboard.md").read_text()
        sections = text.split("## Data ")[1:]
        assert len(sections) == 2 and "different datasets" in text
        first, other = sorted(sections, key=lambda sec: "hf:lab-a/run1" not in sec)
        table2 = first.split("Table 2")[1].split("Table 3")[0]
        assert "dummy · hf:lab-a/run1" in table2 and "dummy · hf:lab-b/run" in table2
        assert "2 machines" in first and "(machine 2)" in first and "…/run" not in first
        assert "dummy · …/run (" in other and "hf:lab-" not in other
        assert str(runs["c"]) not in text
        csv = pd.read_csv(tmp_path / "m" / "results.csv")
        assert set(csv["source"]) == {"hf:lab-a/run1", "hf:lab-b/run", "…/run"}

        # A tampered record and a newer schema are refused by name; the rest still renders.
        rec = json.loads(hub.repo_files("dataset", "lab-b/run")["records/cadsd__dummy__seed0.json"])
        normal = next(x for x in rec["scores"] if x["label"] == 0)
        normal["score"] = max(x["score"] for x in rec["scores"]) + 1.0  # now the most anomalous
        newer = {**rec, "schema_version": 99}
        hub.put("dataset", "lab-b/run", {"records/cadsd__dummy__seed0.json": json.dumps(rec).encode(),
                                         "records/cadsd__dummy__seed9.json": json.dumps(newer).encode()})
        bad = _bench(env, "leaderboard", "hf:lab-b/run", "--out", str(tmp_path / "bad"))
        said = " ".join(bad.stderr.split())
        assert bad.returncode == 1
        assert "hf:lab-b/run/records/cadsd__dummy__seed0.json" in said and "edited" in said
        assert "hf:lab-b/run/records/cadsd__dummy__seed9.json" in said and "upgrade" in said
        assert "Records left out" in (tmp_path / "bad" / "leaderboard.md").read_text()

        # A repo that is not there, one that is not a pushed run, and a missing model: named.
        gone = _bench(env, "leaderboard", "hf:lab-x/none", "--out", str(tmp_path / "g"))
        assert gone.returncode == 1 and "cannot read hf:lab-x/none" in " ".join(gone.stderr.split())
        hub.create("dataset", "lab-c/notes", private=False)
        hub.put("dataset", "lab-c/notes", {"NOTES.md": b"no records here\n"})
        notes = _bench(env, "leaderboard", "hf:lab-c/notes", "--out", str(tmp_path / "n"))
        assert notes.returncode == 1 and "holds no records/ folder" in notes.stderr
        nomodel = _bench(env, "predict", "--model", "hf:lab-x/no-model", str(image))
        assert nomodel.returncode == 1
        assert "cannot download hf:lab-x/no-model" in " ".join(nomodel.stderr.split())
        assert hub.unknown == [] and hub.errors == []


def test_leaderboard_command_mistakes_exit_2(runs, tmp_path, capsys):
    from cli_helpers import run_bench

    code, text = run_bench(capsys, "leaderboard", str(runs["a"]), str(runs["b"]))
    assert code == 2 and "--out" in text
    code, text = run_bench(capsys, "leaderboard", str(runs["a"]), str(runs["b"]), "--out",
                           str(runs["a"]))
    assert code == 2 and "one of the runs" in text
    code, text = run_bench(capsys, "leaderboard", str(runs["a"]), str(runs["a"]), "--out",
                           str(tmp_path / "x"))
    assert code == 2 and "twice" in text
    code, text = run_bench(capsys, "leaderboard", str(tmp_path / "nowhere"), "--out",
                           str(tmp_path / "y"))
    assert code == 1 and "run folder not found" in text


def test_sections_put_the_real_cadsd_first_and_say_what_each_data_is(runs):
    import dataclasses

    from leaderboard.reporting.sections import data_label
    from leaderboard.reporting.sections import dataset_sections as by_fingerprint

    synthetic = read_record(runs["c"] / RECORDS_DIR / "cadsd__dummy__seed0.json")
    paper = {"train/good": 400, "test/good": 210, "test/scratch": 41, "test/paint": 41,
             "test/over_coupling": 44, "test/lacking": 40}
    real = dataclasses.replace(synthetic, dataset=dataclasses.replace(
        synthetic.dataset, kind="cadsd", real_cadsd=True, synthetic=False, fingerprint="f" * 64,
        counts=paper))
    sections = by_fingerprint([synthetic, real])
    assert list(sections) == ["f" * 64, synthetic.dataset.fingerprint]
    assert data_label([real]).startswith("CAD-SD, the real dataset") and "paper's" in data_label([real])
    assert data_label([synthetic]).startswith("SYNTHETIC")


def test_a_pushed_model_file_holds_no_local_path(tmp_path):
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from leaderboard.hub.push import _public_model

    path = tmp_path / "m.safetensors"
    tensors = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(5, dtype=torch.int64)}
    save_file(tensors, str(path), metadata={"config": json.dumps({"weights": str(tmp_path / "w.pt")}),
                                            "class": "x:Y"})
    out = tmp_path / "public.safetensors"
    out.write_bytes(_public_model(path.read_bytes()))
    assert str(tmp_path).encode() not in out.read_bytes()
    with safe_open(str(out), framework="pt") as f:
        assert json.loads(f.metadata()["config"]) == {"weights": "…/w.pt"}
        assert all(torch.equal(f.get_tensor(k), v) for k, v in tensors.items())
    clean = tmp_path / "clean.safetensors"
    save_file(tensors, str(clean), metadata={"class": "x:Y"})
    assert _public_model(clean.read_bytes()) == clean.read_bytes()


BAD_REPO_IDS = ["lab/run.git", "lab/run.ipynb", "lab/-run", "lab/run-", "lab/.run", "lab/run.",
                "lab/r--un", "lab/r..un", "lab/" + "r" * 97, "lab/rün", "lab/r un", "run",
                "a/b/c", "-lab/run", "lab/"]


@pytest.mark.parametrize("repo_id", BAD_REPO_IDS)
def test_push_refuses_repo_ids_the_hub_refuses(runs, tmp_path, capsys, repo_id):
    from cli_helpers import run_bench

    code, text = run_bench(capsys, "push", str(runs["c"]), "--repo-id", repo_id,
                           "--dry-run", str(tmp_path / "dry"))
    assert code == 2 and "--repo-id" in text and not (tmp_path / "dry").exists()


def test_push_accepts_the_longest_valid_repo_id(runs, tmp_path):
    from leaderboard.hub.push import check_repo_id

    for good in ("lab-a/run1", "Lab_a/run.v2", "org/" + "r" * 96, "my-lab/cadsd-run1"):
        assert check_repo_id(good) == good


def test_model_repos_of_long_names_stay_distinct_and_valid(runs):
    from leaderboard.hub.push import check_repo_id

    long_id = "lab-a/" + "r" * 90  # cutting to 96 characters used to drop the seed
    repos, _ = build(runs["a"], long_id, models=True)
    models = [r.repo_id for r in repos[1:]]
    assert len(models) == len(set(models)) == 2
    assert all(check_repo_id(m) == m and len(m.split("/")[1]) <= 96 for m in models)
    short = [r.repo_id for r in build(runs["a"], "lab-a/run1", models=True)[0][1:]]
    assert sorted(short) == ["lab-a/run1-cadsd-dummy-seed0", "lab-a/run1-cadsd-dummy-seed1"]


def test_two_cells_on_one_model_repo_are_refused_before_writing(runs, tmp_path, capsys,
                                                                monkeypatch):
    from cli_helpers import run_bench

    monkeypatch.setattr("leaderboard.hub.push.model_repo_id", lambda repo_id, record: "lab/x")
    code, text = run_bench(capsys, "push", str(runs["a"]), "--repo-id", "lab/run", "--models",
                           "--dry-run", str(tmp_path / "dry"))
    assert code == 2 and "lab/x" in text and not (tmp_path / "dry").exists()
