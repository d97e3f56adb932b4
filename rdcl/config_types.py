"""Coerce config values to their declared dataclass field types, or say which key is wrong.

Every field of every config section is checked against its annotation, so a field added to a
section is covered without further code. Supported annotations: ``int``, ``float``, ``bool``,
``str``, ``tuple[X, ...]``, ``tuple[X, Y]`` (fixed length), nested tuples, ``X | None`` and
``Literal[...]``. Values come from JSON, YAML or ``--set`` (parsed as YAML), so:

- ``float`` accepts ints and numeric strings (PyYAML reads ``1e-3`` as the string ``"1e-3"``);
  NaN is refused everywhere, infinity except for the keys in :data:`INFINITY_OK`;
- ``int`` accepts integral floats (``1e3`` -> 1000) and integer strings, refuses ``2.5``, ``abc``,
  ``true`` and negative values (no config count, size or seed is negative);
- ``bool`` accepts true/false (YAML's yes/no/on/off too) and 0/1, nothing else (``maybe``);
- tuples need a list: ``patch_size=16`` is refused, ``patch_size=[16,32,32]`` accepted.

Errors are :class:`ConfigValueError` (a ValueError) with one line naming the key, the expected
type and the value found; :mod:`rdcl.config` turns them into ``ConfigError``.
"""

from __future__ import annotations

import math
import numbers
import types
import typing
from dataclasses import fields
from typing import Any, Literal, Union

import numpy as np

from rdcl.errors import ConfigError

INFINITY_OK = frozenset({"train.grad_clip", "train.dist_timeout_s"})
"""Float keys for which infinity is meaningful (no clipping, no timeout)."""

_BOOL_STRINGS = {"true": True, "false": False, "yes": True, "no": False, "on": True, "off": False}


class ConfigValueError(ConfigError):
    """A config value does not have (and cannot be coerced to) its declared type."""


def describe(hint: Any) -> str:
    """Human wording of a type annotation: ``tuple[int, ...]`` -> ``a list of integers``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is int:
        return "an integer >= 0"
    if hint is float:
        return "a number"
    if hint is bool:
        return "true or false"
    if hint is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        text = " or ".join(describe(a) for a in inner)
        return f"{text} or null" if len(inner) < len(args) else text
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(describe(args[0]))}"
        if args and len(set(args)) == 1:
            return f"a list of {len(args)} {_plural(describe(args[0]))}"
        return "a list (" + ", ".join(describe(a) for a in args) + ")"
    return getattr(hint, "__name__", str(hint))


def _plural(text: str) -> str:
    for single, plural in (
        ("an integer >= 0", "integers >= 0"),
        ("a number", "numbers"),
        ("a string", "strings"),
        ("true or false", "booleans"),
    ):
        if text == single:
            return plural
    return "lists" + text[6:] if text.startswith("a list") else text


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` converted to the annotation ``hint``; :class:`ConfigValueError` naming ``key``
    (e.g. ``train.lr``), the expected type and ``value`` when that is not possible."""
    try:
        return _coerce(value, hint, key)
    except _Mismatch:
        raise ConfigValueError(
            f"config key {key}: expected {describe(hint)}, found {_short(value)}"
        ) from None


class _Mismatch(Exception):
    pass


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except _Mismatch:
                pass
        raise _Mismatch
    if origin is Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        raise _Mismatch
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise _Mismatch
        return tuple(_coerce(v, a, key) for v, a in zip(value, args, strict=True))
    if hint is bool:
        return _to_bool(value)
    if hint is int:
        return _to_int(value)
    if hint is float:
        return _to_float(value, key)
    if hint is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise _Mismatch


def _to_bool(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOL_STRINGS:
        return _BOOL_STRINGS[value.strip().lower()]
    raise _Mismatch


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise _Mismatch
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise _Mismatch from None
    if isinstance(value, numbers.Integral):
        value = int(value)
    elif isinstance(value, numbers.Real):
        value = float(value)
        if not (math.isfinite(value) and value.is_integer()):
            raise _Mismatch
        value = int(value)
    if not isinstance(value, int) or value < 0:
        raise _Mismatch
    return value


def _to_float(value: Any, key: str) -> float:
    if isinstance(value, bool):
        raise _Mismatch
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise _Mismatch from None
    if not isinstance(value, numbers.Real):
        raise _Mismatch
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and key not in INFINITY_OK):
        raise ConfigValueError(f"config key {key}: expected a finite number, found {value}")
    return value


def coerce_section(klass: type, section: str, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (a section's keys, e.g. from JSON) with every entry coerced to the declared
    type of ``klass``'s field of that name. Unknown keys are left for the caller to refuse."""
    hints = typing.get_type_hints(klass)
    known = {f.name for f in fields(klass)}
    return {
        k: coerce(v, hints[k], f"{section}.{k}") if k in known else v for k, v in values.items()
    }


def check_section(obj: Any, section: str) -> None:
    """Raise :class:`ConfigValueError` when a field of the dataclass instance ``obj`` does not
    hold a value of its declared type (sections built in Python, not from a file)."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        value, key = getattr(obj, f.name), f"{section}.{f.name}"
        if coerce(value, hints[f.name], key) != _as_tuples(value):  # e.g. steps="10"
            raise ConfigValueError(
                f"config key {key}: expected {describe(hints[f.name])}, found {_short(value)}"
            )


def _as_tuples(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(v) for v in value)
    return value
