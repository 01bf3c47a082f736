"""Reading typed fields out of decoded JSON, with the field path in every error.

A ``null`` reads as absent; fields nobody asks for are ignored (peers may send more).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class WireError(ValueError):
    """A message does not have the shape the contract says; ``path`` names the field."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class Fields:
    """The fields of one JSON object, read by name; ``path`` is where it sits in the message
    (empty at the top)."""

    def __init__(self, data: object, path: str = "") -> None:
        if not isinstance(data, Mapping):
            raise WireError(path or "(body)", "must be a JSON object")
        self._data: Mapping[str, Any] = data
        self._path = path

    def path(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def _get(self, key: str) -> Any:
        return self._data.get(key)

    def text(self, key: str, default: str = "") -> str:
        value = self.opt_text(key)
        return default if value is None else value

    def opt_text(self, key: str) -> str | None:
        value = self._get(key)
        if value is not None and not isinstance(value, str):
            raise WireError(self.path(key), "must be a string")
        return value

    def integer(self, key: str, default: int = 0) -> int:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise WireError(self.path(key), "must be an integer")
        return value

    def opt_flag(self, key: str) -> bool | None:
        value = self._get(key)
        if value is not None and not isinstance(value, bool):
            raise WireError(self.path(key), "must be true or false")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.opt_flag(key)
        return default if value is None else value

    def texts(self, key: str) -> tuple[str, ...]:
        return tuple(self._items(key, lambda v, p: _string(v, p)))

    def text_map(self, key: str) -> dict[str, str]:
        value = self._get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise WireError(self.path(key), "must be a JSON object")
        return {k: _string(v, f"{self.path(key)}.{k}") for k, v in value.items()}

    def obj(self, key: str) -> Fields | None:
        value = self._get(key)
        return None if value is None else Fields(value, self.path(key))

    def obj_list(self, key: str) -> list[Fields]:
        return self._items(key, Fields)

    def _items(self, key: str, read: Any) -> list[Any]:
        value = self._get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise WireError(self.path(key), "must be a list")
        return [read(item, f"{self.path(key)}[{i}]") for i, item in enumerate(value)]


def _string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise WireError(path, "must be a string")
    return value


def drop_none(doc: Mapping[str, Any]) -> dict[str, Any]:
    """``doc`` without its ``None`` values (absent optional fields are not sent)."""
    return {k: v for k, v in doc.items() if v is not None}
