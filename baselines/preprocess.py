"""Image preprocessing: each method declares its input (:class:`InputSpec`) and images are
decoded to it once. The default is the official SA-PatchCore code's: resize to 256x256
(antialiased), centre crop 224, float RGB in [0, 1]. Normalisation (ImageNet mean/std, [-1, 1],
a training mean image) is the detector's own business: it is named in the spec for records.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from baselines.errors import InputError

if TYPE_CHECKING:  # torch is imported where tensors are made: reading records needs no torch
    import torch

LOAD_SIZE = 256
INPUT_SIZE = 224
RESAMPLE = {
    "lanczos": Image.Resampling.LANCZOS,  # torchvision Resize(..., Image.ANTIALIAS): PatchCore code
    "bicubic": Image.Resampling.BICUBIC,  # PIL Image.resize's default for RGB: PatchSVDD code
    "bilinear": Image.Resampling.BILINEAR,  # torchvision Resize's default on PIL: CS-Flow code
    "nearest": Image.Resampling.NEAREST,
}


@dataclass(frozen=True)
class InputSpec:
    """How a method wants its images: a square resize, an optional centre crop, the PIL filter
    of the resize, and (for the record) the normalisation the detector applies itself."""

    resize: int = LOAD_SIZE
    crop: int | None = INPUT_SIZE
    resample: str = "lanczos"
    normalization: str = "the backbone's"

    def __post_init__(self) -> None:
        if self.resample not in RESAMPLE:
            raise InputError(f"unknown resample {self.resample!r}; use one of {', '.join(RESAMPLE)}")
        if self.resize < 1 or (self.crop is not None and not 0 < self.crop <= self.resize):
            raise InputError(f"bad input size: resize {self.resize}, crop {self.crop}")

    @property
    def size(self) -> int:
        """Side of the images the detector gets."""
        return self.crop or self.resize

    @property
    def decode_key(self) -> tuple[int, int | None, str]:
        """What decoding depends on (two specs with the same key share decoded images)."""
        return (self.resize, self.crop, self.resample)

    def describe(self) -> str:
        crop = f", centre crop {self.crop}" if self.crop and self.crop != self.resize else ""
        return f"resize {self.resize} ({self.resample}){crop}; normalisation: {self.normalization}"


#: the official SA-PatchCore / PatchCore input
DEFAULT_INPUT = InputSpec()


def open_rgb(src: str | Path | bytes | Image.Image, name: str | None = None) -> Image.Image:
    """Decode ``src`` (path, bytes or PIL image) to 8-bit RGB by the one rule of
    :mod:`cadsd.format.images` (16-bit greyscale scaled, not clipped); a corrupt, empty or
    unreadable image raises InputError naming ``name`` (default: the path)."""
    from cadsd.format.images import to_rgb

    label = name or ("<bytes>" if isinstance(src, bytes) else str(src))
    if isinstance(src, Image.Image):
        img = src
    else:
        if isinstance(src, bytes) and not src:
            raise InputError(f"cannot decode image {label}: zero-byte file")
        try:
            img = Image.open(io.BytesIO(src) if isinstance(src, bytes) else src)
            img.load()
        except (OSError, ValueError, SyntaxError) as err:
            why = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", str(err))
            raise InputError(f"cannot decode image {label}: {why}") from None
    try:
        return to_rgb(img)
    except ValueError as err:
        raise InputError(f"cannot read image {label}: {err}") from None


def _resize_crop(img: Image.Image, spec: InputSpec, resample: int) -> np.ndarray:
    img = img.resize((spec.resize, spec.resize), resample=resample)
    arr = np.asarray(img)
    if spec.crop is None or spec.crop == spec.resize:
        return arr
    top = round((spec.resize - spec.crop) / 2.0)  # torchvision CenterCrop's rounding
    return arr[top : top + spec.crop, top : top + spec.crop]


def image_to_uint8(src: str | Path | bytes | Image.Image, spec: InputSpec = DEFAULT_INPUT,
                   name: str | None = None) -> torch.Tensor:
    """One image -> uint8 tensor ``(3, size, size)`` as ``spec`` wants it (``name``: what an
    error calls it)."""
    arr = _resize_crop(open_rgb(src, name), spec, RESAMPLE[spec.resample])
    import torch

    return torch.from_numpy(np.array(arr)).permute(2, 0, 1).contiguous()  # a writable copy


def image_to_tensor(src: str | Path | bytes | Image.Image, spec: InputSpec = DEFAULT_INPUT) -> torch.Tensor:
    """One image -> float tensor ``(3, size, size)`` in [0, 1] as ``spec`` wants it."""
    return image_to_uint8(src, spec).float().div_(255.0)


def mask_to_tensor(src: str | Path | bytes | Image.Image, spec: InputSpec = DEFAULT_INPUT,
                   name: str | None = None) -> torch.Tensor:
    """A ground-truth mask -> bool tensor ``(size, size)`` (nearest resampling), binarised by
    the one mask rule (:func:`cadsd.format.images.binary_mask`: above mid-grey)."""
    from cadsd.format.images import MASK_THRESHOLD, to_8bit

    img = src if isinstance(src, Image.Image) else open_rgb(src, name)
    arr = _resize_crop(to_8bit(img).convert("L"), spec, Image.Resampling.NEAREST)
    import torch

    return torch.from_numpy(np.ascontiguousarray(arr) > MASK_THRESHOLD)
