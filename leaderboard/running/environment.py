"""What a timing depends on: code version, libraries, device, threads, memory and machine load.

On a 2-core machine torch slows ~10x when another process holds a core (DESIGN.md, "Measured on
this machine"), so each cell records how busy the rest of the machine was while it ran.
"""

from __future__ import annotations

import os
import platform
import subprocess
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import torch

from leaderboard.records.schema import Environment, Memory

if TYPE_CHECKING:
    from typing_extensions import Self

LIBRARIES = ("cadsd-bench", "torch", "torchvision", "numpy", "faiss-cpu", "scikit-learn",
             "datasets", "safetensors", "pillow")


def git_sha(where: Path | None = None) -> str:
    """The checkout's commit (``+dirty`` with uncommitted changes), or ``"unknown"``.

    Only when this file is tracked by that checkout: an installed copy inside some other
    repository (a venv in a project folder) must not report that project's commit.
    """
    here = Path(__file__).resolve()
    cwd = where or here.parent

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=5, check=False)

    try:
        sha = git("rev-parse", "HEAD")
        tracked = git("ls-files", "--error-unmatch", str(here))
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if sha.returncode != 0 or tracked.returncode != 0 or not sha.stdout.strip():
        return "unknown"
    return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape results and timings."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(device: str) -> Environment:
    """Where the cell runs and with what code (``started_at`` / ``finished_at`` left for the
    runner)."""
    name = (torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda")
            else cpu_name())
    return Environment(
        device=device, git_sha=git_sha(), versions=library_versions(), host=platform.node(),
        device_name=name, threads=torch.get_num_threads(), cpu_count=os.cpu_count(),
        platform=platform.platform(),
        total_memory_mb=round(psutil.virtual_memory().total / 2**20),
    )


def gemm_gflops(device: str = "cpu", n: int = 1024, repeats: int = 5) -> float:
    """This machine's float32 matrix-multiply rate (GFLOP/s, best of ``repeats`` n x n
    products): the yardstick for training costs and step timings."""
    dev = torch.device(device)
    if dev.type == "cuda":
        n *= 4
    a = torch.randn(n, n, device=dev)
    b = torch.randn(n, n, device=dev)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def synchronize(device: str) -> None:
    """Wait for queued GPU work so wall-clock timings include it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int | None:
    """This process's peak resident size so far (Linux VmHWM), else None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class Monitor:
    """Peak RSS of this process and the machine's other CPU use while a cell runs.

    Peak RSS is the kernel's exact high-water mark (VmHWM, reset at the start of the cell) on
    Linux; elsewhere a thread samples RSS every ``interval_s``.

    ``other_cpu_cores``: average number of cores busy with other processes (system busy time
    minus our own CPU time, over wall time). Above ~0.25 on a 2-core machine timings are suspect.
    """

    def __init__(self, device: str = "cpu", interval_s: float = 0.01) -> None:
        self.device = device
        self.interval_s = interval_s
        self.proc = psutil.Process()
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> Self:
        self.rss_before = self.proc.memory_info().rss
        self.peak_rss = self.rss_before
        self.load_before = os.getloadavg()
        self._cpu0 = psutil.cpu_times()
        self._own0 = self.proc.cpu_times()
        self._t0 = time.perf_counter()
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(torch.device(self.device))
        self._kernel_peak = _reset_peak_rss() and peak_rss_bytes() is not None
        if not self._kernel_peak:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)
        if self._kernel_peak:
            self.peak_rss = max(self.peak_rss, peak_rss_bytes() or 0)
        wall = max(time.perf_counter() - self._t0, 1e-9)
        cpu1, own1 = psutil.cpu_times(), self.proc.cpu_times()
        busy = sum(getattr(cpu1, k) - getattr(self._cpu0, k) for k in ("user", "system", "nice"))
        own = (own1.user - self._own0.user) + (own1.system - self._own0.system)
        self.other_cpu_cores = max(busy - own, 0.0) / wall
        self.load_after = os.getloadavg()

    def summary(self) -> Memory:
        """The record's ``memory`` block (MiB, cores)."""
        gpu = None
        if self.device.startswith("cuda"):
            gpu = round(torch.cuda.max_memory_allocated(torch.device(self.device)) / 2**20, 1)
        return Memory(
            peak_rss_mb=round(self.peak_rss / 2**20, 1),
            rss_before_mb=round(self.rss_before / 2**20, 1),
            peak_rss_source="VmHWM" if self._kernel_peak else f"sampled {self.interval_s}s",
            load_avg_before=[round(x, 2) for x in self.load_before],
            load_avg_after=[round(x, 2) for x in self.load_after],
            other_cpu_cores=round(self.other_cpu_cores, 3),
            peak_gpu_mb=gpu,
        )
