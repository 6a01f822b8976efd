"""The parameter-free self-attention of SA-PatchCore (Ishida et al. 2023, sec. III-B, eq. 4).

Two readings exist and both are kept:

* :func:`channel_attention` is what the official code (IshidaKengo/SA-PatchCore, run.py) computes:
  each channel's HW values attend to each other, unscaled:
  ``out_c[i] = sum_j softmax_j(x_c[i] * x_c[j]) * x_c[j]``;
* :func:`token_attention` is eq. 4 as printed: tokens are the HW positions, ``X in R^{HW x C}``,
  ``softmax(X X^T / sqrt(C)) X``.

Speed on CPU. The per-channel scores are rank one, ``s_ij = x_i x_j``, so ``out_i`` depends on
``x_i`` alone and each distinct value of a channel needs computing once, with the other values
weighted by how often they occur. The 3x3 max pooling copies a value to up to nine positions
(WideResNet50-2 layer3 on CAD-SD-like images: about 58 distinct values of 196 per channel), so
passing the pooling's argmax indices as ``sources`` cuts the exponentials several-fold; exact
zeros, which ReLU gives many sources for, are merged too. The exponent is clamped at -80 before
``exp``: below about -87 float32 ``exp`` underflows and takes a ~100x slower path (the peaked
softmax of real features is mostly such entries); ``exp(-80)`` is 1.8e-35 against a denominator
of at least 1, far below float32 resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: elements of the (HW x HW) score blocks materialised at once; bounds peak memory for big batches
_SCORE_BUDGET = 1 << 25
#: score elements per block of the deduplicated path: small enough to stay in cache
_BLOCK = 1 << 20
#: exponent floor: exp() is exact to float32 resolution here and never takes the underflow path
_EXP_FLOOR = -80.0


def channel_attention(x: torch.Tensor, sources: torch.Tensor | None = None) -> torch.Tensor:
    """Official per-channel attention of ``(B, C, H, W)``: sequences of HW scalars per channel.

    ``sources``, optional ``(B, C, H, W)`` integer labels in ``[0, HW)`` such that equal labels
    within a channel mean equal values (the argmax indices of the max pooling that made ``x``):
    then, on CPU, each distinct value is computed once (same result, much faster).
    """
    b, c, h, w = x.shape
    if sources is not None and sources.shape != x.shape:
        raise ValueError(f"sources has shape {tuple(sources.shape)}, expected {tuple(x.shape)}")
    if sources is not None and x.device.type == "cpu":  # on accelerators one fused SDPA is faster
        # contiguous: a channels_last map reshapes to a transposed view, ~2x slower to scan by row
        out = _deduplicated(x.contiguous().view(b * c, h * w), sources.contiguous().view(b * c, h * w))
        return out.view(b, c, h, w)
    # (B, C, HW, 1): with head size 1 the default SDPA scale 1/sqrt(1) is already 1 (the official
    # loop has no scaling), passed explicitly so the intent is visible. contiguous: on a
    # channels_last map the reshape is a strided view that SDPA runs ~10x slower
    t = x.contiguous().view(b, c, h * w, 1)
    step = max(1, _SCORE_BUDGET // (c * (h * w) ** 2))  # images per block
    out = [F.scaled_dot_product_attention(p, p, p, scale=1.0) for p in t.split(step)]
    return torch.cat(out).view(b, c, h, w)


def _deduplicated(v: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Rows ``v`` ``(R, N)`` attend within themselves; equal ``labels`` mark equal values."""
    r, n = v.shape
    labels = labels.long()
    zero = v == 0  # exact zeros (ReLU) are equal whatever their source: one label for all of them
    labels = torch.where(zero, torch.where(zero, labels, n).amin(1, keepdim=True), labels)
    # per row: value and multiplicity of every label, then the labels in use packed to the front
    weight = torch.zeros_like(v).scatter_add_(1, labels, torch.ones_like(v))
    value = torch.zeros_like(v).scatter_(1, labels, v)
    present = weight > 0
    slot = present.cumsum(1) - 1  # packed position of each label in use
    target = torch.where(present, slot, n)  # unused labels land in a column that is dropped
    hi, lo = v.amax(1, keepdim=True), v.amin(1, keepdim=True)
    # padding repeats the row maximum with weight 0: finite scores, no contribution
    packed = hi.expand(r, n + 1).clone().scatter_(1, target, value)[:, :n]
    counts = torch.zeros(r, n + 1, dtype=v.dtype).scatter_(1, target, weight)[:, :n]
    # rows sorted by their number of distinct values, so blocks of rows pad little
    distinct = slot[:, -1] + 1
    order = distinct.argsort()
    lengths = distinct[order].tolist()
    packed, counts, hi, lo = packed[order], counts[order], hi[order], lo[order]
    # score minus row maximum in one product: a_i * (a_j - max) for a_i >= 0, a_i * (a_j - min)
    # otherwise; the maximum itself gives exactly 0, so every denominator is at least 1
    left = torch.stack((packed.clamp_min(0), packed.clamp_max(0)), dim=2)  # (R, N, 2)
    right = torch.stack((packed - hi, packed - lo), dim=1)  # (R, 2, N)
    weighted = torch.stack((counts * packed, counts), dim=1)  # (R, 2, N): sum w x, sum w
    out = torch.empty_like(packed)
    start = 0
    while start < r:
        end = start + 1
        while end < r and (end + 1 - start) * lengths[end] ** 2 <= _BLOCK:
            end += 1
        k = lengths[end - 1]
        score = torch.bmm(left[start:end, :k], right[start:end, :, :k])  # (rows, k, k)
        score.clamp_min_(_EXP_FLOOR).exp_()
        num_den = torch.bmm(weighted[start:end, :, :k], score.transpose(1, 2))  # (rows, 2, k)
        out[start:end, :k] = num_den[:, 0] / num_den[:, 1]
        start = end
    unsorted = torch.empty_like(out)
    unsorted[order] = out
    return unsorted.gather(1, slot.gather(1, labels))


def token_attention(x: torch.Tensor) -> torch.Tensor:
    """Eq. 4 attention of ``(B, C, H, W)``: softmax(X X^T / sqrt(C)) X over the HW positions."""
    b, c, h, w = x.shape
    t = x.flatten(2).transpose(1, 2)  # (B, HW, C)
    out = F.scaled_dot_product_attention(t, t, t, scale=c**-0.5)
    return out.transpose(1, 2).reshape(b, c, h, w)
