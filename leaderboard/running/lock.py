"""One ``bench run`` at a time per run folder: an OS file lock (``filelock``) on
``<out>/.bench-run.lock``, held for the whole run.

Without it, two runs into the same ``--out`` both compute every cell and the last writer wins.
A second run waits up to ``--wait`` seconds (default: not at all), then exits naming the
holder (its command, process id, host and start time, written beside the lock). The OS releases
the lock when its process dies, even by ``kill -9``, so a crashed run never blocks the next one.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock, Timeout

from leaderboard.errors import BenchError

LOCK = ".bench-run.lock"
HOLDER = ".bench-run.holder.json"


def _holder_text(out: Path) -> str:
    try:
        h = json.loads((out / HOLDER).read_text())
        return (f"`{h['command']}` (pid {h['pid']} on {h['host']}, started {h['started']})")
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it has not said which yet)"


@contextlib.contextmanager
def run_lock(out: Path, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the run folder ``out`` (made here) for the block; a second holder raises
    :class:`BenchError` naming the first after waiting ``wait_s`` seconds."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(out / LOCK, timeout=wait_s, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        waited = f" after waiting {wait_s:.0f} s" if wait_s > 0 else ""
        raise BenchError(
            f"{out} is in use by {_holder_text(out)}{waited}: two runs into one folder would "
            "compute the same cells twice. Wait for it to finish (or pass --wait SECONDS), or "
            "choose another --out"
        ) from None
    try:
        holder = {"command": " ".join(["bench", *sys.argv[1:]]) if sys.argv else "bench",
                  "pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        from cadsd.files import atomic_write_text

        atomic_write_text(out / HOLDER, json.dumps(holder) + "\n")
        yield
    finally:
        (out / HOLDER).unlink(missing_ok=True)
        lock.release()
