"""The ``datasets`` Image feature with the toolkit's one orientation rule.

The rule, everywhere (``cadsd.load()``, ``bench``, ``cadsd validate``): an image's pixels in
their stored order, as the official loaders read them (``PIL.Image.open(p).convert("RGB")``),
never turned by an EXIF orientation tag, so a mask always matches its image. ``datasets.Image``
turns tagged images (``ImageOps.exif_transpose`` in its ``decode_example``) and masks never
carry the tag, so its rows could pair a turned image with an unturned mask.

:class:`StoredImage` decodes the stored bytes as they are; the bytes themselves are never
touched (no re-encoding). It serialises as a plain ``Image`` (same ``_type``), so saved
datasets and Hub copies stay readable by any ``datasets``; :func:`cadsd.format.hf.load` puts it
back on every image column it returns.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import datasets


@dataclass(eq=False)
class StoredImage(datasets.Image):
    """``datasets.Image`` decoding pixels in stored order (no EXIF transpose). Equal to an
    ``Image`` of the same settings: the same column type, stored the same way."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, datasets.Image):
            return NotImplemented
        return (self.mode, self.decode) == (other.mode, other.decode)

    __hash__ = None  # mutable, as datasets.Image

    def decode_example(self, value: Any, token_per_repo_id: dict | None = None) -> Any:
        if not (self.decode and isinstance(value, dict)):
            return super().decode_example(value, token_per_repo_id)
        data, path = value.get("bytes"), value.get("path")
        if data is None and not (path and os.path.isfile(path)):
            # a remote file (streaming): fetched by datasets, which turns tagged images
            return super().decode_example(value, token_per_repo_id)
        from PIL import Image

        image = Image.open(io.BytesIO(data) if data is not None else path)
        image.load()  # reads the file now ("too many open files" otherwise)
        if self.mode and self.mode != image.mode:
            image = image.convert(self.mode)
        return image


def stored_orientation(dd: datasets.DatasetDict) -> datasets.DatasetDict:
    """``dd`` with every image column decoding by :class:`StoredImage` (the same bytes)."""
    out = {}
    for split, ds in dd.items():
        for name, feature in ds.features.items():
            if isinstance(feature, datasets.Image) and not isinstance(feature, StoredImage):
                ds = ds.cast_column(name, StoredImage(mode=feature.mode, decode=feature.decode))
        out[split] = ds
    return datasets.DatasetDict(out)
