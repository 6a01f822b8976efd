"""Image preprocessing of the official SA-PatchCore code: resize to 256x256 (antialiased),
centre crop 224, float RGB in [0, 1]. The backbone's normalisation is applied by the detector.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from baselines.errors import InputError

LOAD_SIZE = 256
INPUT_SIZE = 224


def open_rgb(src: str | Path | bytes | Image.Image) -> Image.Image:
    """Decode ``src`` (path, bytes or PIL image) to RGB; a corrupt image raises InputError."""
    if isinstance(src, Image.Image):
        img = src
    else:
        try:
            img = Image.open(io.BytesIO(src) if isinstance(src, bytes) else src)
            img.load()
        except (OSError, ValueError, SyntaxError) as err:
            name = "<bytes>" if isinstance(src, bytes) else str(src)
            raise InputError(f"cannot decode image {name}: {err}") from None
    return img.convert("RGB") if img.mode != "RGB" else img


def _resize_crop(img: Image.Image, load_size: int, input_size: int, resample: int) -> np.ndarray:
    img = img.resize((load_size, load_size), resample=resample)
    top = round((load_size - input_size) / 2.0)  # torchvision CenterCrop's rounding
    return np.asarray(img)[top : top + input_size, top : top + input_size]


def image_to_tensor(
    src: str | Path | bytes | Image.Image,
    load_size: int = LOAD_SIZE,
    input_size: int = INPUT_SIZE,
) -> torch.Tensor:
    """One image -> float tensor ``(3, input_size, input_size)`` in [0, 1]."""
    arr = _resize_crop(open_rgb(src), load_size, input_size, Image.Resampling.LANCZOS)
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float().div_(255.0)


def mask_to_tensor(
    src: str | Path | bytes | Image.Image,
    load_size: int = LOAD_SIZE,
    input_size: int = INPUT_SIZE,
) -> torch.Tensor:
    """A ground-truth mask -> bool tensor ``(input_size, input_size)`` (nearest resampling)."""
    img = src if isinstance(src, Image.Image) else open_rgb(src)
    arr = _resize_crop(img.convert("L"), load_size, input_size, Image.Resampling.NEAREST)
    return torch.from_numpy(np.ascontiguousarray(arr) > 127)
