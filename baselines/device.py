"""The one place a device name becomes a ``torch.device``: ``bench run --device`` and every
detector's ``device`` setting go through :func:`resolve_device`; and what a device runs
natively (:func:`native_bf16`)."""

from __future__ import annotations

import functools

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


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 convolutions natively: a CPU with AVX512-BF16 or AMX
    (oneDNN's check, asked once per process). Elsewhere bf16 on a CPU is emulated and slower
    than fp32; CUDA answers False (the ``auto`` precision settings keep fp32 there)."""
    return device.type == "cpu" and _cpu_bf16()


@functools.cache
def _cpu_bf16() -> bool:
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check and check())
