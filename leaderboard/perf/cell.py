"""One cell of ``python -m leaderboard.perf``, measured in its own process (so peak RSS is its
own). It builds the method as ``bench run`` does (:mod:`leaderboard.running.plan`: budget, settings,
backbone; the method's own input), uses the runner's warm-up rule, and reaches the method only
through its public surface: ``fit``, ``predict``, ``step_probe``, ``timing_probes`` (the parts
of ``predict`` it can time alone: ``backbone``, ``backbone+search``), ``diagnostics`` (e.g. an
approximate search's recall) and ``images_embedded`` (images through the backbone).

Every ratio compares timings taken in turns, because this machine's speed drifts by more than
the margins between separate measurements:

* frozen-feature methods (a ``backbone`` probe, no training): the bare backbone forward of every
  training batch right before fit gets it (taken out of fit's wall time); the
  ``backbone+search`` probe (forward + one exact search) next to each predict, where the method
  has one; SA-PatchCore next to the PatchCore its own cell fitted;
* trained methods: one training step of a fresh model next to one float32 matrix product that
  measures this machine's GEMM rate, repeated; the step's forward + backward FLOPs are counted
  (``torch.utils.flop_counter``), so ``step time / (FLOPs / GEMM rate)`` says how far the step
  is from the machine's matrix speed. Then the whole fit at the budget, counting how many images
  went through the backbone (features must be extracted once per image, not once per epoch).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

FIT_BATCH = 8
THROUGHPUT_BATCH = 32
PAIR_EVERY = 2  # every other test image also times the reference and the partner, interleaved
STEP_TURNS = 6  # training steps timed in turns with a GEMM

#: method -> the method its latency is compared with, image by image in the same process
PARTNERS = {"sa_patchcore": "patchcore", "sa_patchcore_eq4": "patchcore",
            "sa_patchcore_dual": "sa_patchcore"}


def _peak_rss_gb() -> float:
    from leaderboard.running.environment import peak_rss_bytes

    return (peak_rss_bytes() or 0) / 2**30


def load_split(root: Path, split: str, limit: int | None, spec: Any) -> Any:
    """The split's images decoded as ``spec`` says, as uint8 ``(N, 3, H, W)``."""
    import torch

    from baselines.preprocess import image_to_uint8
    from cadsd.format.layout import index

    samples = [s for s in index(root) if s.split == split][:limit]
    return torch.stack([image_to_uint8(s.path, spec) for s in samples])


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


def _partner(method: str, backbone: str, args: argparse.Namespace) -> Any:
    """The fitted partner model its own cell left in ``--pair-dir``, if any."""
    from leaderboard.methods import load_class

    name = PARTNERS.get(method)
    path = pair_path(args, name, backbone) if name else None
    if path is None or not path.exists():
        return None
    return load_class(name).load(path)


def pair_path(args: argparse.Namespace, method: str, backbone: str) -> Path | None:
    """Where ``method``'s fitted model is left for the cells that time it in turns."""
    return Path(args.pair_dir) / f"{method}-{backbone}.safetensors" if args.pair_dir else None


def plan_for(method: str, backbone: str, args: argparse.Namespace) -> Any:
    """The method as ``bench run`` would build it, at ``args.budget``; ``--weights auto``:
    ImageNet weights where they load offline, else random init (timing only)."""
    from dataclasses import replace

    from baselines.components.backbones import imagenet_available
    from leaderboard.methods import METHODS
    from leaderboard.running.plan import plan_methods

    items = [f"{method}.precision={args.precision}"] if args.precision != "fp32" else []
    (mplan,) = plan_methods([method], METHODS, items, args.budget)
    if mplan.klass.backbone_role is None:
        return mplan
    weights = args.weights
    if weights == "auto":
        weights = "imagenet" if imagenet_available(backbone) else "none"
    return replace(mplan, backbone=backbone, weights=weights)


def time_training_step(mplan: Any, train: Any) -> dict[str, Any]:
    """Median time of one training step of a fresh model, and the GEMM rate timed in turns."""
    from torch.utils.flop_counter import FlopCounterMode

    from baselines.training import TrainingSet
    from leaderboard.running.environment import gemm_gflops

    model = mplan.build("cpu", 0)
    step = model.step_probe(TrainingSet(train, batch_size=model.fit_batch_size))
    step()  # warm-up
    with FlopCounterMode(display=False) as counter:
        step()
    flops = float(counter.get_total_flops())
    steps, rates = [], []
    for _ in range(STEP_TURNS):
        rates.append(gemm_gflops(repeats=1))
        steps.append(_timed_ms(step) / 1e3)
    del model, step
    gc.collect()
    rate = statistics.median(rates)
    seconds = statistics.median(steps)
    return {"step_s": seconds, "step_gflop": flops / 1e9, "gemm_gflops": rate,
            "step_over_gemm": seconds / (flops / (rate * 1e9))}


def run_cell(method: str, backbone: str, args: argparse.Namespace) -> dict[str, Any]:
    """Measure one (method, backbone) cell in this process (see the module docstring)."""
    import torch

    from baselines.training import TrainingSet
    from leaderboard.running import environment
    from leaderboard.running.timing import WARMUP, warm_up

    torch.set_num_threads(args.threads)
    mplan = plan_for(method, backbone, args)
    train = load_split(args.data, "train", args.train, mplan.input)
    test = load_split(args.data, "test", args.test, mplan.input)
    out: dict[str, Any] = {"method": method, "backbone": mplan.backbone or "none",
                           "weights": mplan.weights, "budget": mplan.budget,
                           "train_images": len(train), "test_images": len(test)}
    trained = mplan.budget is not None
    if trained:
        out["train_step"] = time_training_step(mplan, train)
    model = mplan.build("cpu", 0)
    probes = model.timing_probes()
    with environment.Monitor() as monitor:
        if trained or "backbone" not in probes:
            seen = getattr(model, "images_embedded", None)
            start = time.perf_counter()
            model.fit(TrainingSet(train, batch_size=model.fit_batch_size))
            out["fit"] = {"wall": time.perf_counter() - start, **model.fit_timings}
            if seen is not None:
                out["backbone_images_per_train_image"] = (
                    (model.images_embedded - seen) / len(train))
        else:
            out.update(_fit_in_turns(model, train, probes["backbone"]))
    out["rss_fit_gb"] = monitor.summary().peak_rss_mb / 1024
    out["state"] = asdict(model.state_summary())  # the memory bank, PaDiM's Gaussians...
    out["fit_notes"] = model.fit_notes

    test_f = test.float() / 255
    warm_up(model, test_f, WARMUP)
    start = time.perf_counter()
    for batch in _batches(test, THROUGHPUT_BATCH):
        model.predict(batch)
    out["throughput_ips"] = len(test) / (time.perf_counter() - start)
    out["rss_peak_gb"] = _peak_rss_gb()  # before a partner model is loaded below
    out.update(_latency(model, test_f, method, backbone, args))
    gen = torch.Generator().manual_seed(0)  # facts of the fitted model on 8 test images
    for key, value in model.diagnostics(test_f[torch.randperm(len(test_f), generator=gen)[:8]]
                                        ).items():
        out[f"{key}_test"] = value
    path = pair_path(args, method, backbone)
    if path is not None and method in PARTNERS.values():  # left for the partner's cell
        model.save(path)
    return out


def _fit_in_turns(model: Any, train: Any, backbone: Callable[[Any], object]) -> dict[str, Any]:
    """Fit a frozen-feature method with a bare backbone forward (its ``backbone`` probe) of
    each batch right before fit gets it; that time is taken out of fit's wall time, so both
    come from the same minutes."""
    import torch

    forward = [0.0]

    def in_turns() -> Iterator[Any]:
        for batch in _batches(train, FIT_BATCH):
            with torch.inference_mode():
                start = time.perf_counter()
                backbone(batch)
                forward[0] += time.perf_counter() - start
            yield batch

    with torch.inference_mode():
        backbone(train[:FIT_BATCH].float() / 255)  # warm-up at the fit batch size
    start = time.perf_counter()
    model.fit(in_turns())
    return {"forward_train_s": forward[0],
            "fit": {"wall": time.perf_counter() - start - forward[0], **model.fit_timings}}


def _latency(model: Any, test_f: Any, method: str, backbone: str,
             args: argparse.Namespace) -> dict[str, Any]:
    """Batch-1 latency over the whole test set; on every PAIR_EVERY-th image the reference
    (backbone forward alone + one exact search of a fixed image's patches) and, when the
    partner's fitted model was left by its cell, the partner's predict, timed right next to it."""
    reference = model.timing_probes().get("backbone+search")
    if reference is not None:
        reference(test_f[:1])  # warm-up (it also fixes the patches it searches)
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
    out: dict[str, Any] = {
        "latency_ms": _summary(times),
        "stages_ms": {k: 1e3 * statistics.fmean(s[k] for s in stages) for k in stages[0]},
    }
    if ref_times:
        out["forward_plus_search_ms"] = statistics.median(ref_times)
        out["predict_over_reference"] = (statistics.median(t for t in times[::PAIR_EVERY])
                                         / statistics.median(ref_times))
    if pair:
        out["paired"] = {
            "partner": PARTNERS[method], "images": len(pair),
            "median_ms": statistics.median(p[0] for p in pair),
            "partner_median_ms": statistics.median(p[1] for p in pair),
        }
        out["paired"]["ratio"] = out["paired"]["median_ms"] / out["paired"]["partner_median_ms"]
    return out
