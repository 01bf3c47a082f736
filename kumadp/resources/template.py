"""From text to a resource document: ``key=value`` variables, ``{{ placeholder }}`` templates
(as ``kuma-dp run --dataplane-file dp.yaml -v name=web``) and YAML/JSON loading.

Differences from Kuma, on purpose:

- ``-v a.b=1 -v a.c=2`` merges deeply into ``{"a": {"b": "1", "c": "2"}}`` (Kuma keeps
  only the last one), and ``a=1`` with ``a.b=2`` is an error instead of a silent overwrite.
- A placeholder with no value is an error naming it (Kuma renders it as an empty string),
  and every missing one is listed at once. Placeholders in full-line YAML comments are left
  alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import yaml

from kumadp.resources.errors import QUOTE_LIMIT, FieldError, ValidationError, quoted
from kumadp.resources.safe_load import load_yaml_all

_BRACE = re.compile(r"[{}]")  # one character class: no backtracking
_VAR_NAME = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*")
_COMMENT_LINE = re.compile(r"\s*#")


def _item_path(item: str) -> str:
    return f"variable {json.dumps(item)}"


def parse_vars(items: list[str]) -> dict[str, Any]:
    """``["a.b=1", "a.c=2", "name=web"]`` -> ``{"a": {"b": "1", "c": "2"}, "name": "web"}``.

    Dotted keys nest and merge deeply; values stay strings; a later item with the same key
    wins. Raises ``ValidationError`` naming every malformed or conflicting item."""
    errors: list[FieldError] = []
    result: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}  # leaf key path -> the dotted key that set it
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            errors.append(FieldError(_item_path(item), 'missing "=" (expected key=value)'))
            continue
        if not key:
            errors.append(FieldError(_item_path(item), "empty key (expected key=value)"))
            continue
        parts = tuple(key.split("."))
        if not all(parts):
            errors.append(FieldError(_item_path(item), f'key "{key}" has an empty part'))
            continue
        conflict = _conflict(parts, origin)
        if conflict is not None:
            reason = (
                f'"{key}" conflicts with "{conflict}": a variable is a value or a group, not both'
            )
            errors.append(FieldError(_item_path(item), reason))
            continue
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        origin[parts] = key
    if errors:
        raise ValidationError(errors)
    return result


def _conflict(parts: tuple[str, ...], origin: dict[tuple[str, ...], str]) -> str | None:
    """The key of an earlier item that ``parts`` cannot coexist with: one that set a prefix of
    it to a value (``a`` then ``a.b``), or one below it (``a.b`` then ``a``)."""
    for n in range(1, len(parts)):
        if parts[:n] in origin:
            return origin[parts[:n]]
    for other, key in origin.items():
        if len(other) > len(parts) and other[: len(parts)] == parts:
            return key
    return None


def _lookup(variables: dict[str, Any], name: str) -> tuple[bool, Any]:
    node: Any = variables
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _substitute_placeholders(line: str, substitute: Callable[[str, str], str]) -> str:
    """Replace each ``{{ name }}`` (or ``{{{ name }}}``) of ``line`` with
    ``substitute(raw, name)``, ``name`` stripped of spaces. A linear scan: each character is
    looked at a bounded number of times, whatever the input (``{{`` followed by a million
    spaces costs a million steps, not a million cubed as a backtracking pattern would)."""
    out: list[str] = []
    pos = 0  # everything before pos is in out
    start = line.find("{{")
    while start != -1:
        triple = line.startswith("{", start + 2)
        body = start + (3 if triple else 2)
        brace = _BRACE.search(line, body)  # the first brace after the opening
        if brace is None:
            break  # no closing anywhere after this point
        end = brace.start()
        closing = "}}}" if triple else "}}"
        if line.startswith(closing, end):
            out.append(line[pos:start])
            raw = line[start : end + len(closing)]
            out.append(substitute(raw, line[body:end].strip()))
            pos = end + len(closing)
            start = line.find("{{", pos)
        else:
            # a brace inside: no placeholder opens here; the next "{{" is at or after it
            start = line.find("{{", start + 1)
    out.append(line[pos:])
    return "".join(out)


def render(text: str, variables: dict[str, Any]) -> str:
    """Replace every ``{{ name }}`` / ``{{ a.b }}`` placeholder with its value (dotted names
    look into nested dicts). Raises ``ValidationError`` listing every placeholder without a
    value, or one that names a group of variables rather than a value."""
    errors: dict[str, FieldError] = {}  # keyed by placeholder, each reported once

    def substitute(raw: str, name: str) -> str:
        label = f"{{{{ {quoted(name)[1:-1] if len(name) > QUOTE_LIMIT else name} }}}}"
        if not _VAR_NAME.fullmatch(name):
            reason = "not a variable name (only {{ name }} and {{ a.b }} are supported)"
            errors.setdefault(label, FieldError(label, reason))
            return raw
        found, value = _lookup(variables, name)
        if not found or value is None:
            reason = f"no value given (use --dataplane-var {name}=...)"
            errors.setdefault(label, FieldError(label, reason))
            return raw
        if isinstance(value, dict):
            inner = ", ".join(f"{name}.{k}" for k in value)
            reason = f"is a group of variables ({inner}), not a value"
            errors.setdefault(label, FieldError(label, reason))
            return raw
        return str(value)

    lines = [
        line if _COMMENT_LINE.match(line) else _substitute_placeholders(line, substitute)
        for line in text.splitlines(keepends=True)
    ]
    if errors:
        raise ValidationError(list(errors.values()))
    return "".join(lines)


def load_document(text: str, source: str = "<input>") -> Any:
    """Parse one YAML (or JSON) document. Errors are on path ``source``: a syntax error gives
    its line and column; an empty input or several documents are errors too."""
    try:
        docs = [doc for doc in load_yaml_all(text) if doc is not None]
    except yaml.MarkedYAMLError as exc:
        where = ""
        if exc.problem_mark is not None:
            mark = exc.problem_mark
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        raise ValidationError.single(source, f"invalid YAML{where}: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise ValidationError.single(source, f"invalid YAML: {exc}") from exc
    if not docs:
        raise ValidationError.single(source, "document is empty")
    if len(docs) > 1:
        reason = f"has {len(docs)} YAML documents; give exactly one resource"
        raise ValidationError.single(source, reason)
    return docs[0]


def render_resource(text: str, items: list[str], source: str = "<input>") -> Any:
    """``parse_vars(items)``, ``render`` the template ``text`` with them, ``load_document``."""
    return load_document(render(text, parse_vars(items)), source)
