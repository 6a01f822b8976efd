"""What `cadsd validate` notes without failing: what the loaders will do to some images, and
what a score will average over.

* An EXIF orientation tag other than 1: every loader here reads the stored pixels as they are
  (the official loaders' ``PIL.Image.open(p).convert("RGB")``, no ``exif_transpose``), so masks
  always match; a viewer shows the image turned. One note per file.
* A side under :data:`MIN_SIDE` pixels, or a side more than :data:`MAX_ASPECT` times the other:
  loaders stretch every image to a method's square input, so these are distorted. One note per
  distinct size and reason.
* An anomaly group (local, co-occurrence) missing some of its types in the test split: its
  group score averages the types present only (:func:`cadsd.format.layout.missing_types`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from cadsd.checking.findings import Problem
from cadsd.format.layout import CATEGORIES, missing_types

#: Below this many pixels on a side an image is noted as tiny.
MIN_SIDE = 32
#: Above this ratio of the long side to the short one an image is noted as extreme.
MAX_ASPECT = 4.0
#: The EXIF tag that says how a viewer should turn the stored pixels (1: as stored).
ORIENTATION_TAG = 0x0112
_TURN = {2: "mirrored", 3: "rotated 180°", 4: "flipped", 5: "transposed",
         6: "rotated 90°", 7: "transversed", 8: "rotated 270°"}
_STRETCH = ("loaders stretch each image to a method's square input (e.g. 256x256), so it "
            "will be stretched and distorted")


def orientation_notes(images: Iterable[tuple[str, int | None]]) -> list[Problem]:
    """One note per ``(path, EXIF orientation)`` whose tag is set and not 1."""
    return [Problem("exif_orientation", path,
                    f"EXIF orientation {tag} ({_TURN.get(tag, 'unknown')} in a viewer): "
                    "loaders read the stored pixels as they are, as the official loader does, "
                    "so it is used as stored, not turned, and its mask matches the stored pixels")
            for path, tag in images if tag is not None and tag != 1]


def size_notes(images: Iterable[tuple[str, tuple[int, int]]]) -> list[Problem]:
    """Per distinct ``(width, height)``, one note if it is tiny and one if it is extreme, each
    naming a file of that size."""
    by_size: dict[tuple[int, int], list[str]] = defaultdict(list)
    for path, size in images:
        by_size[size].append(path)
    out = []
    for (w, h), paths in sorted(by_size.items()):
        count = f"{len(paths)} image(s) of {w}x{h}"
        if min(w, h) < MIN_SIDE:
            out.append(Problem("small_image", paths[0],
                               f"{count}, smaller than {MIN_SIDE} px on a side: {_STRETCH}"))
        if max(w, h) > MAX_ASPECT * min(w, h):
            out.append(Problem("aspect_ratio", paths[0],
                               f"{count}, one side more than {MAX_ASPECT:g}x the other: "
                               f"{_STRETCH}"))
    return out


def group_notes(test_categories: Iterable[str]) -> list[Problem]:
    """One note per anomaly group missing some of its types among ``test_categories``."""
    have = set(test_categories)
    out = []
    for group, gone in missing_types(have).items():
        kept = [c.name for c in CATEGORIES if c.group == group and c.name in have]
        what = f"averages {', '.join(kept)} only" if kept else "cannot be computed"
        out.append(Problem("missing_type", "test", f"group {group} has no {', '.join(gone)} "
                                                   f"images: its group score {what}"))
    return out
