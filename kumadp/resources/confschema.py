"""Policy configurations (a ``to``/``from`` item's ``default``) declared once, as frozen
dataclasses whose fields say how they are read: one declaration gives the parser (with field
paths), the document (``to_doc``) and Kuma's merging (``merge``).

    @dataclass(frozen=True)
    class BackOff(Conf):
        base_interval: str | None = conf_field(DURATION)      # JSON key "baseInterval"
        max_interval: str | None = conf_field(DURATION)

Every field is optional (None = not set), so that several policies' confs merge field by
field: a set field of a later conf overrides, a nested conf merges recursively, a list is
replaced whole (Kuma's rule). A class may add checks across its fields in ``check``.
Values keep the spelling the user wrote (durations stay ``"5s"``), so a stored policy reads
back as written; generators convert them (``seconds``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, TypeVar

from kumadp.resources.durations import parse_duration
from kumadp.resources.errors import ErrorCollector, field_path, index_path, key_path

C = TypeVar("C", bound="Conf")
_SPEC = "kumadp.conf"


class Kind:
    """How one field's value is read and written back."""

    def parse(self, c: ErrorCollector, value: Any, path: str) -> Any:
        raise NotImplementedError

    def dump(self, value: Any) -> Any:
        return value


class _Duration(Kind):
    def __init__(self, positive: bool = False) -> None:
        self.positive = positive

    def parse(self, c: ErrorCollector, value: Any, path: str) -> Any:
        if not isinstance(value, str):
            c.add(path, "must be a duration string such as 5s or 1h30m")
            return None
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            c.add(path, str(exc))
            return None
        if self.positive and seconds <= 0:
            c.add(path, "must be greater than 0")
            return None
        return value


class Integer(Kind):
    def __init__(self, low: int = 0, high: int = 2**32 - 1) -> None:
        self.low, self.high = low, high

    def parse(self, c: ErrorCollector, value: Any, path: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            c.add(path, "must be an integer")
            return None
        if not self.low <= value <= self.high:
            c.add(path, f"must be {self.low}-{self.high}")
            return None
        return value


class _Bool(Kind):
    def parse(self, c: ErrorCollector, value: Any, path: str) -> Any:
        if not isinstance(value, bool):
            c.add(path, "must be true or false")
            return None
        return value


class Text(Kind):
    """A string; ``pattern`` (with ``rule`` in words) when it must have a shape."""

    def __init__(self, pattern: str | None = None, rule: str = "", base64: bool = False) -> None:
        self.pattern = re.compile(pattern) if pattern else None
        self.rule = rule
        self.base64 = base64

    def parse(self, c: ErrorCollector, value: Any, path: str) -> Any:
        if not isinstance(value, str):
            c.add(path, "must be a string")
            return None
        if not value:
            c.add(path, "must not be empty")
            return None
        if self.pattern is not None and not self.pattern.fullmatch(value):
            c.add(path, f"must be {self.rule}")
            return None
        if self.base64:
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                c.add(path, "must be base64")
                return None
        return value


class OneOf(Kind):
    def __init__(self, *values: str) -> None:
        self.values = values

    def parse(self, c: ErrorCollector, value: Any, path: str) -> Any:
        if not isinstance(value, str) or value not in self.values:
            c.add(path, f"must be one of {', '.join(self.values)}")
            return None
        return value


class Percent(Kind):
    """Kuma's IntOrString numbers: an integer, or a decimal in a string (``"1.9"``);
    ``high`` bounds it (None: no bound)."""

    def __init__(self, high: Decimal | None = Decimal(100)) -> None:
        self.high = high

    def parse(self, c: ErrorCollector, value: Any, path: str) -> Any:
        number: Decimal | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = Decimal(value)
        elif isinstance(value, str):
            try:
                number = Decimal(value)
            except InvalidOperation:
                number = None
            if number is not None and not number.is_finite():
                number = None
        if number is None:
            c.add(path, 'must be an integer or a decimal number in a string, e.g. "1.9"')
            return None
        if number < 0 or (self.high is not None and number > self.high):
            limit = f"0-{self.high}" if self.high is not None else "at least 0"
            c.add(path, f"must be {limit}")
            return None
        return value


class StringMap(Kind):
    """A map of strings, kept as sorted pairs (hashable)."""

    def parse(self, c: ErrorCollector, value: Any, path: str) -> Any:
        obj = c.is_object(value, path)
        if obj is None:
            return None
        bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, str)]
        for key in bad:
            c.add(key_path(path, key), "must be a string")
        return None if bad else tuple(sorted(obj.items()))

    def dump(self, value: Any) -> Any:
        return dict(value)


class ListOf(Kind):
    """A list (kept as a tuple, so confs stay hashable); replaced whole when merging."""

    def __init__(self, item: Kind, min_items: int = 0) -> None:
        self.item, self.min_items = item, min_items

    def parse(self, c: ErrorCollector, value: Any, path: str) -> Any:
        if not isinstance(value, list):
            c.add(path, "must be a list")
            return None
        if len(value) < self.min_items:
            c.add(path, f"needs at least {self.min_items} item{'s' if self.min_items > 1 else ''}")
            return None
        items = [self.item.parse(c, raw, index_path(path, n)) for n, raw in enumerate(value)]
        return None if any(i is None for i in items) else tuple(items)

    def dump(self, value: Any) -> Any:
        return [self.item.dump(v) for v in value]


class Nested(Kind):
    def __init__(self, conf: type[Conf]) -> None:
        self.conf = conf

    def parse(self, c: ErrorCollector, value: Any, path: str) -> Any:
        return parse_conf(c, value, path, self.conf)

    def dump(self, value: Any) -> Any:
        return to_doc(value)


DURATION = _Duration()
POSITIVE_DURATION = _Duration(positive=True)
BOOL = _Bool()
UINT32 = Integer()


@dataclass(frozen=True)
class FieldSpec:
    kind: Kind
    key: str  # the JSON name; "" = the attribute's name in camelCase


def conf_field(kind: Kind, key: str = "") -> Any:
    """A conf field read with ``kind`` (optional: None when absent)."""
    return field(default=None, metadata={_SPEC: FieldSpec(kind, key)})


def json_name(name: str) -> str:
    """A field's JSON name: ``max_ring_size`` -> ``maxRingSize`` (``from_`` -> ``from``)."""
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class Conf:
    """Base of the conf dataclasses (frozen, every field a ``conf_field``)."""

    # Kuma fields kumadp does not implement: reported as such, not as unknown.
    unsupported: ClassVar[tuple[str, ...]] = ()

    def check(self, c: ErrorCollector, path: str) -> None:
        """Checks across fields, after each field was read; override to add some."""

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in dataclasses.fields(self))  # type: ignore[arg-type]


_FIELDS: dict[type, list[tuple[str, str, Kind]]] = {}


def _fields(conf: type[Conf]) -> list[tuple[str, str, Kind]]:
    """(attribute, JSON key, kind) of each field of a conf class (computed once per class)."""
    found = _FIELDS.get(conf)
    if found is None:
        found = _FIELDS[conf] = [
            (f.name, f.metadata[_SPEC].key or json_name(f.name), f.metadata[_SPEC].kind)
            for f in dataclasses.fields(conf)  # type: ignore[arg-type]
        ]
    return found


def parse_conf(c: ErrorCollector, value: Any, path: str, conf: type[C]) -> C | None:
    """``value`` read as ``conf`` (problems into ``c`` with their paths)."""
    obj = c.is_object(value, path)
    if obj is None:
        return None
    fields = _fields(conf)
    c.fields(obj, path, [key for _, key, _ in fields], conf.unsupported)
    before = len(c.errors)
    values: dict[str, Any] = {}
    for name, key, kind in fields:
        raw = obj.get(key)
        if raw is not None:
            values[name] = kind.parse(c, raw, field_path(path, key))
    result = conf(**values)
    if len(c.errors) == before:
        result.check(c, path)
    return result


def to_doc(conf: Conf) -> dict[str, Any]:
    """The document of a conf: set fields only, JSON names, nested confs as objects."""
    out: dict[str, Any] = {}
    for name, key, kind in _fields(type(conf)):
        value = getattr(conf, name)
        if value is not None:
            out[key] = kind.dump(value)
    return out


def merge(base: C | None, over: C | None) -> C | None:
    """``over`` on top of ``base``: its set fields win; nested confs merge field by field;
    lists (and anything else) are replaced whole."""
    if base is None:
        return over
    if over is None:
        return base
    changes: dict[str, Any] = {}
    for name, _, kind in _fields(type(base)):
        mine, theirs = getattr(base, name), getattr(over, name)
        if theirs is None:
            continue
        changes[name] = merge(mine, theirs) if isinstance(kind, Nested) else theirs
    return dataclasses.replace(base, **changes)  # type: ignore[type-var]


@functools.lru_cache(maxsize=1024)
def seconds(value: str) -> float:
    """A validated duration in seconds."""
    return parse_duration(value)


def decimal(value: int | str) -> float:
    """A validated ``Percent`` value as a number."""
    return float(Decimal(value))


__all__ = [
    "BOOL",
    "DURATION",
    "POSITIVE_DURATION",
    "UINT32",
    "Conf",
    "FieldSpec",
    "Integer",
    "Kind",
    "ListOf",
    "Nested",
    "OneOf",
    "Percent",
    "StringMap",
    "Text",
    "conf_field",
    "decimal",
    "json_name",
    "merge",
    "parse_conf",
    "seconds",
    "to_doc",
]
