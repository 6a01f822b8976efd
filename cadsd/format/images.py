"""One rule for image modes and one for masks, shared by ``cadsd validate``, the dataset
adapters and every loader (``bench run``).

8-bit modes PIL converts to RGB without losing meaning (L, P, RGBA, CMYK, ...) are converted.
16-bit greyscale (``I;16`` and its byte orders, as a 16-bit PNG or TIFF opens) is scaled to 8 bits
(``round(v / 257)``: 0 -> 0, 65535 -> 255), never clipped: PIL's own ``convert`` clips at 255,
which turns most of a 16-bit image white and changes every score. A 32-bit integer image holds 16-bit
PNG data only when it is a PNG (older Pillow opened those as ``I``); a 32-bit integer or float
image of any other kind has no known range and is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

#: Modes PIL converts to RGB without losing meaning (a warning in validate, not a failure).
RGB_CONVERTIBLE: frozenset[str] = frozenset(
    {"1", "L", "LA", "La", "P", "PA", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}
)
#: 16-bit greyscale modes, scaled to 8 bits.
SIXTEEN_BIT: frozenset[str] = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def is_16bit(mode: str, fmt: str | None) -> bool:
    """A 16-bit greyscale image (a 32-bit ``I`` counts when it is a PNG: at most 16 bits)."""
    return mode in SIXTEEN_BIT or (mode == "I" and fmt == "PNG")


def mode_problem(mode: str, fmt: str | None) -> str | None:
    """Why an image of this mode cannot be read (None: RGB, convertible or 16-bit)."""
    if mode == "RGB" or mode in RGB_CONVERTIBLE or is_16bit(mode, fmt):
        return None
    return (f"mode {mode} ({fmt or 'unknown format'}) has no known range, so it cannot become "
            "8-bit RGB without guessing; convert it to 8 bits (e.g. RGB PNG) first")


def to_8bit(img: Image.Image) -> Image.Image:
    """``img`` with 16-bit greyscale scaled to 8-bit ``L``; other modes unchanged."""
    import numpy as np
    from PIL import Image

    if not is_16bit(img.mode, img.format):
        return img
    values = np.asarray(img).astype(np.float64)
    return Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8), mode="L")


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as 8-bit RGB by the rule above; raises ValueError for a mode with no known range."""
    problem = mode_problem(img.mode, img.format)
    if problem is not None:
        raise ValueError(problem)
    img = to_8bit(img)
    return img if img.mode == "RGB" else img.convert("RGB")


#: One rule for every mask (a single file or a union): a pixel is defective above mid-grey.
#: Exact on the published 0/255 masks (and LOCO's per-type values 250-255), robust to the
#: grey seams a lossy or resampled mask picks up.
MASK_THRESHOLD = 127


def binary_mask(img: Image.Image) -> object:
    """A mask image (PIL) as a bool array by :data:`MASK_THRESHOLD` (grey level, 8 bits)."""
    import numpy as np

    return np.asarray(to_8bit(img).convert("L")) > MASK_THRESHOLD
