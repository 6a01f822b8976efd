"""SA-PatchCore: PatchCore with self-attention on the layer3 branch (Ishida et al. 2023).

Where the paper lives in the code (sec. III; equations 1-3 restate PatchCore, eq. 4 is the
paper's own; the paper's full text was not readable when this table was written, so eqs. 1-3
are named by what they state, not checked against their printed numbers):

| paper | what | code |
|---|---|---|
| sec. III-A, eq. 1 | locally aware patch features: 3x3 neighbourhood aggregation of layer2 / layer3 | ``baselines.components.aggregate.local_avg`` via ``PatchCore.aggregate`` |
| sec. III-A | layer3 upsampled to layer2's grid, concatenated | ``baselines.components.aggregate.concat_layers`` via ``PatchCore.combine`` |
| sec. III-A, eq. 2 | coreset memory bank (greedy k-center on a random projection) | ``baselines.components.coreset.greedy_coreset`` in ``PatchCore.fit`` |
| sec. III-A, eq. 3 | patch score = distance to the nearest bank vector, image score = max | ``baselines.components.nn_search.NearestNeighbors`` in ``PatchCore.predict`` (PatchCore eq. 7 reweighting: ``PatchCore._reweight``) |
| sec. III-B | layer3 branch: 3x3 max pooling, then self-attention | ``SAPatchCore.aggregate`` (``sa_pooling``, ``sa_layers`` for Tables 7-8) |
| sec. III-B, eq. 4 | softmax(X X^T / sqrt(C)) X over the positions | ``sa_patchcore.attention.token_attention`` (``SAPatchCoreEq4``) |
| official code (run.py) | the attention as run: per channel, unscaled | ``sa_patchcore.attention.channel_attention`` (``SAPatchCore``) |
| sec. V-B, Tables 7-8 | ablations: layers into the attention, pooling before it | ``sa_patchcore-*`` variants, ``bench run --suite ablations`` |
| not in the paper (this project's) | PatchCore + SA-PatchCore banks on one backbone pass, fused after held-out fold calibration | ``sa_patchcore.dual.DualPatchCore`` (``sa_patchcore_dual``, ``bench run --suite dual``) |
"""

from __future__ import annotations

from sa_patchcore.dual import DualPatchCore
from sa_patchcore.model import SAPatchCore, SAPatchCoreEq4

__all__ = ["DualPatchCore", "SAPatchCore", "SAPatchCoreEq4"]
