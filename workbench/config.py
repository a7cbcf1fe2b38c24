"""Helpers for frozen dataclass configs: validation hooks, `to_dict`/`from_dict`, JSON round trip.

Library code takes configs, never argparse namespaces; the CLI maps its flags onto the same
dataclasses through `from_dict`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

from .errors import InputError

T = TypeVar("T", bound="ConfigBase")


@dataclasses.dataclass(frozen=True)
class ConfigBase:
    """Base for configs: subclasses are frozen dataclasses and may define `validate()`."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:  # overridden by subclasses
        """Raise `InputError` naming the bad field and the allowed values."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
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
        return cls.from_dict(json.loads(Path(path).read_text()))


def require(condition: bool, message: str) -> None:
    """Raise `InputError(message)` unless `condition` holds (for use in `validate`)."""
    if not condition:
        raise InputError(message)
