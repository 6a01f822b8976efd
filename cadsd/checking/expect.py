"""``--expect KEY=N``: the counts `cadsd validate` compares with, the paper's with overrides."""

from __future__ import annotations

import re

from cadsd.errors import CadsdError
from cadsd.format.layout import BY_NAME, CATEGORY_NAMES, PAPER_COUNTS, SPLITS


def _expect_targets(key: str) -> list[tuple[str, str]]:
    """Which (split, category) pairs an ``--expect`` key names (``lacking``, ``train/good``...)."""
    split, _, cat = key.strip().lower().rpartition("/")
    # Accept folder names too: "4_lacking", "3_over-coupling".
    cat = re.sub(r"^\d_", "", cat).replace("-", "_")
    valid = ", ".join([*CATEGORY_NAMES, *(f"{s}/{c}" for s, c in PAPER_COUNTS)])
    if cat not in BY_NAME or (split and split not in SPLITS):
        raise CadsdError(f"unknown --expect key {key!r}; use one of: {valid}")
    targets = [(s, cat) for s in ((split,) if split else SPLITS) if (s, cat) in PAPER_COUNTS]
    if not targets:
        raise CadsdError(f"--expect {key!r}: {split}/ holds no {cat!r} images; use one of: {valid}")
    return targets


def expected_counts(expect: dict[str, int] | None = None) -> dict[tuple[str, str], int]:
    """The paper's counts with overrides; a bare category name applies to every split holding it
    and a ``split/category`` key wins over it."""
    out = dict(PAPER_COUNTS)
    # Bare category keys first, so `train/good=400` wins over `good=10` in any order.
    for key, value in sorted((expect or {}).items(), key=lambda kv: "/" in kv[0]):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CadsdError(f"--expect {key}={value!r}: the count must be a whole number >= 0")
        for target in _expect_targets(key):
            if target == ("train", "good") and value == 0:
                raise CadsdError(f"--expect {key}=0: an empty training split is never usable "
                                 "(every method fits on the normal training images)")
            out[target] = value
    return out


def parse_expect(items: tuple[str, ...] | list[str]) -> dict[str, int]:
    """Parse CLI ``KEY=N`` items (``lacking=44``, ``train/good=400``) into a dict."""
    out: dict[str, int] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise CadsdError(f"--expect {item!r}: write KEY=N, e.g. --expect lacking=44")
        out[key.strip()] = int(value)
    return out
