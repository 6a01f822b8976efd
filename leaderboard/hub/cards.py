"""The cards of a published run: the results dataset's README (the run's leaderboard under a
dataset-card header) and each fitted model's model card, whose ``model-index`` the Hub renders
as evaluation results (image AUROC overall and per anomaly type, on the benchmark's data).

Pure functions of (public) records: no path, host-local file or token goes into a card.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from leaderboard.records.schema import Record

TAGS = ("cadsd-bench", "anomaly-detection", "benchmark-results", "leaderboard",
        "industrial-inspection")
RESULTS_TABLE = "results.parquet"
TASK = "anomaly-detection"


def _uniq(values: Sequence[Any]) -> list[Any]:
    return [v for v in dict.fromkeys(values) if v is not None]


def dataset_facts(records: Sequence[Record]) -> list[dict[str, Any]]:
    """One entry per dataset fingerprint of the run: what the data was (name, kind, the real
    CAD-SD or not, benchmark and category) and its counts' total."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        d = r.dataset
        out.setdefault(d.fingerprint, {
            "name": d.name, "kind": d.kind, "fingerprint": d.fingerprint,
            "real_cadsd": d.real_cadsd, "synthetic": d.synthetic, "benchmark": d.benchmark,
            "category": d.category, "images": sum(d.counts.values())})
    return list(out.values())


def run_facts(records: Sequence[Record]) -> dict[str, Any]:
    """The ``cadsd_bench`` block of the results card: which data (fingerprints), methods,
    backbones, budgets, machines, library versions and code produced the records."""
    envs = [r.environment for r in records]
    return {
        "schema_version": records[0].schema_version if records else None,
        "records": len(records),
        "datasets": dataset_facts(records),
        "methods": _uniq([r.row_key() for r in records]),
        "backbones": _uniq([r.backbone.name for r in records]),
        "budgets": _uniq([r.method.budget for r in records]),
        "machines": _uniq([e.machine_key() for e in envs]),
        "versions": envs[0].versions if envs else {},
        "git_sha": _uniq([e.git_sha for e in envs]),
    }


def results_card(records: Sequence[Record], leaderboard: str, repo_id: str,
                 license: str | None = None, models: Sequence[str] = ()) -> str:
    """README.md of the results dataset: YAML (tags, the parquet table as the default config,
    the run's facts), the leaderboard, then how to use the repository."""
    from huggingface_hub import DatasetCardData

    facts = run_facts(records)
    names = ", ".join(d["name"] for d in facts["datasets"])
    data = DatasetCardData(
        license=license, pretty_name=f"cadsd-bench results: {names}", tags=list(TAGS),
        configs=[{"config_name": "default",
                  "data_files": [{"split": "train", "path": RESULTS_TABLE}]}],
        cadsd_bench=facts,
    )
    about = [
        "", "## This repository", "",
        (f"Published with `bench push` (cadsd-bench). `records/` holds every result record as "
         f"`bench run` wrote it (per-image scores included; absolute local paths cut to their "
         f"last component), `{RESULTS_TABLE}` one row per cell without the per-image scores "
         f"(`results.csv`'s columns; `load_dataset(\"{repo_id}\")` reads it), `plots/` the "
         "run's figures."), "",
        (f"Re-render or merge with other runs: `bench leaderboard hf:{repo_id} "
         "[hf:OTHER/RUN ...] --out DIR`. Runs merge into one table only when their dataset "
         "fingerprints agree."),
    ]
    if models:
        about += ["", "Fitted models (`bench predict --model hf:REPO IMAGE`): "
                  + ", ".join(f"[{m}](https://huggingface.co/{m})" for m in models) + "."]
    return f"---\n{data.to_yaml()}\n---\n{leaderboard.rstrip()}\n" + "\n".join(about) + "\n"


def _dataset_type(record: Record, dataset_repo_id: str | None) -> str:
    """The dataset's Hub id when known (``--dataset hf:ORG/NAME`` or ``--dataset-repo-id``),
    else its name (a local folder has no Hub id)."""
    source = record.dataset.source
    if source.startswith("hf:"):
        return source.removeprefix("hf:")
    return dataset_repo_id or record.dataset.name


def eval_results(record: Record, results_repo: str, dataset_repo_id: str | None = None
                 ) -> list[Any]:
    """``model-index`` entries: image AUROC (%) of all test images and of each anomaly type
    (normal vs that type), then what the model catches on all test images (TPR at FPR 1% and
    5% with the threshold on the test normals, F1-max, AUPR), on the test split of the
    record's data, with its fingerprint; the source is the published run (``results_repo``)."""
    from huggingface_hub import EvalResult

    from leaderboard.reporting.comparisons import Draws, operating

    m = record.metrics.image_auroc
    common = {"task_type": TASK, "task_name": "Image anomaly detection",
              "dataset_type": _dataset_type(record, dataset_repo_id),
              "dataset_name": record.dataset.name, "dataset_split": "test",
              "dataset_args": {"fingerprint": record.dataset.fingerprint},
              "metric_type": "roc_auc", "source_name": f"cadsd-bench run {results_repo}",
              "source_url": f"https://huggingface.co/datasets/{results_repo}"}
    entries = [("all", m.all), *m.category.items()]
    out = [EvalResult(metric_name=f"Image AUROC % ({name})",
                      metric_value=round(100 * e.auroc, 2), **common) for name, e in entries]
    caught = operating(record, Draws()).all
    points = [(f"TPR % at FPR {100 * t.max_fpr:g}% (all)", "recall", t.tpr)
              for t in caught.tpr_at_fpr]
    points += [("F1-max % (all)", "f1", caught.f1_max.value),
               ("AUPR % (all)", "average_precision", caught.aupr.value)]
    common.pop("metric_type")
    out += [EvalResult(metric_name=name, metric_type=kind, metric_value=round(100 * v, 2),
                       **common) for name, kind, v in points]
    return out


def model_card(record: Record, repo_id: str, results_repo: str,
               dataset_repo_id: str | None = None, license: str | None = None) -> str:
    """README.md of a fitted model: ``model-index`` with its image AUROC, what it is, how it
    was fitted and how to use it."""
    from huggingface_hub import ModelCardData

    meth, d, env = record.method, record.dataset, record.environment
    name = record.row_key()
    dataset_type = _dataset_type(record, dataset_repo_id)
    data = ModelCardData(
        model_name=f"{name} on {d.name} (seed {record.seed})", library_name="cadsd-bench",
        license=license, tags=[*TAGS[:2], meth.name, "safetensors"],
        datasets=[dataset_type] if "/" in dataset_type else None,
        eval_results=eval_results(record, results_repo, dataset_repo_id),
    )
    m = record.metrics.image_auroc
    rows = [("all", m.all), *m.category.items()]
    table = ["| test images | image AUROC % [95% CI] | normal / anomalous |", "|---|---|---|",
             *(f"| {k} | {100 * e.auroc:.1f} [{100 * e.ci.low:.1f}, {100 * e.ci.high:.1f}] | "
               f"{e.n_normal} / {e.n_anomaly} |" for k, e in rows)]
    origin = {"project": "cadsd-bench's own method", "builtin": "built into cadsd-bench"}.get(
        meth.origin, f"an outside method, {meth.origin} `{meth.target}`")
    body = [
        f"# {name} on {d.name}", "",
        f"{meth.description or meth.target}.", "",
        f"Origin: {origin}" + (f"; paper: {meth.paper}" if meth.paper else "") + ".", "",
        (f"Fitted by `bench run --save-models` on the training images of **{d.name}** "
         f"(`{d.kind}`, fingerprint `{d.fingerprint}`), seed {record.seed}, backbone "
         f"{record.backbone.name or 'none'}, budget {meth.budget or 'none'}; cadsd-bench git "
         f"`{env.git_sha}` on {env.device} ({env.device_name})."), "",
        *table, "",
        "Use it (scores: higher = more anomalous):", "",
        "```", f"bench predict --model hf:{repo_id} IMAGE.png", "```", "",
        (f"The whole run, with the other methods: [{results_repo}]"
         f"(https://huggingface.co/datasets/{results_repo})."), "",
        "Settings (`Detector.get_params()`):", "", "```json",
        json.dumps(meth.params, indent=1, sort_keys=True, default=str), "```",
    ]
    return f"---\n{data.to_yaml()}\n---\n" + "\n".join(body) + "\n"
