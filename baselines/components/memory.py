"""Give freed heap memory back to the operating system while a detector fits.

The backbone's per-batch temporaries (tens of MB each) come from glibc's heap once its dynamic
mmap threshold has risen, and with two or more threads part of each batch's freed memory is not
reused by the next one: PatchCore / WRN50-2 at paper counts grew by ~60 MB a batch where the
patch chunk it keeps is 38.5 MB, and peaked at 3.4-4.6 GB from run to run. ``malloc_trim``
returns the free pages and keeps the growth to what fit keeps.

A trim is not free: the next batches fault their temporaries back in. Trimming after every
MobileNetV2 batch tripled the fit's page faults (0.6M -> 2.1M) and cost 1-2 s of a 7 s forward
pass. So :class:`HeapTrimmer` trims only once the resident size has grown by ``slack`` bytes
since the last trim: with 256 MB, the WRN50-2 fit above trims 10 times instead of 51 and peaks at
3.30 GB (3.27 GB trimming after every batch).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
from collections.abc import Callable

DEFAULT_SLACK = 256 << 20  # bytes of growth between trims


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only (musl has none)
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """``malloc_trim(0)``: return free heap pages to the OS. False where it is not available."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def resident_bytes() -> int | None:
    """This process's resident set size now (Linux ``/proc/self/statm``), or None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class HeapTrimmer:
    """``malloc_trim`` whenever the resident size has grown by ``slack`` bytes since the last
    trim (and once at the start): bounds the heap's growth at a fraction of a trim's cost."""

    def __init__(self, slack: int = DEFAULT_SLACK) -> None:
        self.slack = slack
        self.trims = 0
        self._mark = self._trim()

    def _trim(self) -> int | None:
        if not release_free_memory():
            return None
        self.trims += 1
        return resident_bytes()

    def step(self) -> None:
        """Trim if the heap has grown by more than ``slack`` since the last trim."""
        if self._mark is None:
            return
        rss = resident_bytes()
        if rss is not None and rss - self._mark > self.slack:
            self._mark = self._trim()
