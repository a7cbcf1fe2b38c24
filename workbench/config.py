"""Helpers for frozen dataclass configs (validation hooks, `to_dict`/`from_dict`, JSON round trip)
and the argument checks every public entry point uses (`check_positive_int`, `check_finite`,
`check_choice`, ...): each raises `InputError` naming the argument, its value and what to pass.

Library code takes configs, never argparse namespaces; the CLI maps its flags onto the same
dataclasses through `from_dict`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import typing
import warnings
from pathlib import Path
from typing import Any, ClassVar, Iterable, TypeVar

import numpy as np

from .errors import InputError

T = TypeVar("T", bound="ConfigBase")


class _AcceptsRenamedFields(type):
    """Lets a config be built with a field's old name (`lr=` for `learning_rate=`) for one release:
    the value goes to the new field, with a FutureWarning naming the new spelling."""

    def __call__(cls, *args, **kwargs):
        for old, new in getattr(cls, "renamed_fields", {}).items():
            if old in kwargs:
                if new in kwargs:
                    raise InputError(f"{cls.__name__}: give {new}= only ({old}= is its old name)")
                warnings.warn(f"{cls.__name__}({old}=...) is deprecated: use {new}=... (the old "
                              "name is accepted until the next release)", FutureWarning, stacklevel=2)
                kwargs[new] = kwargs.pop(old)
        return super().__call__(*args, **kwargs)


@dataclasses.dataclass(frozen=True)
class ConfigBase(metaclass=_AcceptsRenamedFields):
    """Base for configs: subclasses are frozen dataclasses and may define `validate()`.

    `renamed_fields` maps a field's old name to its new one: `Config(old=...)`, `config.old` and
    stored dicts with the old key keep working (the first two with a FutureWarning)."""

    renamed_fields: ClassVar[dict[str, str]] = {}
    resumable_changes: ClassVar[tuple[str, ...]] = ()  # fields a resumed run may change

    def __getattr__(self, name: str) -> Any:  # only called when normal lookup fails
        new = type(self).renamed_fields.get(name)
        if new is None:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        warnings.warn(f"{type(self).__name__}.{name} is deprecated: use .{new}", FutureWarning,
                      stacklevel=2)
        return getattr(self, new)

    def __post_init__(self) -> None:
        _check_field_types(self)
        self.validate()

    def validate(self) -> None:  # overridden by subclasses
        """Raise `InputError` naming the bad field and the allowed values."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        if not isinstance(data, dict):
            raise InputError(f"{cls.__name__}.from_dict takes a dict of fields, not "
                             f"{type(data).__name__}")
        # a config saved by an earlier release may use a field's old name
        data = {cls.renamed_fields.get(k, k): v for k, v in data.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(
                f"{cls.__name__} has no field(s) {unknown}; valid fields are {sorted(names)}"
            )
        return cls(**data)

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def load_json(cls: type[T], path: str | Path) -> T:
        return cls.from_dict(read_json_file(path, what=f"{cls.__name__} file"))


def read_json_file(path: str | Path, *, what: str = "JSON file") -> Any:
    """Parse a JSON file; a missing, unreadable or corrupt file is an `InputError` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{what} {path} is not valid UTF-8 JSON ({err}); restore or rewrite "
                         "it") from None


def _check_field_types(config: ConfigBase) -> None:
    """Refuse a field whose value does not match its annotation (int, float, str, bool, or
    `X | None`) before `validate()` compares it: `batch_size="8"` must not reach `>=`."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        hint = hints.get(f.name)
        args = typing.get_args(hint)
        optional = type(None) in args
        base = [a for a in args if a is not type(None)] if args else [hint]
        if len(base) != 1:
            continue
        name, value = f.name, getattr(config, f.name)
        check = {int: check_int, float: check_finite, bool: check_bool}.get(base[0])
        if check is not None:
            check(name, value, allow_none=optional)
        elif base[0] is str:
            check_str(name, value, allow_none=optional, allow_empty=True)


def require(condition: bool, message: str) -> None:
    """Raise `InputError(message)` unless `condition` holds (for use in `validate`)."""
    if not condition:
        raise InputError(message)


# ----------------------------------------------------------------------------- argument checks
# One home for boundary checks: every message names the argument, shows the value and says what
# to pass instead. They return the value normalised (a numpy integer becomes an int) so callers
# can write `batch_size = check_positive_int("batch_size", batch_size)`.

def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None,
              allow_none: bool = False) -> int | None:
    """An integer within [minimum, maximum] (bools and numeric strings are refused)."""
    if value is None and allow_none:
        return None
    if not _is_int(value):
        hint = " (a string: drop the quotes)" if isinstance(value, str) else ""
        raise InputError(f"{name}={value!r} is a {type(value).__name__}{hint}; pass an integer"
                         + (" or None" if allow_none else ""))
    value = int(value)
    if minimum is not None and value < minimum:
        raise InputError(f"{name}={value} is too small; use {minimum} or more")
    if maximum is not None and value > maximum:
        raise InputError(f"{name}={value} is too large; use at most {maximum}")
    return value


def check_positive_int(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    """An integer >= 1 (e.g. batch_size, top_k, max_length); None passes with `allow_none`."""
    return check_int(name, value, minimum=1, allow_none=allow_none)


def check_finite(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False,
                 allow_none: bool = False) -> float | None:
    """A finite real number (no NaN/inf, bool or string) within the given bounds."""
    if value is None and allow_none:
        return None
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name}={value!r} is a {type(value).__name__}; pass a number")
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{name}={value} is not a finite number; pass a real value")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise InputError(f"{name}={value:g} is outside {interval}; pass a value in that range")
    return value


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """One of `allowed` (compared with ==); the message lists them."""
    allowed = list(allowed)
    try:
        ok = value in allowed
    except TypeError:  # an unhashable or incomparable value
        ok = False
    if not ok:
        raise InputError(f"{name}={value!r} is not one of {allowed}")
    return value


def check_sequence(name: str, value: Any) -> list:
    """A list/tuple/iterable of items (None, a string, bytes or a dict are refused)."""
    if value is None or isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        raise InputError(f"{name}={value!r} is a {type(value).__name__}; pass a list")
    return list(value)


def check_finite_array(name: str, value: Any, ndim: int | None = None) -> np.ndarray:
    """A numeric array with no NaN/inf (and `ndim` dimensions when given)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} is a {type(value).__name__}, not a numeric array") from None
    if ndim is not None and arr.ndim != ndim:
        raise InputError(f"{name} has shape {arr.shape}; pass a {ndim}-D array")
    if not np.isfinite(arr).all():
        raise InputError(f"{name} holds {int((~np.isfinite(arr)).sum())} NaN or infinite values: "
                         "every value must be finite")
    return arr


def check_bool(name: str, value: Any, *, allow_none: bool = False) -> bool | None:
    """A real bool (a string such as 'False' would be truthy)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name}={value!r} is a {type(value).__name__}; pass True or False")
    return bool(value)


def check_str(name: str, value: Any, *, allow_none: bool = False, allow_empty: bool = False) -> str | None:
    """A string (non-blank unless `allow_empty`)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        raise InputError(f"{name}={value!r} is a {type(value).__name__}; pass a string")
    if not allow_empty and not value.strip():
        raise InputError(f"{name}={value!r} is empty; pass a non-blank string")
    return value


def check_indices(name: str, value: Any, count: int, what: str = "index") -> list[int]:
    """Layer or head numbers: 'all'/None (every one of `count`), one integer, or a non-empty list
    of integers in 0..count-1. Returns them sorted and unique; 1.5, True, 'bogus' are refused."""
    usage = f"use 'all', one {what} number or a list of them in 0..{count - 1}"
    if value is None or (isinstance(value, str) and value == "all"):
        return list(range(count))
    if _is_int(value):
        value = [value]
    elif isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        raise InputError(f"{name}={value!r} is a {type(value).__name__}: {usage}")
    items = list(value)
    if not items:
        raise InputError(f"{name}={items!r} is empty: {usage}")
    bad = [v for v in items if not _is_int(v) or not 0 <= int(v) < count]
    if bad:
        raise InputError(f"{name}={items!r}: {bad[:3]!r} {'is' if len(bad) == 1 else 'are'} not "
                         f"a {what} of this model ({count} {what}s); {usage}")
    return sorted({int(v) for v in items})
