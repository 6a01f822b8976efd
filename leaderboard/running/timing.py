"""The timing protocol (fixed; it is also printed in every leaderboard).

1. decoding (each method's input: PatchCore's resize 256 + crop 224, ...) happens once per run
   and input, before any cell, and is timed apart;
2. ``fit``: the training images, in the method's own batches (``fit_batch_size``: 8 for the
   frozen-feature methods), wall time of the whole call (which includes turning the decoded
   uint8 batches into float, ~1 ms per image, and, for trained methods, all of training);
3. warm-up: ``warmup`` (5) batch-1 predictions on the first test images, discarded;
4. latency: every test image once at batch 1, in dataset order, wall time of ``predict`` plus
   copying scores and maps to the host (GPU work synchronised); the scores come from this pass;
5. throughput: the first ``throughput_images`` (128) test images again, at batch
   ``throughput_batch`` (32): images per second of ``predict`` plus the host copies, as in step 4;
   their scores are compared with the batch-1 scores (``batch_consistency_max_abs``). Four
   batches give the rate as well as the whole test set did (its later batches only repeated the
   measurement: on CAD-SD's 376 test images they took 2 minutes of ``make bench``).

Peak RSS covers the whole cell (model build, fit, both passes); on CUDA peak GPU memory too.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from leaderboard.errors import BenchError
from leaderboard.records.schema import Latency, Throughput
from leaderboard.running import environment
from leaderboard.running.data import View
from leaderboard.running.progress import Reporter

#: warm-up predictions before any timed one (the runner's default; leaderboard.perf uses it too)
WARMUP = 5


@dataclass(frozen=True)
class TimingProtocol:
    """The settings of steps 3-5: warm-up predictions, the throughput batch and how many test
    images it times (0: all), and how many test images per category keep their maps for the
    gallery."""

    warmup: int = WARMUP
    throughput_batch: int = 32
    throughput_images: int = 128
    gallery_per_category: int = 2

    def text(self) -> str:
        """The protocol as every record and leaderboard states it."""
        return (
            "decode once per run and input (timed apart); fit on the training images in each "
            f"method's batches (trained methods: the whole fixed budget); {self.warmup} warm-up "
            "predictions at batch 1 (discarded); latency = every test image at batch 1 (predict "
            "+ copy to host; scores come from this pass); throughput = "
            f"{self.throughput_what()} at batch {self.throughput_batch}"
        )

    def throughput_what(self) -> str:
        """Which test images the throughput pass times, in words."""
        return (f"the first {self.throughput_images} test images" if self.throughput_images
                else "the test set")

    def throughput_count(self, n_test: int) -> int:
        """How many of ``n_test`` test images the throughput pass times."""
        return min(n_test, self.throughput_images) if self.throughput_images else n_test


def _check_prediction(scores: torch.Tensor, maps: torch.Tensor, batch: int, size: tuple) -> None:
    if tuple(scores.shape) != (batch,) or tuple(maps.shape) != (batch, *size):
        raise BenchError(
            f"predict returned scores {tuple(scores.shape)} and maps {tuple(maps.shape)}; "
            f"the Detector contract wants ({batch},) and ({batch}, {size[0]}, {size[1]})"
        )


def _gallery(view: View, per_category: int) -> list[int]:
    """Indices of the first ``per_category`` test images of each category (sorted order)."""
    picks: dict[str, list[int]] = {}
    for i, cat in enumerate(view.test.categories):
        if len(picks.setdefault(cat, [])) < per_category:
            picks[cat].append(i)
    return [i for idx in picks.values() for i in idx]


def warm_up(model: Any, images: torch.Tensor, n: int, device: str = "cpu",
            ui: Reporter | None = None) -> int:
    """The warm-up rule (step 3): ``n`` batch-1 predictions on the first images, discarded.
    Returns how many ran. :mod:`leaderboard.perf` uses it too."""
    n = min(n, len(images))
    if ui is not None:
        ui.stage("warm-up", n)
    for i in range(n):
        x = images[i : i + 1]
        model.predict((x.float().div(255) if x.dtype == torch.uint8 else x).to(device))
        if ui is not None:
            ui.advance()
    return n


@dataclass
class Measured:
    """What steps 3-5 give: the batch-1 scores, the kept maps (every map where there are masks,
    else the gallery's) and the gallery's test indices, and the timings."""

    scores: np.ndarray  # (N,) float64
    maps: np.ndarray  # (N or gallery, H, W) float32
    gallery: list[int]
    warmup_images: int
    latency_ms: Latency
    throughput: Throughput
    predict_stages_ms: dict[str, float]


def measure(model: Any, view: View, protocol: TimingProtocol, device: str,
            ui: Reporter) -> Measured:
    """Steps 3-5 of the protocol on ``device``; returns scores, latencies, kept maps and stage
    timings."""
    test, dev = view.test, device
    n, size = len(test), tuple(test.images.shape[-2:])
    keep_all = test.masks is not None
    gallery = _gallery(view, protocol.gallery_per_category)
    # with masks every map is kept (pixel AUROC); otherwise only the gallery's
    maps = np.zeros((n if keep_all else len(gallery), *size), np.float32)
    slot = {i: i for i in range(n)} if keep_all else {i: k for k, i in enumerate(gallery)}
    warmed = warm_up(model, test.images, protocol.warmup, dev, ui)
    ui.stage("latency (batch 1)", n)
    scores, latency = np.zeros(n), np.zeros(n)
    stages: dict[str, float] = {}
    for i in range(n):
        x = test.batch(i, i + 1)
        environment.synchronize(dev)
        start = time.perf_counter()
        pred = model.predict(x.to(dev))  # the host-to-device copy is part of the latency
        s, m = pred.scores.detach().cpu(), pred.maps.detach().cpu()
        latency[i] = time.perf_counter() - start
        _check_prediction(s, m, 1, size)
        scores[i] = float(s[0])
        if i in slot:
            maps[slot[i]] = m[0].float().numpy()
        for k, v in model.last_timings.items():
            stages[k] = stages.get(k, 0.0) + float(v)
        ui.advance()
    n_tp, step = protocol.throughput_count(n), protocol.throughput_batch
    ui.stage(f"throughput (batch {step})", math.ceil(n_tp / step))
    batched, elapsed = [], 0.0
    for lo in range(0, n_tp, step):
        x = test.batch(lo, min(lo + step, n_tp))  # uint8 -> float: data prep, not timed
        environment.synchronize(dev)
        start = time.perf_counter()
        pred = model.predict(x.to(dev))
        s, _ = pred.scores.detach().cpu(), pred.maps.detach().cpu()
        elapsed += time.perf_counter() - start
        batched.append(s)
        ui.advance()
    batched_scores = torch.cat(batched).double().numpy()
    ms = latency * 1000
    return Measured(
        scores=scores, maps=maps, gallery=gallery, warmup_images=warmed,
        latency_ms=Latency(mean=float(ms.mean()), median=float(np.median(ms)),
                           p95=float(np.percentile(ms, 95)), min=float(ms.min()), n=n),
        throughput=Throughput(batch=step, images_per_s=n_tp / elapsed, images=n_tp,
                              batch_consistency_max_abs=float(
                                  np.abs(batched_scores - scores[:n_tp]).max())),
        predict_stages_ms={k: 1000 * v / n for k, v in stages.items()},
    )
