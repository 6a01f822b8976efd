"""The one place a device name becomes a ``torch.device``: ``bench run --device`` and every
detector's ``device`` setting go through :func:`resolve_device`."""

from __future__ import annotations

import torch

from baselines.errors import DetectorError


class DeviceError(DetectorError):
    """An unknown device, or CUDA asked for where there is no GPU (a command-line mistake of
    ``--device``: exit code 2)."""

    exit_code = 2


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when a GPU is available, else ``cpu``; ``cpu``, ``cuda`` and
    ``cuda:N`` as given. An unknown name or CUDA without a GPU raises :class:`DeviceError`."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise DeviceError(f"unknown device {str(device)!r}; use auto, cpu or cuda") from None
    if dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"unsupported device {str(device)!r}; use auto, cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {str(device)!r}: no CUDA device is available here; use cpu")
    return dev
