"""User-facing errors of the detectors (a wrong input, a missing weight file, an unfitted model)."""

from __future__ import annotations


class DetectorError(Exception):
    """A problem the user can fix; ``str(err)`` is the whole message, naming the fix."""

    exit_code: int = 1


class NotFittedError(DetectorError):
    """``predict`` (or ``save``) was called before ``fit``."""


class WeightsUnavailableError(DetectorError):
    """Pretrained weights cannot be loaded (offline, missing file, hash mismatch)."""


class InputError(DetectorError):
    """Images of the wrong shape, dtype or channel count."""
