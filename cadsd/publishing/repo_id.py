"""The Hugging Face Hub's rule for a repo id ``ORG/NAME``, written once for `cadsd push` and
`bench push` (and `hf:` sources).

``huggingface_hub.utils.validate_repo_id`` is a local sanity check, not the Hub's rule: it lets
``.ipynb`` names, non-ASCII letters and a leading ``_`` through, which the Hub then refuses
after the data has been prepared. So the rule is written here: each part made of ASCII letters,
digits, ``-``, ``_`` and ``.``; neither part starting or ending with ``-`` or ``.``; no ``--`` or
``..``; the name at most 96 characters and not ending in ``.git`` or ``.ipynb``.
"""

from __future__ import annotations

import re

MAX_NAME = 96
_PART = re.compile(r"[A-Za-z0-9_.-]+")
_SUFFIXES = (".git", ".ipynb")
EXAMPLE = "my-lab/cadsd-run1"


def repo_id_problem(repo_id: str) -> str | None:
    """Why the Hub would refuse ``repo_id`` (one short clause), or None when it is valid."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts):
        return "write ORG/NAME"
    for part in parts:
        if not _PART.fullmatch(part):
            return "use only ASCII letters, digits, '-', '_' and '.'"
        if part[0] in "-." or part[-1] in "-.":
            return "a part may not start or end with '-' or '.'"
    if "--" in repo_id or ".." in repo_id:
        return "'--' and '..' are not allowed"
    name = parts[1]
    if len(name) > MAX_NAME:
        return f"the name has {len(name)} characters, the Hub allows {MAX_NAME}"
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            return f"the name may not end in {suffix!r}"
    return None


def describe(repo_id: str, option: str = "--repo-id") -> str | None:
    """The user's message for an invalid ``repo_id`` (None when valid)."""
    problem = repo_id_problem(repo_id)
    if problem is None:
        return None
    return f"{option} {repo_id!r}: {problem} (the Hub's rule), e.g. {EXAMPLE}"
