"""The one way kumadp parses YAML and JSON it did not write itself.

Every document from outside (API bodies, dataplane files, ``ctl apply`` files, the ctl
config, bootstraps) goes through here, so each is parsed the same careful way:

- YAML aliases are refused (``*name``, and so merge keys ``<<: *name``): a few hundred bytes
  of aliases expand into gigabytes ("billion laughs");
- nesting deeper than ``MAX_DEPTH`` levels is refused, for YAML and JSON alike, before it can
  exhaust the recursion of a parser or of the code that walks the document;
- a key given twice in one mapping is an error (the second would silently win);
- only the safe tags (no Python objects).

YAML errors are ``yaml.MarkedYAMLError`` (with a line and column) like PyYAML's own, so
callers format them as they already do; JSON errors are ``ValueError``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

MAX_DEPTH = 64  # levels of nested mappings/lists a document may have
MAX_DOCUMENT_BYTES = 1024 * 1024  # the default size cap of a document from outside


class SafeLoader(yaml.SafeLoader):
    """PyYAML's pure-Python safe loader without aliases, with a depth cap and no duplicate
    keys. (The C loader cannot be hooked; a 1 MiB document parses fast enough.)"""

    max_depth = MAX_DEPTH

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ComposerError(
                None, None, "YAML aliases (*name) are not allowed", event.start_mark
            )
        self._depth += 1
        try:
            if self._depth > self.max_depth:
                event = self.peek_event()
                raise ComposerError(
                    None,
                    None,
                    f"nesting deeper than {self.max_depth} levels is not allowed",
                    event.start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if duplicate:
                raise ConstructorError(None, None, f'duplicate key "{key}"', key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str | bytes) -> Any:
    """One YAML document (None when empty); ``yaml.YAMLError`` when it is not safe YAML."""
    return yaml.load(text, Loader=SafeLoader)


def load_yaml_all(text: str | bytes) -> Iterator[Any]:
    """Every document of a YAML stream, lazily; ``yaml.YAMLError`` as ``load_yaml``."""
    return yaml.load_all(text, Loader=SafeLoader)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON value")


def load_json(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """A JSON document; ``ValueError`` (one line) when it is invalid, holds NaN/Infinity or
    nests deeper than ``max_depth``."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError(f"nesting deeper than {max_depth} levels is not allowed") from None
    check_depth(value, max_depth)
    return value


def check_depth(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """``ValueError`` when ``value`` nests dicts/lists deeper than ``max_depth`` (iterative:
    no recursion however deep the value is)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            raise ValueError(f"nesting deeper than {max_depth} levels is not allowed")
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def read_capped(stream: BinaryIO, limit: int, what: str) -> bytes:
    """Everything ``stream`` holds, read in chunks; ``ValueError`` as soon as it passes
    ``limit`` bytes (``/dev/zero`` stops at the cap, it is never read whole)."""
    chunks: list[bytes] = []
    size = 0
    while chunk := stream.read(min(64 * 1024, limit + 1 - size)):
        size += len(chunk)
        if size > limit:
            raise ValueError(f"{what} is larger than {limit} bytes (the limit)")
        chunks.append(chunk)
    return b"".join(chunks)


def read_text_file(path: str | Path, limit: int, what: str) -> str:
    """A UTF-8 file (``-`` = stdin) of at most ``limit`` bytes; ``OSError`` when it cannot
    be read, ``ValueError`` when too large or not UTF-8."""
    if str(path) == "-":
        raw = read_capped(sys.stdin.buffer, limit, what)
    else:
        with open(path, "rb") as f:
            raw = read_capped(f, limit, what)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{what} is not UTF-8 text") from None


def yaml_error_text(exc: yaml.YAMLError) -> str:
    """A YAML error in one line: ``at line 3, column 5: <problem>``."""
    if isinstance(exc, yaml.MarkedYAMLError):
        where = ""
        if exc.problem_mark is not None:
            mark = exc.problem_mark
            where = f"at line {mark.line + 1}, column {mark.column + 1}: "
        return f"{where}{exc.problem or exc.context or 'invalid YAML'}"
    return " ".join(str(exc).split())[:200]


__all__ = [
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "SafeLoader",
    "check_depth",
    "load_json",
    "load_yaml",
    "load_yaml_all",
    "read_capped",
    "read_text_file",
    "yaml_error_text",
]
