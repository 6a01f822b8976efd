"""`bench predict`: score image files with a model saved by `bench run --save-models`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def score_images(model_path: str | Path, images: list[Path], device: str = "cpu",
                 trusted: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Load the model file, preprocess each image as the benchmark does for that method (its
    ``input_spec``) and return ``[{"image", "score"}]`` in input order. The file's class must
    be a built-in method's, an installed entry point's or one of ``trusted`` (import paths the
    user names): nothing else is imported. Unreadable images raise ``InputError``."""
    from baselines.base import Detector
    from baselines.preprocess import image_to_tensor
    from leaderboard.methods.select import saved_classes

    model = Detector.load(Path(model_path), device=device, classes=saved_classes(trusted))
    rows = []
    with torch.no_grad():
        for path in images:
            x = image_to_tensor(path, model.input_spec).unsqueeze(0)
            rows.append({"image": str(path), "score": float(model.predict(x).scores[0])})
    return rows
