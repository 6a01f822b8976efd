"""The parameter-free self-attention of SA-PatchCore (Ishida et al. 2023, sec. III-B, eq. 4).

Two readings exist and both are kept:

* :func:`channel_attention` is what the official code (IshidaKengo/SA-PatchCore, run.py) computes:
  each channel's HW values attend to each other, unscaled:
  ``out_c[i] = sum_j softmax_j(x_c[i] * x_c[j]) * x_c[j]``;
* :func:`token_attention` is eq. 4 as printed: tokens are the HW positions, ``X in R^{HW x C}``,
  ``softmax(X X^T / sqrt(C)) X``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: elements of the (HW x HW) score blocks materialised at once; bounds peak memory for big batches
_SCORE_BUDGET = 1 << 25


def channel_attention(x: torch.Tensor) -> torch.Tensor:
    """Official per-channel attention of ``(B, C, H, W)``: sequences of HW scalars per channel.

    ``t`` is ``(B, C, HW, 1)``; with head size 1 the default SDPA scale 1/sqrt(1) is already 1
    (the official loop has no scaling), passed explicitly so the intent is visible.
    """
    b, c, h, w = x.shape
    # contiguous: on a channels_last map the reshape is a strided view that SDPA runs ~10x slower
    t = x.contiguous().view(b, c, h * w, 1)  # (B, C, HW, 1)
    step = max(1, _SCORE_BUDGET // (c * (h * w) ** 2))  # images per block
    out = [F.scaled_dot_product_attention(p, p, p, scale=1.0) for p in t.split(step)]
    return torch.cat(out).view(b, c, h, w)


def token_attention(x: torch.Tensor) -> torch.Tensor:
    """Eq. 4 attention of ``(B, C, H, W)``: softmax(X X^T / sqrt(C)) X over the HW positions."""
    b, c, h, w = x.shape
    t = x.flatten(2).transpose(1, 2)  # (B, HW, C)
    out = F.scaled_dot_product_attention(t, t, t, scale=c**-0.5)
    return out.transpose(1, 2).reshape(b, c, h, w)
