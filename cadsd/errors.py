"""User-facing errors of the dataset toolkit.

Every mistake a user can make (a wrong path, a missing folder, a corrupt image, no network)
raises a :class:`CadsdError` whose message names the fix. The CLIs print the message and exit
non-zero; they never show a traceback for these.
"""

from __future__ import annotations


class CadsdError(Exception):
    """A problem the user can fix; ``str(err)`` is the whole message."""

    exit_code: int = 1


class LayoutError(CadsdError):
    """The folder does not look like CAD-SD (missing splits, nothing to index)."""


class DownloadError(CadsdError):
    """Fetching the dataset failed (offline, blocked, bad checksum, unsafe archive)."""


class LinkError(CadsdError):
    """A link inside a dataset points outside it (or loops); it is never followed. Not a
    :class:`LayoutError`: code that falls back when a folder is not a dataset must not fall
    back on this, but name the link."""


class OutputError(CadsdError):
    """An output folder the tool will not write or replace (the source, a user's folder)."""


_MAX_WORD = 120  # a longer word (a path, a repr) keeps its head and tail
_MAX_MESSAGE = 800


def short_message(text: str) -> str:
    """``text`` cut to a readable size: each word over 120 characters (a huge path) keeps its
    first and last 50, and a message still over 800 characters keeps its head and tail."""
    words = [w if len(w) <= _MAX_WORD else f"{w[:50]}…{w[-50:]}" for w in text.split(" ")]
    text = " ".join(words)
    if len(text) > _MAX_MESSAGE:
        text = f"{text[:500]} … {text[-250:]}"
    return text
