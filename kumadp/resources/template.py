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
from typing import Any

import yaml

from kumadp.resources.errors import FieldError, ValidationError

# {{ name }}, {{name}}, {{ a.b }}; the triple-brace form {{{ name }}} means the same here.
_PLACEHOLDER = re.compile(r"\{\{(\{)?\s*([^{}]*?)\s*(?(1)\}\}\}|\}\})")
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


def render(text: str, variables: dict[str, Any]) -> str:
    """Replace every ``{{ name }}`` / ``{{ a.b }}`` placeholder with its value (dotted names
    look into nested dicts). Raises ``ValidationError`` listing every placeholder without a
    value, or one that names a group of variables rather than a value."""
    errors: dict[str, FieldError] = {}  # keyed by placeholder, each reported once

    def substitute(match: re.Match[str]) -> str:
        name = match.group(2)
        label = f"{{{{ {name} }}}}"
        if not _VAR_NAME.fullmatch(name):
            reason = "not a variable name (only {{ name }} and {{ a.b }} are supported)"
            errors.setdefault(label, FieldError(label, reason))
            return match.group(0)
        found, value = _lookup(variables, name)
        if not found or value is None:
            reason = f"no value given (use --dataplane-var {name}=...)"
            errors.setdefault(label, FieldError(label, reason))
            return match.group(0)
        if isinstance(value, dict):
            inner = ", ".join(f"{name}.{k}" for k in value)
            reason = f"is a group of variables ({inner}), not a value"
            errors.setdefault(label, FieldError(label, reason))
            return match.group(0)
        return str(value)

    lines = [
        line if _COMMENT_LINE.match(line) else _PLACEHOLDER.sub(substitute, line)
        for line in text.splitlines(keepends=True)
    ]
    if errors:
        raise ValidationError(list(errors.values()))
    return "".join(lines)


class _StrictLoader(yaml.SafeLoader):
    """The safe loader, except that a key given twice in one mapping is an error."""

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
                raise yaml.constructor.ConstructorError(
                    None, None, f'duplicate key "{key}"', key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


def load_document(text: str, source: str = "<input>") -> Any:
    """Parse one YAML (or JSON) document. Errors are on path ``source``: a syntax error gives
    its line and column; an empty input or several documents are errors too."""
    try:
        docs = [doc for doc in yaml.load_all(text, Loader=_StrictLoader) if doc is not None]
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
