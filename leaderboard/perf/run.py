"""Speed and memory benchmark of the detectors.

    python -m leaderboard.perf [--data DIR] [--backbones wide_resnet50_2,mobilenet_v2]
                               [--methods patchcore,sa_patchcore,padim,cs_flow,patchsvdd]
                               [--budget quick] [--weights auto|none|imagenet]
                               [--threads 2] [--train N] [--test N] [--out FILE.json]

On the synthetic CAD-SD at paper counts (400 train / 376 test, each method's own input) each
(method, backbone) cell runs in a fresh subprocess (so peak RSS is its own) and measures: fit
(split into its stages), batch-1 predict latency (mean, median, p95, and its stages),
throughput at batch 32, peak RSS; for frozen-feature methods the backbone forward alone over the
training images, for trained methods one training step against its FLOPs at this machine's
measured GEMM rate and the images the backbone saw during fit. Methods without a backbone
(Patch SVDD) run once; a method that cannot use a backbone is skipped for it. The targets are
ratios taken in the same run (:mod:`leaderboard.perf.targets`), each marked PASS or MISS, each
from timings taken in turns (see :mod:`leaderboard.perf.cell`). Timings taken while other
processes load the machine are not results: the load is recorded and a warning printed. ``--weights auto`` uses ImageNet weights
where they load offline (MobileNetV2, EfficientNet-Lite2) and random init otherwise (fine for
timing, never for accuracy).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from leaderboard.perf.cell import PARTNERS, run_cell
from leaderboard.perf.targets import targets as all_targets

#: the registered methods this script can time
METHODS = ("patchcore", "sa_patchcore", "sa_patchcore_eq4", "sa_patchcore_dual", "padim",
           "cs_flow", "patchsvdd")


# -- the driver ------------------------------------------------------------------------------
def _dataset(data: str | None) -> Path:
    if data:
        return Path(data)
    from cadsd.synth import ensure_synthetic

    return ensure_synthetic(seed=0, counts="paper")  # cached; generated on first use


def _cell_subprocess(method: str, backbone: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "leaderboard.perf", "--cell", f"{method}:{backbone}",
           "--data", str(args.data), "--weights", args.weights, "--threads", str(args.threads),
           "--precision", args.precision, "--budget", args.budget]
    cmd += ["--pair-dir", str(args.pair_dir)] if args.pair_dir else []
    cmd += ["--train", str(args.train)] if args.train else []
    cmd += ["--test", str(args.test)] if args.test else []
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"method": method, "backbone": backbone, "error": proc.stderr.strip()[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cells(methods: list[str], backbones: list[str]) -> list[tuple[str, str]]:
    """(method, backbone) pairs to measure: a method without a backbone once (as ``none``), a
    backbone a method cannot use (no layers for its role) skipped."""
    from baselines.components.backbones import get_spec
    from leaderboard.methods import load_class

    out = []
    for backbone in backbones:
        for method in methods:
            role = load_class(method).backbone_role
            if role is None:
                if (method, "none") not in out:
                    out.append((method, "none"))
            elif role in get_spec(backbone).roles():
                out.append((method, backbone))
    return out


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
            f"{c['method']:18} {c['backbone']:16} {_fmt(c.get('forward_train_s'), 1):>8} "
            f"{fit['wall']:7.1f} {_fmt(fit.get('extract'), 1):>7} {_fmt(fit.get('coreset')):>7} "
            f"{lat['mean']:7.1f} {lat['median']:7.1f} {lat['p95']:7.1f} "
            f"{_fmt(st.get('backbone'), 1):>6} {_fmt(st.get('aggregate'), 1):>6} "
            f"{_fmt(st.get('search'), 1):>6} {_fmt(st.get('map'), 1):>5} "
            f"{c['throughput_ips']:6.1f} {c['rss_fit_gb']:7.2f} {c['rss_peak_gb']:5.2f}"
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
        step = c.get("train_step")
        if step:
            rate = step["step_gflop"] / step["step_s"]
            lines.append(
                f"{c['method']} / {c['backbone']} (budget {c['budget']}): one training step "
                f"{step['step_s']:.3f} s for {step['step_gflop']:.1f} GFLOP forward + backward = "
                f"{rate:.0f} GFLOP/s, against {step['gemm_gflops']:.0f} GFLOP/s of float32 GEMM "
                f"timed in turns (ratio {step['step_over_gemm']:.2f})")
        if "backbone_images_per_train_image" in c:
            lines.append(f"{c['method']} / {c['backbone']}: the backbone saw "
                         f"{c['backbone_images_per_train_image']:.2f} images per training image "
                         "during fit (features extracted once, cached for every epoch)")
        if "recall32_test" in c:
            r = c["recall32_test"]
            kind = f"IVF, nprobe {r['nprobe']}" if r["approximate"] else "exact"
            lines.append(f"{c['method']}: K=32 nearest-neighbour search ({kind}) 1-NN recall "
                         f"{r['recall']:.4f} against exact search on {r['queries']} test patches")
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
    p.add_argument("--budget", default="quick", choices=["paper", "quick", "smoke"],
                   help="budget of the trained methods (cs_flow, patchsvdd)")
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

    from leaderboard.running.environment import cpu_name

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
    def depth(m: str) -> int:  # a partner's cell runs before the cells timed against it
        return 0 if m not in PARTNERS else 1 + depth(PARTNERS[m])

    order = sorted(methods, key=depth)
    with tempfile.TemporaryDirectory(prefix="cadsd-perf-") as pair_dir:
        args.pair_dir = pair_dir
        for method, backbone in _cells(order, backbones):
            print(f"... {method} / {backbone}", file=sys.stderr, flush=True)
            cells.append(_cell_subprocess(method, backbone, args))
    load_after = round(os.getloadavg()[0], 2)
    # the run itself keeps `threads` cores busy; more than that means someone else was running
    if load_after > args.threads + 0.5 and not warnings:
        warnings.append(f"load average rose to {load_after} (> threads + 0.5) during the run: "
                        "timings are suspect")
    targets = []
    for backbone in dict.fromkeys(c["backbone"] for c in cells):
        by_method = {c["method"]: c for c in cells if c["backbone"] == backbone and "error" not in c}
        for t in all_targets():
            if (t.backbones and backbone not in t.backbones) or not all(m in by_method for m in t.methods):
                continue
            targets.append({"label": t.label, "backbone": backbone, "value": t.value(by_method),
                            "limit": t.limit})
    results = {"cpu": cpu_name(), "threads": args.threads, "load_before": load_before,
               "load_after": load_after, "warnings": warnings, "data": str(args.data),
               "argv": sys.argv[1:], "cells": cells, "targets": targets}
    print(report(results))
    if args.out:
        from cadsd.files import atomic_write_text

        atomic_write_text(Path(args.out), json.dumps(results, indent=1))
    return 0 if not any("error" in c for c in cells) else 1


