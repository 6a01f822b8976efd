"""Network fetchers for `cadsd download`: a URL with HTTP Range resume, and a Google Drive folder.

Both write into a staging folder that is kept between runs, so a rerun fetches only what is
missing. Transient failures (rate limits, 5xx, a connection dropped mid-transfer) are retried
with exponential backoff; a first contact that fails to connect is not retried, so an offline
machine gets its answer within seconds (:class:`Offline`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cadsd.errors import DownloadError
from cadsd.getting.archive import safe_relpath

if TYPE_CHECKING:
    from rich.progress import Progress

_CHUNK = 1 << 14  # small enough that an interrupted transfer keeps most of what arrived
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class Offline(DownloadError):
    """The first request could not connect (no network, DNS failure, blocked, timeout)."""


class _Transient(Exception):
    """A failure worth retrying (rate limit, 5xx, an interrupted transfer)."""


@dataclass(frozen=True)
class Policy:
    """How patient to be: retries after the first try, backoff base (s), timeouts (s)."""

    retries: int = 4
    backoff: float = 2.0
    connect_timeout: float = 5.0
    read_timeout: float = 60.0

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)

    def sleep(self, attempt: int, hint: float | None = None) -> None:
        """Wait before retry ``attempt`` (1-based): backoff * 2**(attempt-1), or the server's hint."""
        delay = self.backoff * 2 ** (attempt - 1) if hint is None else min(hint, 120.0)
        time.sleep(delay)


def _retrying(policy: Policy, what: str, step: Callable[[], object]) -> object:
    """Run ``step``; on :class:`_Transient` retry with backoff, then raise DownloadError."""
    for attempt in range(policy.retries + 1):
        try:
            return step()
        except _Transient as err:
            if attempt == policy.retries:
                raise DownloadError(
                    f"{what}: still failing after {policy.retries + 1} tries ({err}). What was "
                    "fetched is kept; rerun the same command later to resume."
                ) from err
            hint = getattr(err, "retry_after", None)
            policy.sleep(attempt + 1, hint)
    raise AssertionError("unreachable")


def _progress() -> Progress:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def reachable(url: str, timeout_s: float = 1.5) -> bool:
    """Does ``url``'s server answer a HEAD request (through the user's proxy settings, as the
    real download will) within ``timeout_s``? Runs in a thread, so a hanging DNS lookup cannot
    stall the caller beyond the timeout. The one "are we offline?" probe."""
    import requests

    result: list[bool] = []

    def probe() -> None:
        try:
            requests.head(url, timeout=timeout_s, allow_redirects=False).close()
            result.append(True)
        except requests.RequestException:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s + 0.5)
    return bool(result and result[0])


def check_reachable(url: str, policy: Policy | None = None) -> None:
    """Raise :class:`Offline` within the connect timeout when ``url``'s host cannot be reached.

    For clients with their own long retry loops (huggingface_hub retries a failed connection
    for about half a minute), so an offline machine still gets its answer within seconds.
    """
    policy = policy or Policy()
    if not reachable(url, policy.connect_timeout):
        raise Offline(f"cannot reach {url} (no answer within {policy.connect_timeout:g} s)")


# -- URL --------------------------------------------------------------------------------------
def _content_range_total(value: str | None) -> int | None:
    # "bytes 100-199/1234" or "bytes */1234"
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _url_attempt(
    session, url: str, part: Path, policy: Policy, progress, task, state: dict
) -> bool:
    """One GET (resuming ``part``); True when ``part`` holds the whole file.

    ``state["connected"]`` records that the server answered once in this run: only a failure
    before that is :class:`Offline` (not retried); later ones are transient.
    """
    import requests

    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-", "Accept-Encoding": "identity"} if have else {}
    try:
        with session.get(url, headers=headers, stream=True, timeout=policy.timeout) as r:
            state["connected"] = True
            if r.status_code == 416 and have:
                # Nothing left to send: complete if the server's size is what we have.
                if _content_range_total(r.headers.get("Content-Range")) == have:
                    return True
                part.unlink()
                raise _Transient("the partial file does not match the server's; restarting")
            if r.status_code in _RETRY_STATUS:
                err = _Transient(f"HTTP {r.status_code}")
                retry_after = r.headers.get("Retry-After", "")
                err.retry_after = float(retry_after) if retry_after.isdigit() else None
                raise err
            if r.status_code not in (200, 206):
                raise DownloadError(f"{url}: HTTP {r.status_code} {r.reason}; check the URL")
            start, mode = (have, "ab") if r.status_code == 206 else (0, "wb")
            if r.status_code == 206 and not (r.headers.get("Content-Range") or "").startswith(
                f"bytes {have}-"
            ):
                start, mode = 0, "wb"
                part.unlink()
                raise _Transient("the server answered a different byte range; restarting")
            length = r.headers.get("Content-Length")
            total = start + int(length) if length and length.isdigit() else None
            progress.update(task, completed=start, total=total)
            with open(part, mode) as f:
                for block in r.iter_content(_CHUNK):
                    f.write(block)
                    progress.advance(task, len(block))
            size = part.stat().st_size
            if total is not None and size < total:
                raise _Transient(f"connection closed after {size:,} of {total:,} bytes")
            return True
    except (requests.ConnectionError, requests.Timeout) as err:
        # Covers ChunkedEncodingError's cousins and read timeouts mid-transfer.
        if not state["connected"]:
            raise Offline(f"cannot reach {url} ({type(err).__name__})") from err
        raise _Transient(f"{type(err).__name__}: {err}") from err
    except requests.exceptions.ChunkedEncodingError as err:
        raise _Transient(f"transfer interrupted: {err}") from err


def fetch_url(
    url: str, stage: Path, *, sha256: str | None = None, policy: Policy | None = None
) -> Path:
    """Download ``url`` to ``stage/archive`` (resuming ``stage/archive.part`` with HTTP Range).

    A server that ignores Range (answers 200) is downloaded again from the start. With
    ``sha256`` the finished file is checked; a mismatch deletes it and raises DownloadError.
    """
    import requests

    policy = policy or Policy()
    stage.mkdir(parents=True, exist_ok=True)
    done, part = stage / "archive", stage / "archive.part"
    if not done.is_file():
        with requests.Session() as session, _progress() as progress:
            task = progress.add_task("download", total=None)
            state = {"connected": False}
            _retrying(
                policy,
                url,
                lambda: _url_attempt(session, url, part, policy, progress, task, state),
            )
        os.replace(part, done)
    if sha256:
        from cadsd.files import sha256_file

        got = sha256_file(done)
        if got != sha256.strip().lower():
            done.unlink()
            raise DownloadError(
                f"checksum mismatch for {url}: expected sha256 {sha256.strip().lower()}, got "
                f"{got}. The file was deleted; check the URL and the --sha256 value."
            )
    return done


# -- Google Drive -----------------------------------------------------------------------------
def _gdown_call(what: str, call: Callable[[], object], *, first_contact: bool) -> object:
    """Run a gdown call, sorting its failures into Offline / _Transient / DownloadError."""
    import gdown.exceptions
    import requests

    try:
        return call()
    except (requests.ConnectionError, requests.Timeout) as err:
        if first_contact:
            raise Offline(f"cannot reach Google Drive ({type(err).__name__})") from err
        raise _Transient(f"{type(err).__name__}") from err
    except gdown.exceptions.DownloadError as err:
        # Rate limits ("Too many users have viewed or downloaded this file recently"), 429s and
        # gdown's exhausted network retries all land here; all are worth a later retry.
        cause = err.__cause__ or err.__context__
        if first_contact and isinstance(cause, (requests.ConnectionError, requests.Timeout)):
            raise Offline(f"cannot reach Google Drive ({type(cause).__name__})") from err
        raise _Transient(str(err).splitlines()[0] if str(err) else type(err).__name__) from err
    except AssertionError as err:  # gdown's hash checks raise AssertionError
        raise DownloadError(f"{what}: checksum mismatch ({err})") from err


def fetch_gdrive(folder_id: str, stage: Path, *, policy: Policy | None = None) -> Path:
    """Fetch every file of the public Drive folder into ``stage/files`` and return that folder.

    Lists the folder with ``gdown.download_folder(skip_download=True)``, then downloads each
    file with ``gdown.download``; a file already at its final path is complete (gdown renames
    its ``.part`` file only at the end) and is skipped, so a rerun fetches only what is missing.
    """
    import gdown

    policy = policy or Policy()
    files = stage / "files"
    files.mkdir(parents=True, exist_ok=True)

    def listing() -> object:
        return _gdown_call(
            "listing",
            lambda: gdown.download_folder(
                id=folder_id,
                output=str(stage / "listing") + os.sep,
                skip_download=True,
                quiet=True,
                timeout=policy.timeout,
            ),
            first_contact=True,
        )

    items = _retrying(policy, "listing the Google Drive folder", listing) or []
    todo, wanted = [], set()
    for item in items:
        target = files.joinpath(*safe_relpath(item.path).parts)
        wanted.add(target)
        if not target.is_file():
            todo.append((item, target))
    if todo:
        _fetch_files(todo, policy)
    # Drop what the folder does not list: gdown's leftover .part files, files removed upstream.
    for path in [p for p in files.rglob("*") if p.is_file() and p not in wanted]:
        path.unlink()
    return files


def _fetch_files(todo: list, policy: Policy) -> None:
    import gdown

    with _progress() as progress:
        overall = progress.add_task(f"{len(todo)} files", total=len(todo))
        current = progress.add_task("", total=None)
        for item, target in todo:
            target.parent.mkdir(parents=True, exist_ok=True)
            progress.update(current, description=target.name, completed=0, total=None)

            def report(done: int, total: int | None) -> None:
                progress.update(current, completed=done, total=total)

            def one(item=item, target=target) -> object:
                return _gdown_call(
                    str(item.path),
                    lambda: gdown.download(
                        id=item.id,
                        output=str(target),
                        quiet=True,
                        resume=True,
                        timeout=policy.timeout,
                        progress=report,
                    ),
                    first_contact=False,
                )

            _retrying(policy, f"downloading {item.path}", one)
            progress.advance(overall)
