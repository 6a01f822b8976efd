"""Procedural synthetic CAD-SD: the same product, layout and counts as the paper's dataset.

A threaded rod with a hex nut on one end, rendered with a fixed key light, in the official folder
layout plus pixel masks (``ground_truth/``). It lets the benchmark run offline; ``audit`` checks
that no trivial global statistic gives an anomaly type away.
"""

from __future__ import annotations

from cadsd.synth.audit import AuditRow, audit, print_audit, violations
from cadsd.synth.dataset import COUNTS, ensure_synthetic, generate, is_complete, render_sample

__all__ = [
    "COUNTS",
    "AuditRow",
    "audit",
    "ensure_synthetic",
    "generate",
    "is_complete",
    "print_audit",
    "render_sample",
    "violations",
]
