"""SA-PatchCore (Ishida et al., IEEE Access 2023): PatchCore whose layer3 branch is 3x3 max
pooling followed by parameter-free self-attention, so each patch vector carries context from the
whole image (co-occurrence). Everything else (layer2 average pooling, coreset, 1-NN scoring) is
PatchCore's: only the per-layer aggregation hook changes.
"""

from __future__ import annotations

import torch

from baselines.components.aggregate import local_max_with_sources
from baselines.patchcore import PatchCore
from sa_patchcore.attention import channel_attention, token_attention

PAPER = "Ishida et al., SA-PatchCore: Anomaly Detection in Dataset With Co-Occurrence " \
        "Relationships Using Self-Attention, IEEE Access 2023"


class SAPatchCore(PatchCore):
    """Official SA-PatchCore: layer3 -> max pool 3x3 -> per-channel attention (run.py)."""

    name = "sa_patchcore"
    description = "SA-PatchCore (official code): layer3 max-pooled + per-channel self-attention"
    paper = PAPER

    def attend(self, x: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
        """The attention applied to the max-pooled layer3 map ``(B, C, h, w)``; ``sources`` are
        the pooling's argmax indices (equal index, equal value: each value is computed once)."""
        return channel_attention(x, sources)

    def aggregate(self, index: int, feature: torch.Tensor) -> torch.Tensor:
        """layer2: PatchCore's average pooling; layer3: max pooling, then self-attention."""
        if index == 0:
            return super().aggregate(index, feature)
        return self.attend(*local_max_with_sources(feature))


class SAPatchCoreEq4(SAPatchCore):
    """SA-PatchCore with the paper's eq. 4 token attention softmax(XX^T/sqrt(C))X."""

    name = "sa_patchcore_eq4"
    description = "SA-PatchCore (paper eq. 4): layer3 max-pooled + attention over positions"

    def attend(self, x: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
        return token_attention(x)
