"""Validation errors for resources: every problem found, each tied to the field it is about.

A ``FieldError`` names one field by its path in the document (``networking.inbound[0].port``)
and says what is wrong with it. A ``ValidationError`` carries all of them at once, so a user
fixes a file in one go rather than one error per run.

``ErrorCollector`` is the tool the validators use to walk a document: typed readers
(``string``, ``port``, ``string_map``...) that record a ``FieldError`` and return ``None``
when a value is missing or has the wrong type, and ``raise_if_any()`` at the end.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import reprlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, TypeVar


@dataclass(frozen=True)
class FieldError:
    """One problem with one field: ``path`` is where (``networking.inbound[0].port``),
    ``reason`` is what (``must be 1-65535``)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class ValidationError(Exception):
    """A document (or a command-line input) is not valid; ``errors`` lists every problem."""

    def __init__(self, errors: list[FieldError]) -> None:
        if not errors:
            raise ValueError("ValidationError needs at least one FieldError")
        self.errors: list[FieldError] = list(errors)
        super().__init__(self.errors)

    @classmethod
    def single(cls, path: str, reason: str) -> ValidationError:
        return cls([FieldError(path, reason)])

    def __str__(self) -> str:
        return "; ".join(str(e) for e in self.errors)


M = TypeVar("M")


@dataclass(frozen=True)
class ValidationResult(Generic[M]):
    """A valid resource and the warnings its document gave: Kuma fields kumadp accepts but
    does not implement (each names the field and what ignoring it means)."""

    model: M
    warnings: tuple[FieldError, ...] = ()


# The warnings of the parse running in this context (see ``collect_warnings``).
_WARNINGS: ContextVar[list[FieldError] | None] = ContextVar("kumadp_warnings", default=None)


@contextmanager
def collect_warnings() -> Iterator[list[FieldError]]:
    """Collect the warnings of every parse run inside the block into the list it yields.
    Parsers report through ``ErrorCollector``, so any parser (of any resource type) has
    this channel without a change to its signature."""
    found: list[FieldError] = []
    token = _WARNINGS.set(found)
    try:
        yield found
    finally:
        _WARNINGS.reset(token)


def field_path(parent: str, name: str) -> str:
    """``parent.name``, or just ``name`` at the top of a document."""
    return f"{parent}.{name}" if parent else name


def index_path(parent: str, index: int) -> str:
    """``parent[index]``: an element of a list."""
    return f"{parent}[{index}]"


def key_path(parent: str, key: object) -> str:
    """``parent["key"]``: an entry of a map whose keys are data (tags, labels)."""
    return f"{parent}[{json.dumps(str(key))}]"


_HOST_LABEL = re.compile(r"[a-zA-Z0-9_]([-a-zA-Z0-9_]*[a-zA-Z0-9_])?")


def parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address ``value`` is, or None when it is not one."""
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def is_hostname(value: str) -> bool:
    """A DNS name: dot-separated labels of letters, digits, '-' and '_' (not only digits)."""
    if len(value) > 253 or re.fullmatch(r"[\d.]+", value):
        return False  # only digits and dots: a broken IPv4 address, not a name
    return all(len(label) <= 63 and _HOST_LABEL.fullmatch(label) for label in value.split("."))


QUOTE_LIMIT = 40  # characters of a value an error message repeats at most
MAX_ERRORS = 100  # problems a ValidationError lists at most
MAX_PATH = 200  # characters of a field path (its keys come from the document)
MAX_REASON = 600  # our own text: user values in it are quoted() short already


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel = 2
_SHORT_REPR.maxdict = _SHORT_REPR.maxlist = _SHORT_REPR.maxtuple = _SHORT_REPR.maxset = 3
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = QUOTE_LIMIT


def quoted(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """A value as a user wrote it: strings in double quotes, anything else as Python shows it,
    at most a short prefix of it (``"aaaa..." (12000 characters)``): an error message never
    repeats a whole hostile value, and building it costs the same for a huge one."""
    if isinstance(value, str):
        if len(value) <= limit:
            return json.dumps(value)
        return f'{json.dumps(value[:limit])[:-1]}..." ({len(value)} characters)'
    shown = _SHORT_REPR.repr(value)
    return shown if len(shown) <= limit + 10 else shown[: limit + 10] + "..."


class ErrorCollector:
    """Collects ``FieldError``s while a document is walked; ``raise_if_any()`` at the end.

    Every reader takes the object holding the field, the object's path and the field's key,
    records what is wrong (``is required``, ``must be a string``...) and returns ``None`` when
    the value cannot be used. An explicit ``null`` counts as absent, as in Kuma.
    """

    def __init__(self) -> None:
        self.errors: list[FieldError] = []
        self.warnings: list[FieldError] = []
        self.not_shown = 0  # problems past MAX_ERRORS

    def add(self, path: str, reason: str) -> None:
        if len(self.errors) >= MAX_ERRORS:
            self.not_shown += 1
            return
        self.errors.append(FieldError(_short(path, MAX_PATH), _short(reason, MAX_REASON)))

    def warn(self, path: str, reason: str) -> None:
        """A field that is accepted but has no effect (``collect_warnings`` gets it)."""
        warning = FieldError(path, reason)
        self.warnings.append(warning)
        sink = _WARNINGS.get()
        if sink is not None and warning not in sink:
            sink.append(warning)

    def raise_if_any(self) -> None:
        if self.errors:
            more = [FieldError("(more)", f"{self.not_shown} more problems not shown")]
            raise ValidationError(self.errors + (more if self.not_shown else []))

    def is_object(self, value: Any, path: str) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.add(path, "must be an object")
            return None
        return value

    def fields(
        self,
        obj: dict[Any, Any],
        path: str,
        known: Iterable[str],
        unsupported: Iterable[str] = (),
        ignored: Mapping[str, str] | None = None,
    ) -> None:
        """Check the keys of ``obj`` against three classes of Kuma fields besides ``known``:

        - ``ignored``: a Kuma field kumadp accepts without implementing it, because ignoring
          it changes neither traffic nor security: a warning naming it and saying what
          ignoring it means (the value);
        - ``unsupported``: a Kuma field whose absence would change traffic or security: an
          error, "not supported yet";
        - anything else is unknown (a typo): an error with the closest known field.

        Output-only fields (``kri``, times) are simply part of ``known``."""
        known_names = frozenset(known)
        ignored = ignored or {}
        by_lower = {k.lower(): k for k in (*known_names, *ignored, *unsupported)}
        unsupported = tuple(unsupported)
        for key in obj:
            name = str(key)
            if key in known_names:
                continue
            if name in ignored:
                if obj[key] is not None:
                    self.warn(field_path(path, name), f"ignored: {ignored[name]}")
                continue
            if name in unsupported:
                self.add(field_path(path, name), "not supported yet by kumadp")
                continue
            if len(self.errors) >= MAX_ERRORS:
                self.not_shown += 1  # no suggestion to compute: it would not be shown
                continue
            close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
            hint = f' (did you mean "{by_lower[close[0]]}"?)' if close else ""
            self.add(field_path(path, name), f"unknown field{hint}")

    def _present(self, obj: dict[str, Any], parent: str, key: str, required: bool) -> Any:
        value = obj.get(key)
        if value is None and required:
            self.add(field_path(parent, key), "is required")
        return value

    def string(
        self, obj: dict[str, Any], parent: str, key: str, required: bool = False
    ) -> str | None:
        value = self._present(obj, parent, key, required)
        if value is None or isinstance(value, str):
            return value
        self.add(field_path(parent, key), "must be a string")
        return None

    def one_of(
        self,
        obj: dict[str, Any],
        parent: str,
        key: str,
        allowed: tuple[str, ...],
        required: bool = False,
    ) -> str | None:
        value = self.string(obj, parent, key, required)
        if value is not None and value not in allowed:
            self.add(field_path(parent, key), f"must be one of {', '.join(allowed)}")
            return None
        return value

    def integer(
        self, obj: dict[str, Any], parent: str, key: str, required: bool = False
    ) -> int | None:
        value = self._present(obj, parent, key, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(field_path(parent, key), "must be an integer")
            return None
        return value

    def port(
        self, obj: dict[str, Any], parent: str, key: str, required: bool = False
    ) -> int | None:
        value = self.integer(obj, parent, key, required)
        if value is not None and not 1 <= value <= 65535:
            self.add(field_path(parent, key), "must be 1-65535")
            return None
        return value

    def mapping(
        self, obj: dict[str, Any], parent: str, key: str, required: bool = False
    ) -> dict[str, Any] | None:
        value = self._present(obj, parent, key, required)
        return None if value is None else self.is_object(value, field_path(parent, key))

    def sequence(self, obj: dict[str, Any], parent: str, key: str) -> list[Any] | None:
        """The list at ``key``: ``[]`` when absent, ``None`` when not a list."""
        value = obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(field_path(parent, key), "must be a list")
            return None
        return value

    def string_map(
        self,
        obj: dict[str, Any],
        parent: str,
        key: str,
        charset: re.Pattern[str] | None = None,
        charset_rule: str = "",
    ) -> dict[str, str] | None:
        """A map of non-empty string keys to string values (labels, tags); ``charset``, when
        given, is what keys and values must fully match (``charset_rule`` says it in words)."""
        raw = self.mapping(obj, parent, key)
        if raw is None:
            return None
        path = field_path(parent, key)
        out: dict[str, str] = {}
        for k, v in raw.items():
            if not isinstance(k, str) or not k:
                self.add(key_path(path, k), "key must be a non-empty string")
            elif charset is not None and not charset.fullmatch(k):
                self.add(key_path(path, k), f"key must contain {charset_rule}")
            elif not isinstance(v, str):
                self.add(key_path(path, k), "must be a string")
            elif charset is not None and not charset.fullmatch(v):
                self.add(key_path(path, k), f"value must contain {charset_rule}")
            else:
                out[k] = v
        return out if len(out) == len(raw) else None

    def address(
        self,
        obj: dict[str, Any],
        parent: str,
        key: str,
        *,
        required: bool = False,
        hostname: bool = True,
        routable: bool = False,
    ) -> str | None:
        """An IP address, or also a DNS name when ``hostname``. ``routable``: other dataplanes
        connect to it, so 0.0.0.0 and :: make no sense there."""
        value = self.string(obj, parent, key, required)
        if value is None:
            return None
        ip = parse_ip(value)
        if ip is None and not (hostname and is_hostname(value)):
            expected = "an IP address or a hostname" if hostname else "an IP address"
            self.add(field_path(parent, key), f"must be {expected}")
            return None
        if routable and ip is not None and ip.is_unspecified:
            reason = "must not be 0.0.0.0 or :: (other dataplanes connect to this address)"
            self.add(field_path(parent, key), reason)
            return None
        return value
