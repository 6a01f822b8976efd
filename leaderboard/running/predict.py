"""`bench predict`: score image files with a model saved by `bench run --save-models`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def model_file(model: str | Path, token: str | None = None) -> Path:
    """A local model file: ``model`` itself, or ``hf:ORG/NAME[@REVISION]``'s
    ``model.safetensors`` downloaded into the Hub cache."""
    from cadsd.format.hf import HF_PREFIX

    if not str(model).startswith(HF_PREFIX):
        return Path(model)
    from huggingface_hub import hf_hub_download

    from cadsd.publishing.push import client_errors, describe_error, resolve_token, scrub
    from leaderboard.errors import BenchError
    from leaderboard.hub.push import MODEL_FILE, split_hf

    repo_id, revision = split_hf(str(model), "--model")
    token = resolve_token(token)
    try:
        return Path(hf_hub_download(repo_id, MODEL_FILE, revision=revision, token=token or None))
    except client_errors() as err:
        raise BenchError(f"cannot download {model} ({scrub(describe_error(err), token)}): "
                         "check the model repo id (pushed with `bench push --models`), your "
                         "network, and a token for a private repo") from None


def score_images(model_path: str | Path, images: list[Path], device: str = "cpu"
                 ) -> list[dict[str, Any]]:
    """Load the model (a file or ``hf:ORG/NAME``), preprocess each image as the benchmark does
    for that method (its ``input_spec``) and return ``[{"image", "score"}]`` in input order.
    Unreadable images raise ``InputError``."""
    from baselines.base import Detector
    from baselines.preprocess import image_to_tensor

    model = Detector.load(model_file(model_path), device=device)
    rows = []
    with torch.no_grad():
        for path in images:
            x = image_to_tensor(path, model.input_spec).unsqueeze(0)
            rows.append({"image": str(path), "score": float(model.predict(x).scores[0])})
    return rows
