"""CS-Flow (Rudolph et al., "Fully Convolutional Cross-Scale-Flows for Image-based Defect
Detection", WACV 2022), as the official code (marco-rudolph/cs-flow) runs it.

Input: the image resized to ``input_size`` (768, bilinear as torchvision's ``Resize``), no crop,
the backbone's normalisation. Features: the frozen backbone (EfficientNet-B5, block 35: the last
block of its penultimate stage, 304 channels at stride 32) at three scales, the image and its
nearest-resized halves (24, 12, 6 px maps at 768), extracted ONCE per training image in eval
mode and kept for all epochs (the official ``pre_extracted``). Flow: 4 couplings of
:mod:`baselines.components.flow` (kernels 3, 3, 3, 5; hidden width 1024; soft clamp 3), trained
with Adam (lr 2e-4, eps 1e-4, weight decay 1e-5, default betas), gradient norm clipped at 1,
batches of 16 in a seeded shuffled order, 240 epochs, the loss of
:func:`~baselines.components.flow.flow_loss`. No model selection and no early stopping: the
official script scores the test set after every 60 epochs and keeps the maximum; this trains
the fixed budget and scores once. Score: mean of z^2 / 2 over all scales; map: the channel mean
of z^2 at the finest scale, bilinearly upsampled to the input.

Where the paper lives in the code (its full text was not readable when this table was written,
so its parts are named by what they state, not by their printed numbers):

| paper | what | code |
|---|---|---|
| sec. 3, feature extraction | a frozen EfficientNet at 3 scales (the image and its halves) | ``CSFlow.multiscale_features`` |
| sec. 3.1, normalizing flow | change of variables: log p(x) = log p_Z(f(x)) + log det J | ``components.flow.CrossScaleFlow`` |
| sec. 3.2, cross-scale coupling | affine coupling y1 = e(s(x2)) x1 + t(x2) on every scale at once; subnet of cross-scale convolutions | ``components.flow.ParallelCoupling``, ``CrossConvolutions`` |
| sec. 3.2 / official code | soft clamping e(s) = exp(clamp 0.636 atan(s / clamp)) | ``components.flow.log_e`` |
| sec. 3.3, loss | mean over images of (||z||^2 / 2 - log det J) / D | ``components.flow.flow_loss`` |
| sec. 3.4, scoring | image score = mean z^2 / 2 over every position of all scales; map = finest scale's z^2 | ``components.flow.image_scores``, ``score_map`` |

Precision: the official code trains in float32, and so does ``paper``. ``flow_precision='bf16'``
runs the flow's convolutions in bfloat16 (autocast, in training and scoring; the weights, Adam,
the soft clamp, the affine step, the log-det and the loss stay float32); ``'auto'`` does so only
on a CPU with native bf16 (oneDNN's check: AVX512-BF16 or AMX), where a ``quick`` step takes
0.69x the float32 time; what ran is in ``fit_notes``.

Budgets: ``paper`` is the official configuration (~38 PFLOP of training on CAD-SD: days on a
CPU, about 20-70 minutes on a GPU of 10-30 TFLOP/s); ``quick`` keeps every part and shrinks the
input, the hidden width and the epochs, and runs the flow's convolutions in bf16 where the CPU
has it, so that it trains in about 3-5 minutes on a 2-core CPU.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from baselines.base import Prediction, Train
from baselines.components.backbones import get_spec
from baselines.components.flow import (
    CrossScaleFlow,
    flow_loss,
    image_scores,
    map_sizes,
    score_map,
)
from baselines.device import native_bf16
from baselines.errors import DetectorError, InputError
from baselines.feature_detector import FeatureDetector
from baselines.preprocess import InputSpec
from baselines.training import Progress, TrainingSet

SCALES = 3
FLOW_PRECISIONS = ("fp32", "bf16", "auto")


class CSFlow(FeatureDetector):
    """Cross-scale normalizing flow on frozen multi-scale features (official CS-Flow)."""

    name: ClassVar[str] = "cs_flow"
    description: ClassVar[str] = (
        "CS-Flow: cross-scale normalizing flow on 3-scale EfficientNet features, score mean z^2/2"
    )
    paper: ClassVar[str] = (
        "Rudolph et al., Fully Convolutional Cross-Scale-Flows for Image-based Defect Detection, "
        "WACV 2022"
    )
    backbone_role: ClassVar[str] = "flow"
    paper_backbone: ClassVar[str] = "efficientnet_b5"
    fallback_backbone: ClassVar[str] = "efficientnet_lite2"
    budgets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "paper": {},
        # 256 px (maps 8/4/2), hidden 256, 16 epochs: the loss has flattened (measured); the
        # flow's convolutions in bf16 where the CPU has it natively (AVX512-BF16, AMX): a step
        # 0.69x as long, the same loss curve and AUROC within the seed spread (3 seeds each)
        "quick": {"input_size": 256, "hidden": 256, "epochs": 16, "flow_precision": "auto"},
        "smoke": {"input_size": 128, "hidden": 32, "epochs": 2},
    }

    def __init__(
        self,
        *,
        backbone: str = "efficientnet_b5",
        weights: str = "imagenet",
        device: str = "cpu",
        seed: int = 0,
        input_size: int = 768,
        coupling_blocks: int = 4,
        kernel_sizes: tuple[int, ...] = (3, 3, 3, 5),
        hidden: int = 1024,
        clamp: float = 3.0,
        lr: float = 2e-4,
        adam_eps: float = 1e-4,
        weight_decay: float = 1e-5,
        grad_clip: float = 1.0,
        batch_size: int = 16,
        epochs: int = 240,
        channels_last: bool = True,
        flow_precision: Literal["fp32", "bf16", "auto"] = "fp32",
    ) -> None:
        super().__init__()
        self._store_run_settings(backbone, weights, device, seed)
        self.input_size = input_size
        self.coupling_blocks = coupling_blocks
        self.kernel_sizes = tuple(kernel_sizes)
        self.hidden = hidden
        self.clamp = clamp
        self.lr = lr
        self.adam_eps = adam_eps
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.batch_size = batch_size
        self.epochs = epochs
        self.channels_last = channels_last  # the backbone's memory format: faster, same numbers
        self.flow_precision = flow_precision
        self._check_settings()
        self._setup_backbone(get_spec(backbone).role_layers(self.backbone_role))
        self.channels = int(get_spec(backbone).flow_channels or 0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the flow's initial weights depend on the seed only
            self.flow = CrossScaleFlow(self.channels, coupling_blocks, self.kernel_sizes,
                                       hidden, clamp).to(self.device)

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        size = params["input_size"]
        if size % 128 or not 128 <= size <= 2048:
            raise DetectorError(f"input_size must be a multiple of 128 (three scales at stride "
                                f"32, as the official code asserts) from 128 to 2048, got {size}")
        ks = params["kernel_sizes"]
        if len(ks) != params["coupling_blocks"] or any(k % 2 == 0 or k < 1 for k in ks):
            raise DetectorError(f"kernel_sizes needs one odd size per coupling block "
                                f"({params['coupling_blocks']}), got {list(ks)}")
        if min(params["hidden"], params["batch_size"], params["epochs"]) < 1:
            raise DetectorError("hidden, batch_size and epochs must be >= 1")
        if params["lr"] <= 0 or params["clamp"] < 0 or params["grad_clip"] <= 0:
            raise DetectorError("lr and grad_clip must be > 0 and clamp >= 0")
        if params["adam_eps"] <= 0 or params["weight_decay"] < 0:
            raise DetectorError("adam_eps must be > 0 and weight_decay >= 0")
        if params["flow_precision"] not in FLOW_PRECISIONS:
            raise DetectorError(f"flow_precision must be one of {FLOW_PRECISIONS}, "
                                f"got {params['flow_precision']!r}")

    @classmethod
    def input_for(cls, params: Mapping[str, Any]) -> InputSpec:
        return InputSpec(resize=params["input_size"], crop=None, resample="bilinear",
                         normalization="the backbone's (B5: ImageNet mean/std; Lite2: x/127.5-1)")

    @classmethod
    def training_flops(cls, params: Mapping[str, Any], n_images: int) -> float:
        """The flow's forward + backward FLOPs (counted on the meta device) x images x epochs."""
        from torch.utils.flop_counter import FlopCounterMode

        channels = get_spec(params.get("backbone") or cls.paper_backbone).flow_channels or 0
        with torch.device("meta"):
            flow = CrossScaleFlow(channels, params["coupling_blocks"],
                                  tuple(params["kernel_sizes"]), params["hidden"], params["clamp"])
            maps = [torch.zeros(1, channels, s, s, requires_grad=True)
                    for s in map_sizes(params["input_size"])]
        with FlopCounterMode(display=False) as counter:
            z, log_det = flow(maps)
            flow_loss(z, log_det).backward()
        return float(counter.get_total_flops()) * n_images * params["epochs"]

    # -- features -------------------------------------------------------------------------
    def scales(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The three inputs: the image and its nearest-resized halves (official ``forward``)."""
        size = images.shape[-1]
        return [images if s == 0 else F.interpolate(images, size=(size // 2**s, size // 2**s))
                for s in range(SCALES)]

    def multiscale_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``[(B, C, h_s, w_s)]`` for the three scales, finest first (frozen backbone)."""
        with torch.no_grad():
            return [self.features(x)[0].contiguous() for x in self.scales(images)]

    @property
    def flow_bf16(self) -> bool:
        """Whether the flow's convolutions run in bfloat16 (autocast; weights, optimizer, clamp,
        log-det and loss stay float32): ``bf16``, or ``auto`` on a device with native bf16
        (read from the current device, so it follows ``.to()``)."""
        return self.flow_precision == "bf16" or (
            self.flow_precision == "auto" and native_bf16(self.device))

    @contextlib.contextmanager
    def flow_autocast(self) -> Iterator[None]:
        """The flow's convolutions in bfloat16 when ``flow_bf16`` (training and scoring alike)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.flow_bf16):
            yield

    # -- the contract ---------------------------------------------------------------------
    def fit(self, train: Train, progress: Progress | None = None) -> CSFlow:
        """Extract the three-scale features of every training image once, then train the flow
        for ``epochs`` epochs of seeded shuffled batches (a fixed budget; no test data)."""
        progress = progress or Progress()
        train = TrainingSet.of(train)
        size: tuple[int, int] | None = None
        chunks: list[list[torch.Tensor]] = []
        self.flow.eval()
        with self.timed("extract"):
            for batch in self._fit_batches(train, progress):
                images = self.check_images(batch, size=size)
                size = size or (int(images.shape[-2]), int(images.shape[-1]))
                chunks.append(self.multiscale_features(images))
        if not chunks:
            raise InputError(f"{self.name}.fit() got no images: pass batches of normal images")
        feats = [torch.cat([c[s] for c in chunks]) for s in range(SCALES)]  # (N, C, h_s, w_s)
        del chunks
        n = feats[0].shape[0]
        steps = math.ceil(n / self.batch_size)
        optimizer = self._optimizer()
        gen = torch.Generator().manual_seed(self.seed)
        self.training_log = []
        self.fit_notes["flow_precision"] = "bf16" if self.flow_bf16 else "fp32"
        progress.stage("train", self.epochs * steps)
        self.flow.train()
        with self.timed("train"):
            for epoch in range(self.epochs):
                order = torch.randperm(n, generator=gen)
                total = 0.0
                for lo in range(0, n, self.batch_size):
                    idx = order[lo : lo + self.batch_size].to(self.device)
                    loss = self.train_step([f[idx] for f in feats], optimizer)
                    total += loss * len(idx)
                    progress.advance(loss=loss)
                self.training_log.append({"epoch": epoch + 1, "loss": total / n})
                progress.log(epoch=epoch + 1, epochs=self.epochs, loss=total / n)
        self.flow.eval()
        self.input_size_ = torch.tensor(size, dtype=torch.long, device=self.device)
        return self

    def _optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.flow.parameters(), lr=self.lr, eps=self.adam_eps,
                                weight_decay=self.weight_decay)

    def step_probe(self, train: Train) -> Callable[[], float]:
        """One training step on the features of the first ``batch_size`` training images."""
        images = TrainingSet.of(train).all()[: self.batch_size]
        maps = self.multiscale_features(self.check_images(images))
        optimizer = self._optimizer()
        self.flow.train()
        return lambda: self.train_step(maps, optimizer)

    def train_step(self, maps: list[torch.Tensor], optimizer: torch.optim.Optimizer) -> float:
        """One official step: loss, backward, clip the gradient norm, Adam; returns the loss."""
        optimizer.zero_grad(set_to_none=True)
        with self.flow_autocast():
            z, log_det = self.flow(maps)
        loss = flow_loss(z, log_det)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.flow.parameters(), self.grad_clip)
        optimizer.step()
        return loss.item()

    def training_verdict(self) -> str | None:
        log = self.training_log
        if len(log) >= 3:
            first, before, last = log[0]["loss"], log[-2]["loss"], log[-1]["loss"]
            drop = (before - last) / max(abs(first - last), 1e-12)
            if drop > 0.05:
                return (f"the training loss was still falling at the end ({before:.3f} -> "
                        f"{last:.3f} in the last epoch, {100 * drop:.0f}% of the whole drop): "
                        "the flow is undertrained at this budget")
        return None

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> Prediction:
        """Score = mean z^2 / 2 over the three scales; map = finest scale's z^2, upsampled."""
        size = (int(self.input_size_[0]), int(self.input_size_[1]))
        images = self.check_images(images, size=size)
        with self.timed("backbone"):
            maps = self.multiscale_features(images)
        with self.timed("flow"), self.flow_autocast():
            z, _ = self.flow(maps)
            scores = image_scores(z)
        with self.timed("map"):
            out = score_map(z, size)
        return Prediction(scores=scores.cpu(), maps=out.cpu())
