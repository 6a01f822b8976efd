"""Speed and memory benchmark of the memory-bank detectors (issue 3, item 7).

    python -m leaderboard.perf [--data DIR] [--backbones wide_resnet50_2,mobilenet_v2]
                               [--methods patchcore,sa_patchcore,padim] [--weights auto|none|imagenet]
                               [--threads 2] [--train N] [--test N] [--out FILE.json]

On the synthetic CAD-SD at paper counts (400 train / 376 test, 224 px) each (method, backbone)
cell runs in a fresh subprocess (so peak RSS is its own) and measures: the backbone forward
alone over the training images, fit split into extraction / coreset, batch-1 predict latency
(mean, median, p95) split into backbone / aggregation (attention) / search / map, throughput at
batch 32, peak RSS. The targets are ratios taken in the same run, each marked PASS or MISS. Each
ratio compares timings taken in turns, because this machine's speed drifts by more than the
margins between separate measurements: the bare forward of every training batch right before
fit gets it, the reference forward + search next to each predict, SA-PatchCore next to the
PatchCore its own cell fitted.
Timings taken while other processes load the machine are not results: the load is recorded and
a warning printed. ``--weights auto`` uses ImageNet weights where they load offline (the embedded
MobileNetV2) and random init otherwise (fine for timing, never for accuracy).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIT_BATCH = 8
THROUGHPUT_BATCH = 32
WARMUP = 3
PAIR_EVERY = 2  # every other test image also times the reference and the partner, interleaved

#: method -> the method its latency is compared with, image by image in the same process
PARTNERS = {"sa_patchcore": "patchcore", "sa_patchcore_eq4": "patchcore"}

#: the registered methods this script can time (frozen-backbone detectors, loaded by the registry)
METHODS = ("patchcore", "sa_patchcore", "sa_patchcore_eq4", "padim")


@dataclass(frozen=True)
class Target:
    """One PASS/MISS line: ``value(cells, backbone)`` compared with ``limit`` (lower is better)."""

    label: str
    methods: tuple[str, ...]  # the cells it reads (the first one names the row)
    value: Callable[[dict[str, dict[str, Any]]], float | None]
    limit: float
    backbones: tuple[str, ...] = ()  # empty: every backbone


def _get(cells: dict[str, dict[str, Any]], method: str, *keys: str) -> float | None:
    cell: Any = cells.get(method)
    for key in keys:
        if not isinstance(cell, dict) or key not in cell:
            return None
        cell = cell[key]
    return float(cell)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _targets() -> list[Target]:
    out: list[Target] = []
    for m in ("patchcore", "sa_patchcore"):
        out += [
            Target(f"{m}: coreset seconds", (m,), lambda c, m=m: _get(c, m, "fit", "coreset"), 10.0),
            Target(
                f"{m}: coreset share of fit", (m,),
                lambda c, m=m: _ratio(_get(c, m, "fit", "coreset"), _get(c, m, "fit", "wall")), 0.10,
            ),
            Target(
                f"{m}: fit / backbone forward", (m,),
                lambda c, m=m: _ratio(_get(c, m, "fit", "wall"), _get(c, m, "forward_train_s")), 1.3,
            ),
            Target(
                f"{m}: predict b1 / (forward + search)", (m,),
                lambda c, m=m: _get(c, m, "predict_over_reference"), 1.25, ("wide_resnet50_2",),
            ),
            Target(
                f"{m}: peak RSS GB during fit", (m,),
                lambda c, m=m: _get(c, m, "rss_fit_gb"), 4.0, ("wide_resnet50_2",),
            ),
        ]
    out.append(
        Target(
            "sa_patchcore / patchcore latency", ("sa_patchcore", "patchcore"),
            lambda c: _get(c, "sa_patchcore", "paired", "ratio"), 1.1, ("wide_resnet50_2",),
        )
    )
    out.append(  # issue 6: PaDiM at paper settings fits in 6 GB (the reference code: 16 GB)
        Target("padim: peak RSS GB during fit", ("padim",),
               lambda c: _get(c, "padim", "rss_fit_gb"), 6.0, ("wide_resnet50_2",))
    )
    return out


# -- one cell, in its own process ------------------------------------------------------------
def _peak_rss_gb() -> float:
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kb / 2**20


def _load(root: Path, split: str, limit: int | None) -> tuple[Any, list[str]]:
    import torch

    from baselines.preprocess import image_to_tensor
    from cadsd.layout import index

    samples = [s for s in index(root) if s.split == split][:limit]
    # uint8 keeps 776 decoded images at ~120 MB; batches are made float when used
    images = torch.stack([(image_to_tensor(s.path) * 255).round().to(torch.uint8) for s in samples])
    return images, [s.category for s in samples]


def _batches(images: Any, size: int) -> Iterator[Any]:
    for lo in range(0, len(images), size):
        yield images[lo : lo + size].float().div_(255)


def _timed_ms(fn: Callable[..., object], *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - start) * 1e3


def _summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"mean": statistics.fmean(times), "median": statistics.median(times),
            "p95": ordered[min(len(times) - 1, int(0.95 * len(times)))]}


def _reference(model: Any, first: Any) -> Callable[[Any], object] | None:
    """Backbone forward of an image + one exact search of ``first``'s patches (bank methods)."""
    import torch

    if not hasattr(model, "_searcher"):
        return None
    with torch.inference_mode():
        patches = model.embed(first).permute(0, 2, 3, 1).reshape(-1, model.memory_bank_.shape[1])

    def run(x: Any) -> None:
        with torch.inference_mode():
            model._backbone(x)
            model._searcher().search(patches)

    return run


def _partner(method: str, backbone: str, args: argparse.Namespace) -> Any:
    """The fitted partner model its own cell left in ``--pair-dir``, if any."""
    from leaderboard.registry import load_class

    name = PARTNERS.get(method)
    path = _pair_path(args, name, backbone) if name else None
    if path is None or not path.exists():
        return None
    return load_class(name).load(path)


def _pair_path(args: argparse.Namespace, method: str, backbone: str) -> Path | None:
    """Where ``method``'s fitted model is left for the cells that time it in turns."""
    return Path(args.pair_dir) / f"{method}-{backbone}.safetensors" if args.pair_dir else None


def run_cell(method: str, backbone: str, args: argparse.Namespace) -> dict[str, Any]:
    """Measure one (method, backbone) cell in this process (see the module docstring)."""
    import inspect

    import torch

    from baselines.components.backbones import imagenet_available
    from leaderboard.registry import load_class

    torch.set_num_threads(args.threads)
    weights = args.weights
    if weights == "auto":
        weights = "imagenet" if imagenet_available(backbone) else "none"
    klass = load_class(method)
    settings = {"backbone": backbone, "weights": weights}
    if "precision" in inspect.signature(klass).parameters:  # PaDiM has no bf16 option
        settings["precision"] = args.precision
    train, _ = _load(args.data, "train", args.train)
    test, _ = _load(args.data, "test", args.test)
    model = klass(**settings)
    out: dict[str, Any] = {"method": method, "backbone": backbone, "weights": weights,
                           "train_images": len(train), "test_images": len(test)}

    # The backbone alone over the training images, timed in turns with fit: every batch goes
    # through a bare forward (same settings) right before fit gets it, and that time is taken
    # out of fit's wall time, so both totals come from the same minutes of machine speed.
    forward = [0.0]

    def in_turns() -> Iterator[Any]:
        for batch in _batches(train, FIT_BATCH):
            with torch.inference_mode():
                start = time.perf_counter()
                model._backbone(batch)
                forward[0] += time.perf_counter() - start
            yield batch

    with torch.inference_mode():
        model._backbone(train[:FIT_BATCH].float() / 255)  # warm-up at the fit batch size
    start = time.perf_counter()
    model.fit(in_turns())
    out["forward_train_s"] = forward[0]
    out["fit"] = {"wall": time.perf_counter() - start - forward[0], **model.fit_timings}
    out["rss_fit_gb"] = _peak_rss_gb()
    out["state"] = model.state_summary()  # the memory bank, or PaDiM's Gaussians

    test_f = test.float() / 255
    for i in range(WARMUP):
        model.predict(test_f[i : i + 1])
    start = time.perf_counter()
    for batch in _batches(test, THROUGHPUT_BATCH):
        model.predict(batch)
    out["throughput_ips"] = len(test) / (time.perf_counter() - start)
    out["rss_peak_gb"] = _peak_rss_gb()  # before a partner model is loaded below

    # Batch-1 latency over the whole test set. This machine's speed drifts by 10-20% over
    # minutes, so every ratio target compares timings taken in the same window: on every
    # PAIR_EVERY-th image the reference (backbone forward alone + one exact search of a fixed
    # image's patches) and, when the partner's fitted model was left by its cell, the partner's
    # predict are timed right next to this model's.
    reference = _reference(model, test_f[:1])
    partner = _partner(method, backbone, args)
    times, stages, ref_times, pair = [], [], [], []
    for i in range(len(test_f)):
        x = test_f[i : i + 1]
        paired = i % PAIR_EVERY == 0
        if paired and reference is not None:
            ref_times.append(_timed_ms(reference, x))
        if paired and partner is not None:
            other = _timed_ms(partner.predict, x)
        elapsed = _timed_ms(model.predict, x)
        times.append(elapsed)
        stages.append(dict(model.last_timings))
        if paired and partner is not None:
            pair.append((elapsed, other))
    out["latency_ms"] = _summary(times)
    out["stages_ms"] = {k: 1e3 * statistics.fmean(s[k] for s in stages) for k in stages[0]}
    if ref_times:
        out["forward_plus_search_ms"] = statistics.median(ref_times)
        out["predict_over_reference"] = statistics.median(t for t in times[::PAIR_EVERY]) / statistics.median(ref_times)
    if pair:
        out["paired"] = {
            "partner": PARTNERS[method], "images": len(pair),
            "median_ms": statistics.median(p[0] for p in pair),
            "partner_median_ms": statistics.median(p[1] for p in pair),
        }
        out["paired"]["ratio"] = out["paired"]["median_ms"] / out["paired"]["partner_median_ms"]
    pair_path = _pair_path(args, method, backbone)
    if pair_path is not None and method in PARTNERS.values():  # left for the partner's cell
        model.save(pair_path)
    return out


# -- the driver ------------------------------------------------------------------------------
def _dataset(data: str | None) -> Path:
    if data:
        return Path(data)
    from cadsd.synth import ensure_synthetic

    return ensure_synthetic(seed=0, counts="paper")  # cached; generated on first use


def _cell_subprocess(method: str, backbone: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "leaderboard.perf", "--cell", f"{method}:{backbone}",
           "--data", str(args.data), "--weights", args.weights, "--threads", str(args.threads),
           "--precision", args.precision]
    cmd += ["--pair-dir", str(args.pair_dir)] if args.pair_dir else []
    cmd += ["--train", str(args.train)] if args.train else []
    cmd += ["--test", str(args.test)] if args.test else []
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"method": method, "backbone": backbone, "error": proc.stderr.strip()[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


_FIT_COLUMNS = {"wall", "extract", "coreset", "total", "backbone", "aggregate"}
_STAGE_COLUMNS = {"backbone", "aggregate", "search", "map"}


def report(results: dict[str, Any]) -> str:
    """The printed tables: one row per cell, then the target ratios with PASS/MISS."""
    machine = (f"machine: {results['cpu']}; torch threads {results['threads']}; load average "
               f"{results['load_before']} before, {results['load_after']} after")
    lines = [machine]
    lines += [f"WARNING: {w}" for w in results["warnings"]]
    head = (f"{'method':18} {'backbone':16} {'fwd400 s':>8} {'fit s':>7} {'extract':>7} "
            f"{'coreset':>7} {'b1 mean':>7} {'median':>7} {'p95':>7} {'bb':>6} {'agg':>6} "
            f"{'search':>6} {'map':>5} {'ips@32':>6} {'RSS fit':>7} {'RSS':>5}")
    lines += ["", head, "-" * len(head)]
    for c in results["cells"]:
        if "error" in c:
            lines.append(f"{c['method']:18} {c['backbone']:16} FAILED: {c['error'][-300:]}")
            continue
        st, lat, fit = c["stages_ms"], c["latency_ms"], c["fit"]
        lines.append(
            f"{c['method']:18} {c['backbone']:16} {c['forward_train_s']:8.1f} {fit['wall']:7.1f} "
            f"{fit['extract']:7.1f} {_fmt(fit.get('coreset')):>7} {lat['mean']:7.1f} "
            f"{lat['median']:7.1f} {lat['p95']:7.1f} {st['backbone']:6.1f} "
            f"{_fmt(st.get('aggregate'), 1):>6} {_fmt(st.get('search'), 1):>6} "
            f"{st['map']:5.1f} {c['throughput_ips']:6.1f} {c['rss_fit_gb']:7.2f} "
            f"{c['rss_peak_gb']:5.2f}"
        )
    legend = ("(fit columns in s; latency in ms per image; bb/agg/search/map: mean ms of one "
              "batch-1 predict; agg is the attention for SA-PatchCore)")
    lines += ["", legend]
    for c in results["cells"]:  # stages without a column (PaDiM: gaussian, cholesky, mahalanobis)
        fit_extra = {k: v for k, v in c.get("fit", {}).items() if k not in _FIT_COLUMNS}
        st_extra = {k: v for k, v in c.get("stages_ms", {}).items() if k not in _STAGE_COLUMNS}
        if fit_extra or st_extra:
            lines.append(
                f"{c['method']} / {c['backbone']}: fit "
                + ", ".join(f"{k} {v:.1f} s" for k, v in fit_extra.items())
                + "; batch-1 predict " + ", ".join(f"{k} {v:.1f} ms" for k, v in st_extra.items())
            )
    for c in results["cells"]:
        ref, pair = c.get("forward_plus_search_ms"), c.get("paired")
        if ref is not None:
            lines.append(f"{c['method']} / {c['backbone']}: reference (forward + one search) "
                         f"median {ref:.1f} ms, timed between this cell's predicts")
        if pair:
            lines.append(
                f"{c['method']} / {c['backbone']}: {pair['images']} images timed in turns with "
                f"{pair['partner']}: median {pair['median_ms']:.1f} vs {pair['partner_median_ms']:.1f} ms"
            )
    lines += ["", "targets:"]
    for t in results["targets"]:
        mark = "n/a " if t["value"] is None else ("PASS" if t["value"] <= t["limit"] else "MISS")
        lines.append(f"  {mark}  {t['backbone']:16} {t['label']:40} {_fmt(t['value'], 3):>8} "
                     f"(limit {t['limit']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m leaderboard.perf", description=__doc__.split("\n")[0])
    p.add_argument("--data", help="dataset folder (default: the cached synthetic CAD-SD, made if missing)")
    p.add_argument("--backbones", default="wide_resnet50_2,mobilenet_v2")
    p.add_argument("--methods", default="patchcore,sa_patchcore,padim")
    p.add_argument("--weights", default="auto", help="auto (ImageNet if offline-available, else none), none, imagenet or a path")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--train", type=int, default=None, help="use only the first N training images")
    p.add_argument("--test", type=int, default=None, help="use only the first N test images")
    p.add_argument("--out", help="also write the results as JSON here")
    p.add_argument("--cell", help=argparse.SUPPRESS)  # internal: run one METHOD:BACKBONE cell
    p.add_argument("--pair-dir", help=argparse.SUPPRESS)  # internal: fitted models for partners
    args = p.parse_args(argv)
    if args.cell:
        method, backbone = args.cell.split(":")
        args.data = Path(args.data)
        print(json.dumps(run_cell(method, backbone, args)))
        return 0

    from leaderboard.environment import cpu_name

    args.data = _dataset(args.data)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        print(f"unknown method(s) {unknown}; known: {', '.join(METHODS)}", file=sys.stderr)
        return 2
    warnings: list[str] = []
    load_before = round(os.getloadavg()[0], 2)
    if load_before > args.threads - 0.5:
        warnings.append(f"load average {load_before} > threads - 0.5: other processes are "
                        "running; these timings are not results")
    cells: list[dict[str, Any]] = []
    # partners first, so the paired cells find their fitted model
    order = sorted(methods, key=lambda m: m not in PARTNERS.values())
    with tempfile.TemporaryDirectory(prefix="cadsd-perf-") as pair_dir:
        args.pair_dir = pair_dir
        for backbone in backbones:
            for method in order:
                print(f"... {method} / {backbone}", file=sys.stderr, flush=True)
                cells.append(_cell_subprocess(method, backbone, args))
    load_after = round(os.getloadavg()[0], 2)
    # the run itself keeps `threads` cores busy; more than that means someone else was running
    if load_after > args.threads + 0.5 and not warnings:
        warnings.append(f"load average rose to {load_after} (> threads + 0.5) during the run: "
                        "timings are suspect")
    targets = []
    for backbone in backbones:
        by_method = {c["method"]: c for c in cells if c["backbone"] == backbone and "error" not in c}
        for t in _targets():
            if (t.backbones and backbone not in t.backbones) or not all(m in by_method for m in t.methods):
                continue
            targets.append({"label": t.label, "backbone": backbone, "value": t.value(by_method),
                            "limit": t.limit})
    results = {"cpu": cpu_name(), "threads": args.threads, "load_before": load_before,
               "load_after": load_after, "warnings": warnings, "data": str(args.data),
               "argv": sys.argv[1:], "cells": cells, "targets": targets}
    print(report(results))
    if args.out:
        out = Path(args.out)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps(results, indent=1))
        os.replace(tmp, out)
    return 0 if not any("error" in c for c in cells) else 1


if __name__ == "__main__":
    raise SystemExit(main())
