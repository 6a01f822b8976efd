"""Where datasets live on this machine.

The cache root is ``$CADSD_CACHE`` when set, else the user's cache folder
(``platformdirs.user_cache_dir("cadsd-bench")``, e.g. ``~/.cache/cadsd-bench``). The real CAD-SD
goes to ``<root>/CAD-SD`` unless ``--dest`` says otherwise; synthetic sets are cached per
(seed, counts, size) so they are generated once.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "CADSD_CACHE"


def cache_root() -> Path:
    """The cache root: ``$CADSD_CACHE`` or the platform's user cache dir for cadsd-bench."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("cadsd-bench"))


def real_dataset_dir(dest: str | Path | None = None) -> Path:
    """Where the real CAD-SD is (or will be) stored: ``dest`` if given, else ``<root>/CAD-SD``."""
    return Path(dest).expanduser() if dest is not None else cache_root() / "CAD-SD"


def synthetic_dataset_dir(seed: int = 0, counts: str = "paper", size: int = 256) -> Path:
    """Cache folder of the synthetic CAD-SD generated with these settings."""
    return cache_root() / "synthetic" / f"seed{seed}-{counts}-{size}"
