"""Give freed heap memory back to the operating system while a detector fits.

The backbone's per-batch temporaries (tens of MB each) come from glibc's heap once its dynamic
mmap threshold has risen, and with two or more threads part of each batch's freed memory is not
reused by the next one: PatchCore / WRN50-2 at paper counts grew by ~60 MB a batch where the
patch chunk it keeps is 38.5 MB, and peaked at 3.4-4.6 GB from run to run. ``malloc_trim``
after every batch (about a millisecond) keeps the growth to the chunk itself: 3.35 GB peak with
one and with two threads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable


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
