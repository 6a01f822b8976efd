"""`cadsd card` and `cadsd push`: the card's content, the dry run, and a real round trip.

The round trip runs the real huggingface_hub / datasets clients in subprocesses (they read
``HF_ENDPOINT`` at import) against ``tests/hub_server.py`` on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cli_helpers import run_cli
from hub_server import HubServer

from cadsd.errors import CadsdError
from cadsd.format import hf
from cadsd.publishing.card import BIBTEX, Provenance, card_for, measure
from cadsd.publishing.push import merge_card, push

TOKEN = "hf_cadsdTestToken_9f8e7d6c5b4a"  # distinctive: must never show up in any output
REPO = "cadsd-org/cad-sd-synthetic"


def _meta(text: str) -> dict:
    return yaml.safe_load(text.split("---\n")[1])


def _rows(dd) -> dict[str, list]:
    """Every row as comparable values; images and masks by the sha256 of their bytes."""
    out = {}
    for split, ds in dd.items():
        table = ds.with_format("arrow")[:].to_pylist()
        out[split] = [
            [
                r["file_name"],
                r["label"],
                r["category"],
                r["group"],
                hashlib.sha256(r["image"]["bytes"]).hexdigest(),
                hashlib.sha256(r["mask"]["bytes"]).hexdigest() if r.get("mask") else None,
            ]
            for r in table
        ]
    return out


def test_card_of_the_real_layout(make_layout, tmp_path):
    counts = {"train/good": 5, "test/good": 3, "test/scratch": 1, "test/paint": 2,
              "test/over_coupling": 1, "test/lacking": 4}  # fmt: skip
    root = make_layout(tmp_path, counts=counts)
    text = str(card_for(root, repo_id="me/cad-sd"))
    meta = _meta(text)
    assert meta["license"] == "unknown"
    assert meta["task_categories"] == ["image-classification"]
    assert {"anomaly-detection", "industrial-inspection", "co-occurrence"} <= set(meta["tags"])
    # Measured counts, with the paper's beside them.
    assert "| test | `4_lacking` | lacking | co_occurrence | 4 | 40 |" in text
    assert "| train | `0_good` | good | normal | 5 | 400 |" in text
    assert "Total: 16 images" in text and "test/co_occurrence: 5" in text
    assert "no licence" in text and BIBTEX in text and "700x700" in text
    assert 'load_dataset("me/cad-sd")' in text and "SYNTHETIC" not in text
    assert _meta(str(card_for(root, license="cc-by-4.0")))["license"] == "cc-by-4.0"


def test_card_of_a_synthetic_set_says_so(make_layout, tmp_path, monkeypatch):
    monkeypatch.setenv("CADSD_CACHE", str(tmp_path / "cache"))
    root = make_layout(tmp_path / "cache" / "synthetic", masks=True, name="seed7-small-64")
    text = str(card_for(root))
    # masks: synthetic; but `cadsd synth` did not write these files, whatever the folder's
    # name says, so no seed is claimed (issue 33)
    assert "This is a SYNTHETIC dataset, not the real CAD-SD" in text
    assert "seed 7" not in text and "seed not recorded" in text
    assert "image-segmentation" in _meta(text)["task_categories"]
    assert "synthetic" in _meta(text)["tags"] and "`mask`" in text
    assert "CAD-SD, the Co-occurrence" not in text  # never presented as the real dataset
    # Masks alone (outside the cache) also mark it synthetic, and a DatasetDict measures alike.
    other = make_layout(tmp_path / "elsewhere", masks=True)
    assert "seed not recorded" in str(card_for(other))
    assert measure(hf.build(other)).counts == measure(other).counts


def test_merge_keeps_the_data_yaml():
    from huggingface_hub import DatasetCard

    ours = DatasetCard("---\nlicense: unknown\ntags:\n- x\n---\n# body\n")
    pushed = DatasetCard(
        "---\ndataset_info:\n  splits:\n  - name: train\nconfigs:\n- config_name: default\n"
        "license: mit\n---\n"
    )
    merged = merge_card(ours, pushed)
    meta = merged.data.to_dict()
    assert meta["license"] == "unknown" and meta["tags"] == ["x"]  # ours win on card keys
    assert meta["dataset_info"] == {"splits": [{"name": "train"}]}  # theirs kept
    assert meta["configs"] == [{"config_name": "default"}]
    assert merged.text == ours.text


def test_push_needs_a_token(make_layout, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no stored login
    root = make_layout(tmp_path)
    with pytest.raises(CadsdError, match="--token"):
        push("me/x", source=str(root))
    with pytest.raises(CadsdError, match="ORG/NAME"):
        push("not-a-repo", source=str(root), token=TOKEN)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    """A small synthetic set in a private cache (generated once for the module)."""
    from cadsd.synth import ensure_synthetic

    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("CADSD_CACHE")
    os.environ["CADSD_CACHE"] = str(cache)
    try:
        return ensure_synthetic(seed=3, counts="small", size=64, progress=False)
    finally:
        if old is None:
            del os.environ["CADSD_CACHE"]
        else:
            os.environ["CADSD_CACHE"] = old


def _client_env(hub: HubServer, tmp_path: Path, cache: Path, token: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(
        HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HOME=str(tmp_path / "hf"),
        HF_DATASETS_CACHE=str(tmp_path / "ds"), HF_HUB_DISABLE_TELEMETRY="1",
        CADSD_CACHE=str(cache),
        PYTHONPATH=os.pathsep.join(str(p) for p in (Path(__file__).parent, Path(__file__).parents[1])),
    )  # fmt: skip
    if token:
        env["HF_TOKEN"] = token
    return env


_LOAD = """
import json, datasets
from test_push import _rows
from cadsd.getting.download import download
dd = datasets.load_dataset({repo!r})
small = {{"train/good": 12, "test/good": 6, "scratch": 3, "paint": 3, "over_coupling": 3,
          "lacking": 3}}
result = download("hf:{repo}", {back!r}, expect=small)
print(json.dumps({{"rows": _rows(dd), "valid": result.ok}}))
"""


def test_push_round_trip_through_a_local_hub(synth_root, tmp_path):
    cache = synth_root.parent.parent
    with HubServer(token=TOKEN) as hub:
        env = _client_env(hub, tmp_path, cache, token=None)
        args = ["push", "--repo-id", REPO, "--source", "synthetic", "--seed", "3",
                "--counts", "small", "--size", "64", "--private", "--token", TOKEN]  # fmt: skip
        run = subprocess.run(
            [sys.executable, "-m", "cadsd.cli", *args], env=env, capture_output=True,
            text=True, timeout=120, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        assert TOKEN not in run.stdout + run.stderr
        assert hub.unknown == [] and hub.errors == []
        assert hub.auth_headers == {f"Bearer {TOKEN}"}
        assert hub.repos[("dataset", REPO)].private

        # One client process: load_dataset, then `cadsd download --source hf:` (the folder back).
        back = tmp_path / "back"
        load = subprocess.run(
            [sys.executable, "-c", _LOAD.format(repo=REPO, back=str(back))],
            env={**env, "HF_TOKEN": TOKEN}, capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip
        assert load.returncode == 0, load.stderr[-3000:]
        files = hub.repo_files("dataset", REPO)

    # every image and mask comes back; the synth marker is folder metadata, not Hub data
    originals = {p.relative_to(synth_root) for p in synth_root.rglob("*") if p.is_file()}
    originals.discard(Path("cadsd-synth.json"))
    copies = {p.relative_to(back) for p in back.rglob("*") if p.is_file()}
    assert copies - originals == {Path("cadsd-manifest.json")} and originals <= copies
    assert all((back / p).read_bytes() == (synth_root / p).read_bytes() for p in originals)
    # load_dataset returns the very rows of the local set, image and mask bytes included.
    loaded = json.loads(load.stdout.strip().splitlines()[-1])
    assert loaded["rows"] == _rows(hf.build(synth_root)) and loaded["valid"]
    readme = files["README.md"].decode()
    meta = _meta(readme)
    assert {"dataset_info", "configs", "license", "tags", "task_categories"} <= set(meta)
    assert meta["configs"][0]["data_files"] == [
        {"split": "train", "path": "data/train-*"},
        {"split": "test", "path": "data/test-*"},
    ]
    assert "SYNTHETIC" in readme and "seed 3" in readme
    assert "| test | `3_over-coupling` | over_coupling | co_occurrence | 3 |" in readme

    # --dry-run writes exactly the folder that was uploaded (and uploads nothing).
    dry = tmp_path / "dry"
    os.environ["CADSD_CACHE"] = str(cache)
    try:
        result = push(REPO, source="synthetic", seed=3, counts="small", size=64, dry_run=dry)
    finally:
        del os.environ["CADSD_CACHE"]
    written = {p.relative_to(dry).as_posix(): p.read_bytes() for p in dry.rglob("*") if p.is_file()}
    assert sorted(written) == sorted(result.files) == sorted(set(files) - {".gitattributes"})
    assert written == {k: v for k, v in files.items() if k != ".gitattributes"}


def test_push_reads_the_token_from_the_environment(make_layout, tmp_path):
    root = make_layout(tmp_path / "data")
    with HubServer(token=TOKEN) as hub:
        env = _client_env(hub, tmp_path, tmp_path / "cache", token=TOKEN)
        run = subprocess.run(
            [sys.executable, "-m", "cadsd.cli", "push", "--repo-id", "me/real", "--source",
             str(root), "--license", "mit"],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        assert TOKEN not in run.stdout + run.stderr
        assert hub.auth_headers == {f"Bearer {TOKEN}"}
        readme = hub.repo_files("dataset", "me/real")["README.md"].decode()
        # A wrong token: one clear line, exit 1, and the token is not echoed back.
        bad = "hf_WrongToken_123456789"
        run = subprocess.run(
            [sys.executable, "-m", "cadsd.cli", "push", "--repo-id", "me/other", "--source",
             str(root), "--token", bad],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert _meta(readme)["license"] == "mit" and "CAD-SD, the Co-occurrence" in readme
    assert run.returncode == 1 and "push to me/other failed" in run.stderr
    assert bad not in run.stdout + run.stderr and "Traceback" not in run.stderr
    assert ("dataset", "me/other") not in hub.repos


def test_card_cli_writes_the_file(make_layout, tmp_path, capsys):
    root = make_layout(tmp_path)
    code, _ = run_cli(["card", str(root), "--out", str(tmp_path / "README.md"), "--license",
                       "cc0-1.0"], capsys)
    assert code == 0
    assert _meta((tmp_path / "README.md").read_text())["license"] == "cc0-1.0"
    assert Provenance().kind == "cadsd"


@pytest.mark.parametrize("repo_id", ["org/cad-sd.git", "org/cad-sd.ipynb", "org/-x", "org/x-",
                                     "org/.x", "org/a--b", "org/a..b", "org/" + "x" * 97,
                                     "org/čad", "cad-sd", "a/b/c"])
def test_push_refuses_repo_ids_the_hub_refuses(make_layout, tmp_path, capsys, repo_id):
    root = make_layout(tmp_path)
    code, text = run_cli(["push", "--repo-id", repo_id, "--source", str(root), "--dry-run",
                          str(tmp_path / "dry")], capsys)
    assert code == 1 and "--repo-id" in text and not (tmp_path / "dry").exists()


def test_one_repo_id_rule_for_both_tools() -> None:
    from cadsd.publishing.repo_id import repo_id_problem
    from leaderboard.hub import push as bench_push

    assert repo_id_problem("org/cad-sd") is None and repo_id_problem("org/" + "x" * 96) is None
    assert "'.git'" in repo_id_problem("org/cad-sd.git")
    assert bench_push.repo_id_problem is repo_id_problem
