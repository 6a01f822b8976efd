"""MVTec LOCO AD's per-defect ground truth: ``defects_config.json`` and each image's regions.

LOCO stores one mask file per defect region (``ground_truth/<type>/<image id>/000.png``,
``001.png``, ...), each holding one grey value, its ``pixel_value``, which names the defect in
the category's ``defects_config.json``: a JSON list of objects ``{"defect_name",
"pixel_value", "saturation_threshold", "relative_saturation"}``. The sPRO metric (Bergmann
et al., IJCV 2022) scores every region on its own, saturating at that threshold, so the
dataset keeps the regions (``regions`` column) beside their union (``mask``).

**Saturation as a fraction of the region's area**, so that it survives resizing (the harness
resizes masks with the images):

* ``relative_saturation`` true: the fraction is ``saturation_threshold`` itself, in (0, 1];
* false: ``saturation_threshold`` is a pixel count at the ORIGINAL resolution, so the fraction
  is ``saturation_threshold / area`` (the region's pixel count in its original mask), at most
  1 (MVTec's evaluation code caps an absolute threshold at the region's area as well).

At the anomaly maps' resolution a region then saturates once ``fraction x (its pixel count
there)`` of its pixels are flagged. (MVTec's code applies the rule at the original resolution
and floors a relative threshold to whole pixels; a fraction is never floored here.)
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cadsd.errors import LayoutError

CONFIG_NAME = "defects_config.json"


def regions_feature() -> list:
    """The ``regions`` column: ``[{"mask": Image, "defect": string, "saturation": float64}]``,
    one entry per mask file of an anomalous image (a list in the datasets library's notation;
    normal images have none)."""
    from datasets import Image, Value

    return [{"mask": Image(), "defect": Value("string"), "saturation": Value("float64")}]


@dataclass(frozen=True)
class DefectType:
    """One entry of ``defects_config.json``."""

    name: str
    pixel_value: int
    saturation_threshold: float
    relative: bool

    @classmethod
    def from_entry(cls, entry: object) -> DefectType:
        """Parse and check one entry (a TypeError or ValueError saying what is wrong)."""
        if not isinstance(entry, Mapping):
            raise TypeError(f"an entry is {type(entry).__name__}, not an object")
        missing = [k for k in ("defect_name", "pixel_value", "saturation_threshold",
                               "relative_saturation") if k not in entry]
        if missing:
            raise ValueError(f"an entry lacks {', '.join(missing)}")
        name, value = entry["defect_name"], entry["pixel_value"]
        threshold, relative = entry["saturation_threshold"], entry["relative_saturation"]
        if not isinstance(name, str) or not name:
            raise ValueError(f"defect_name {name!r} is not a non-empty string")
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 255:
            raise ValueError(f"{name}: pixel_value {value!r} is not an integer in 1..255")
        if not isinstance(relative, bool):
            raise TypeError(f"{name}: relative_saturation {relative!r} is not true/false")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise TypeError(f"{name}: saturation_threshold {threshold!r} is not a number")
        if relative and not 0 < threshold <= 1:
            raise ValueError(f"{name}: a relative saturation_threshold lies in (0, 1], "
                             f"got {threshold}")
        if not relative and threshold < 1:
            raise ValueError(f"{name}: an absolute saturation_threshold is a pixel count "
                             f">= 1, got {threshold}")
        return cls(name=name, pixel_value=value, saturation_threshold=float(threshold),
                   relative=relative)


def saturation_fraction(entry: Mapping | DefectType, area: int) -> float:
    """The saturation threshold of a region as a fraction of its area, in (0, 1] (see the
    module's docstring); ``area`` is the region's pixel count at the original resolution."""
    defect = entry if isinstance(entry, DefectType) else DefectType.from_entry(entry)
    if area < 1:
        raise ValueError(f"{defect.name}: a region needs at least one pixel, got {area}")
    if defect.relative:
        return defect.saturation_threshold
    return min(defect.saturation_threshold / area, 1.0)


def read_defects_config(folder: Path) -> dict[int, DefectType]:
    """A LOCO category's ``defects_config.json`` by pixel value; LayoutError naming the file
    when it is missing or malformed."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise LayoutError(f"{path} is missing: MVTec LOCO AD's per-defect masks need their "
                          f"category's {CONFIG_NAME} (it comes with the dataset's archive)")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LayoutError(f"{path} is not valid JSON ({err}); restore it from the dataset's "
                          "archive") from err
    if not isinstance(entries, list) or not entries:
        raise LayoutError(f"{path}: expected a non-empty JSON list of defect entries")
    config: dict[int, DefectType] = {}
    for i, entry in enumerate(entries):
        try:
            defect = DefectType.from_entry(entry)
        except (TypeError, ValueError) as err:
            raise LayoutError(f"{path}: entry {i}: {err}") from err
        if defect.pixel_value in config:
            raise LayoutError(f"{path}: pixel_value {defect.pixel_value} is given twice "
                              f"({config[defect.pixel_value].name}, {defect.name})")
        config[defect.pixel_value] = defect
    return config


def region(path: Path, config: Mapping[int, DefectType], config_path: Path) -> dict:
    """One mask file as a ``regions`` entry: its bytes as stored, defect name, saturation
    fraction. LayoutError naming the file when it holds no single grey value of the config."""
    import numpy as np
    from PIL import Image

    from cadsd.format.images import MASK_THRESHOLD, to_8bit

    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as img:
            grey = np.asarray(to_8bit(img).convert("L"))
    except OSError as err:
        raise LayoutError(f"{path} is not a readable mask image ({err})") from err
    values = np.unique(grey[grey > 0])
    if values.size != 1:
        found = "no defect pixels" if values.size == 0 else (
            f"{values.size} grey values ({', '.join(str(v) for v in values[:5])}...)")
        raise LayoutError(f"{path}: a LOCO mask holds one defect's pixel value, found {found}")
    value = int(values[0])
    if value not in config:
        raise LayoutError(f"{path}: pixel value {value} is not in {config_path} (its pixel "
                          f"values: {', '.join(str(v) for v in sorted(config))})")
    if value <= MASK_THRESHOLD:
        raise LayoutError(f"{path}: pixel value {value} is not above mid-grey "
                          f"({MASK_THRESHOLD}), so the union mask would not count it")
    defect = config[value]
    area = int((grey == value).sum())
    return {"mask": {"bytes": data, "path": None}, "defect": defect.name,
            "saturation": saturation_fraction(defect, area)}
