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
