"""A detector's settings are its ``__init__`` keyword arguments, stored as attributes of the
same name (scikit-learn's convention): ``PatchCore(coreset_ratio=0.1).coreset_ratio == 0.1``.

This module reads them off the signature, so the harness can check a ``--param`` key and its
value against the method before any work starts, and ``Detector.get_params`` can return them.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

from baselines.errors import DetectorError

#: settings the harness sets for every cell itself (``bench run --backbone/--weights/...``)
RUN_SETTINGS = ("backbone", "weights", "device", "seed")


class SettingError(DetectorError):
    """An unknown setting or a value of the wrong type (a usage error: exit code 2)."""

    exit_code = 2


@dataclass(frozen=True)
class Setting:
    """One keyword of a detector's ``__init__``: its name, default and annotation."""

    name: str
    default: Any
    hint: Any

    def type_text(self) -> str:
        """The annotation as a reader would write it (``float``, ``int | None``, ...)."""
        return _hint_text(self.hint)


def settings_of(klass: type) -> dict[str, Setting]:
    """The keyword settings of ``klass.__init__`` in signature order. An ``__init__`` that
    passes ``**kwargs`` on to its parent's (a subclass adding settings) also has the parent's.
    A class whose settings are not a signature (a generated wrapper of another library's model)
    declares them with a ``declared_settings()`` classmethod."""
    declared = getattr(klass, "declared_settings", None)
    if declared is not None:
        return dict(declared())
    out: dict[str, Setting] = {}
    for cls in klass.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        sig = inspect.signature(init)
        hints = typing.get_type_hints(init)
        passes_on = False
        for name, p in sig.parameters.items():
            if p.kind == p.VAR_KEYWORD:
                passes_on = True
            if name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or name in out:
                continue
            out[name] = Setting(name, None if p.default is p.empty else p.default,
                                hints.get(name, Any))
        if not passes_on:
            break
    return out


def _args(hint: Any) -> tuple[Any, ...]:
    return typing.get_args(hint)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def _hint_text(hint: Any) -> str:
    if _is_union(hint):
        return " | ".join(_hint_text(a) for a in _args(hint))
    if typing.get_origin(hint) is Literal:
        return " | ".join(repr(a) for a in _args(hint))
    if hint is type(None):
        return "None"
    if typing.get_origin(hint) is tuple:
        return "tuple of " + _hint_text(_args(hint)[0])
    return getattr(hint, "__name__", str(hint))


def coerce(value: Any, hint: Any) -> tuple[bool, Any]:
    """``(True, value)`` converted where lossless (an int for a float, a list for a tuple), or
    ``(False, None)`` when ``value`` does not fit ``hint``."""
    if hint is Any:
        return True, value
    if _is_union(hint):
        for arg in _args(hint):
            ok, out = coerce(value, arg)
            if ok:
                return True, out
        return False, None
    if typing.get_origin(hint) is Literal:
        return (value in _args(hint)), value
    if hint is type(None):
        return value is None, None
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:  # a finite number (JSON's 1e999 is inf, and NaN is no setting)
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value))
        return ok, float(value) if ok else None
    if hint is str:
        return isinstance(value, str), value
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            return False, None
        item = _args(hint)[0]
        out = []
        for v in value:
            ok, c = coerce(v, item)
            if not ok:
                return False, None
            out.append(c)
        return True, tuple(out)
    return isinstance(value, hint), value


def check_settings(klass: type, overrides: dict[str, Any], what: str = "") -> dict[str, Any]:
    """Check ``overrides`` against ``klass``'s settings: every key known, every value of its
    annotated type. Returns them converted (ints for floats become floats). ``what`` prefixes
    messages (e.g. ``--param``); the run settings (backbone, weights, device, seed) are refused,
    they have their own options."""
    known = {k: s for k, s in settings_of(klass).items() if k not in RUN_SETTINGS}
    name = getattr(klass, "name", klass.__name__)
    out = {}
    for key, value in overrides.items():
        if key in RUN_SETTINGS:
            option = "--seeds" if key == "seed" else f"--{key}"
            raise SettingError(f"{what}{name}.{key}: set it with {option}, not --param")
        if key not in known:
            raise SettingError(
                f"{what}{name} has no setting {key!r}; its settings: {describe(known.values())}"
            )
        ok, converted = coerce(value, known[key].hint)
        if not ok:
            finite = " (a finite number)" if "float" in known[key].type_text() else ""
            raise SettingError(
                f"{what}{name}.{key}={value!r}: expected {known[key].type_text()}{finite} "
                f"(default {known[key].default!r})"
            )
        out[key] = converted
    return out


def describe(settings: typing.Iterable[Setting]) -> str:
    """``key=default`` for each setting, comma-separated (for error messages and ``bench list``)."""
    return ", ".join(f"{s.name}={s.default!r}" for s in settings)
