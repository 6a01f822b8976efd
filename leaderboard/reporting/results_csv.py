"""``results.csv``: one row per cell, numbers at full precision (AUROC as fractions).

A pure function of the result records, like the markdown tables: ``pandas.json_normalize`` of
each record's summary (:meth:`~leaderboard.records.schema.Record.summary_dict`: the record
without its per-image scores and training log), so a column is a record field's dotted path
(``metrics.image_auroc.category.lacking.ci.low``) and a new field gets a column by itself. Lists
(a memory bank's shape, load averages) are written as JSON. The operating points
(:mod:`.comparisons`: TPR at FPR 1% / 5%, F1-max, AUPR, overall, per type and per group, with
CIs) are computed from the per-image scores and added as ``operating.<subset>.<metric>``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pandas as pd

from leaderboard.records.schema import Record
from leaderboard.reporting.comparisons import Draws, operating_columns


def results_frame(records: Sequence[Record], draws: Draws | None = None) -> pd.DataFrame:
    """One row per cell, one column per (dotted) record field, then the operating points."""
    frame = pd.json_normalize([r.summary_dict() for r in records], sep=".")
    frame = frame.map(lambda v: json.dumps(v) if isinstance(v, list) else v)
    extra = pd.DataFrame(operating_columns(records, draws), index=frame.index)
    return pd.concat([frame, extra], axis=1) if len(extra.columns) else frame


def render_csv(records: Sequence[Record], draws: Draws | None = None) -> str:
    """``results.csv``: one row per cell; numbers at full precision."""
    if not records:
        return ""
    return results_frame(records, draws).to_csv(index=False, lineterminator="\n")
