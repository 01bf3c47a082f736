"""Checks every resource parser shares: the document itself, its ``type``, its names, and
the character rules of names and tags. Public, so that each parser (Dataplane, Mesh,
policies...) lives in its own module and none imports another's internals."""

from __future__ import annotations

import re
from typing import Any

from kumadp.resources.errors import ErrorCollector, field_path, quoted

# Output-only fields, accepted and ignored on every resource: Kuma's API (and so ``kumactl get
# -o yaml``) and kuma-dp's bootstrap request put them in, so what they print applies as is.
OUTPUT_ONLY_FIELDS = ("kri", "creationTime", "modificationTime")
IGNORED_FIELDS = OUTPUT_ONLY_FIELDS  # the earlier name

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
NAME = re.compile(r"[a-zA-Z0-9]([-a-zA-Z0-9._]*[a-zA-Z0-9])?")
TAG_CHARS = re.compile(r"[a-zA-Z0-9.\-_:/]*")  # Kuma's tag key and value charset
DNS_LABEL_RULE = (
    "1-63 lowercase letters, digits and '-', starting and ending with a letter or digit"
)
NAME_RULE = "1-253 letters, digits, '-', '.' and '_', starting and ending with a letter or digit"
TAG_RULE = "only letters, digits and '.', '-', '_', ':', '/'"


def open_document(doc: Any) -> tuple[ErrorCollector, dict[str, Any]]:
    """A collector and the document as an object; raises at once when it is not one."""
    c = ErrorCollector()
    obj = c.is_object(doc, "document")
    c.raise_if_any()
    assert obj is not None
    return c, obj


def check_type(c: ErrorCollector, doc: dict[str, Any], expected: str) -> None:
    value = doc.get("type")
    if value is None:
        c.add("type", f'is required (must be "{expected}")')
    elif value != expected:
        c.add("type", f'must be "{expected}", not {quoted(value)}')


def resource_name(
    c: ErrorCollector, obj: dict[str, Any], parent: str, key: str, dns_label: bool
) -> str:
    """A required resource name; ``dns_label`` for mesh names (Kuma: DNS-1123 label)."""
    value = c.string(obj, parent, key, required=True)
    if value is None:
        return ""
    if dns_label and (len(value) > 63 or not DNS_LABEL.fullmatch(value)):
        c.add(field_path(parent, key), f"must be a DNS-1123 label: {DNS_LABEL_RULE}")
    elif not dns_label and (len(value) > 253 or not NAME.fullmatch(value)):
        c.add(field_path(parent, key), f"must be {NAME_RULE}")
    return value


__all__ = [
    "DNS_LABEL",
    "DNS_LABEL_RULE",
    "IGNORED_FIELDS",
    "NAME",
    "NAME_RULE",
    "OUTPUT_ONLY_FIELDS",
    "TAG_CHARS",
    "TAG_RULE",
    "check_type",
    "open_document",
    "resource_name",
]
