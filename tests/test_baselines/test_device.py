"""baselines.device: the one device resolver behind `bench run --device` and every detector."""

from __future__ import annotations

import pytest
import torch

from baselines.device import DeviceError, resolve_device
from baselines.errors import DetectorError


def test_auto_cpu_and_bad_names() -> None:
    expect = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expect and resolve_device().type == expect
    assert resolve_device("cpu") == torch.device("cpu") == resolve_device(torch.device("cpu"))
    with pytest.raises(DeviceError, match="unknown device 'gpu0'; use auto, cpu or cuda"):
        resolve_device("gpu0")
    with pytest.raises(DeviceError, match="unsupported device 'meta'"):
        resolve_device("meta")
    assert issubclass(DeviceError, DetectorError)  # the CLIs print it as one line, exit 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU machine")
def test_cuda_without_a_gpu_names_the_fix() -> None:
    for name in ("cuda", "cuda:1"):
        with pytest.raises(DeviceError, match=f"'{name}': no CUDA device is available here; use cpu"):
            resolve_device(name)
