"""SA-PatchCore (Ishida et al., IEEE Access 2023): PatchCore whose layer3 branch is 3x3 max
pooling followed by parameter-free self-attention, so each patch vector carries context from the
whole image (co-occurrence). Everything else (layer2 average pooling, coreset, 1-NN scoring) is
PatchCore's: only the aggregation hooks change.

Two settings reach the paper's ablations (sec. V-B) for both attention variants:

* ``sa_pooling`` (Table 8): the pooling before the attention, ``max`` (the paper's), ``avg``
  or ``none``;
* ``sa_layers`` (Table 7): ``layer3`` (the paper's structure) or ``layer2+layer3``: PatchCore's
  own embedding (both layers pooled, layer3 upsampled to layer2's grid, concatenated) with the
  attention applied to the whole concatenation ("self-attention directly incorporated").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch

from baselines.components.aggregate import (
    concat_layers,
    local_avg,
    local_max_with_sources,
    upsample_nearest,
)
from baselines.errors import DetectorError
from baselines.patchcore import PatchCore
from sa_patchcore.attention import channel_attention, token_attention

PAPER = "Ishida et al., SA-PatchCore: Anomaly Detection in Dataset With Co-Occurrence " \
        "Relationships Using Self-Attention, IEEE Access 2023"
POOLINGS = ("max", "avg", "none")
LAYERS = ("layer3", "layer2+layer3")


class SAPatchCore(PatchCore):
    """Official SA-PatchCore: layer3 -> max pool 3x3 -> per-channel attention (run.py)."""

    name = "sa_patchcore"
    description = "SA-PatchCore (official code): layer3 max-pooled + per-channel self-attention"
    paper = PAPER

    def __init__(
        self,
        *,
        sa_pooling: Literal["max", "avg", "none"] = "max",
        sa_layers: Literal["layer3", "layer2+layer3"] = "layer3",
        **patchcore: Any,
    ) -> None:
        self.sa_pooling = sa_pooling  # read by validate() inside PatchCore.__init__
        self.sa_layers = sa_layers
        super().__init__(**patchcore)

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        super().validate(params)
        if params["sa_pooling"] not in POOLINGS or params["sa_layers"] not in LAYERS:
            raise DetectorError(f"sa_pooling must be one of {POOLINGS} and sa_layers one of "
                                f"{LAYERS}; got {params['sa_pooling']!r}, {params['sa_layers']!r}")

    def attend(self, x: torch.Tensor, sources: torch.Tensor | None) -> torch.Tensor:
        """The attention on a pooled map ``(B, C, h, w)``; ``sources``, where not None, are
        the max pooling's argmax indices (equal index, equal value: each value computed once)."""
        return channel_attention(x, sources)

    def pool(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The ``sa_pooling`` of one layer, with the max pooling's sources."""
        if self.sa_pooling == "max":
            return local_max_with_sources(feature)
        return (local_avg(feature) if self.sa_pooling == "avg" else feature), None

    def aggregate(self, index: int, feature: torch.Tensor) -> torch.Tensor:
        """layer3 mode: layer2 as PatchCore, layer3 pooled then attended. layer2+layer3 mode:
        both pooled (the attention comes after the concatenation, in :meth:`combine`)."""
        if self.sa_layers == "layer2+layer3":
            return self.pool(feature)[0]
        if index == 0:
            return super().aggregate(index, feature)
        return self.attend(*self.pool(feature))

    def combine(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """layer2+layer3 mode: the attention over PatchCore's concatenated embedding. The
        per-channel attention is the same channel by channel whether layer3 is attended before
        or after its nearest upsampling (each value repeated as often: same softmax weights),
        so layer3 is attended on its own, smaller grid."""
        if self.sa_layers != "layer2+layer3":
            return super().combine(parts)
        size = tuple(parts[0].shape[-2:])
        return torch.cat([upsample_nearest(self.attend(p, None), size) for p in parts], dim=1)


class SAPatchCoreEq4(SAPatchCore):
    """SA-PatchCore with the paper's eq. 4 token attention softmax(XX^T/sqrt(C))X."""

    name = "sa_patchcore_eq4"
    description = "SA-PatchCore (paper eq. 4): layer3 max-pooled + attention over positions"

    def attend(self, x: torch.Tensor, sources: torch.Tensor | None) -> torch.Tensor:
        return token_attention(x)

    def combine(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """layer2+layer3 mode: eq. 4 over the concatenated tokens (all 1536 dims at once)."""
        if self.sa_layers != "layer2+layer3":
            return super().combine(parts)
        return token_attention(concat_layers(parts))
