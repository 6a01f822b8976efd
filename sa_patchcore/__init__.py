"""SA-PatchCore: PatchCore with self-attention on the layer3 branch (Ishida et al. 2023)."""

from __future__ import annotations

from sa_patchcore.model import SAPatchCore, SAPatchCoreEq4

__all__ = ["SAPatchCore", "SAPatchCoreEq4"]
