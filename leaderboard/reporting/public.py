"""What a shared document may say about this machine: no absolute local path.

Leaderboards and published runs travel (``bench push``), so every path that a record holds
(the dataset folder, a weights file, a traceback's files) is shown by its last component only:
``/home/me/data/cadsd`` -> ``…/cadsd``. URLs, ``hf:ORG/NAME`` ids and relative paths are kept.
The same rule serves the rendered markdown and the records a push uploads, so a run pulled back
from the Hub renders what its local folder renders.
"""

from __future__ import annotations

import re
from typing import Any

#: an absolute POSIX path (not the path part of a URL: no ``:``, ``/`` or word before it), a
#: Windows drive path, or a home-relative one; it ends at whitespace, a quote or a bracket
_ABSOLUTE = re.compile(
    r"(?<![\w:/.~…-])(?:[A-Za-z]:\\|~/|/)(?:[^\s'\"`,;()\[\]<>|]*)"
)
HIDDEN = "…"


def _last_part(match: re.Match[str]) -> str:
    path = match.group(0)
    if path == "/":
        return path
    tail = re.split(r"[\\/]", path.rstrip("/\\:."))[-1]
    trail = path[len(path.rstrip(":.")):]  # keep a sentence's full stop or a "path:" colon
    return f"{HIDDEN}/{tail}{trail}" if tail else HIDDEN


def public_text(text: str) -> str:
    """``text`` with every absolute local path cut to ``…/<last component>``."""
    return _ABSOLUTE.sub(_last_part, text) if ("/" in text or "\\" in text) else text


def public_json(value: Any) -> Any:
    """A JSON value (dicts, lists, strings...) with :func:`public_text` applied to every string,
    keys included."""
    if isinstance(value, str):
        return public_text(value)
    if isinstance(value, dict):
        return {public_text(k): public_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [public_json(v) for v in value]
    return value
