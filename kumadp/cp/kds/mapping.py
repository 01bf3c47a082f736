"""How a stored resource travels over KDS, and how its copy is named and labelled.

- On the wire a resource is a ``KumaResource`` (``kumadp/wire/kds.proto``): its meta (name,
  mesh, version, labels, type) and its document without them as JSON text, packed in an
  ``Any``. Its delta xDS name is its ``key``: ``<mesh>/<name>``, or ``<name>`` for a
  global-scoped type. The type URL of a type is its bare name (``Mesh``).
- Its version is a hash of its content (type, mesh, name, labels, spec), so an unchanged
  resource has the same version on every start of every CP: a receiver that kept the
  version of its copy is sent nothing after a reconnect.
- The copy a receiver stores is named as Kuma names it: mesh-scoped copies (and anything
  from a zone) get ``<name>-<16 hex>``, a hash that includes the zone for zone-originated
  resources, so two zones' ``web-1`` never collide on the global CP; global-scoped copies
  from the global CP (Mesh) keep their name. The copy is labelled with where it comes from
  (``kuma.io/origin``, and ``kuma.io/zone`` at the global CP), its original name
  (``kuma.io/display-name``) and its version (``kds.kumadp.io/version``).
- Nothing that looks like a private key ever leaves: ``to_wire`` refuses it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError

from kumadp.wire import kds as wire
from kumadp.wire.kds_pb2 import KumaResource, ResourceMeta
from kumadp.xds.types import TYPE_URL_PREFIX

META_KEYS = ("type", "mesh", "name", "labels")
MAX_SPEC_BYTES = 1024 * 1024  # one resource's document, as JSON text
MAX_DEPTH = 32  # nesting of a received document
MAX_NAME = 253
HASH_CHARS = 16
RESOURCE_TYPE_URL = TYPE_URL_PREFIX + wire.RESOURCE_MESSAGE
_PRIVATE_KEY_MARK = "PRIVATE KEY"  # PEM "-----BEGIN ... PRIVATE KEY-----"


class MappingError(Exception):
    """A resource cannot be sent, or a received one is malformed; the message says why."""


def resource_key(mesh: str, name: str) -> str:
    """The delta xDS name of a resource: ``<mesh>/<name>``, or ``<name>`` without a mesh."""
    return f"{mesh}/{name}" if mesh else name


def split_key(key: str) -> tuple[str, str]:
    """(mesh, name) of a key (names never hold a ``/``)."""
    mesh, slash, name = key.partition("/")
    return (mesh, name) if slash else ("", key)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_version(
    type: str, mesh: str, name: str, labels: Mapping[str, str], spec_json: str
) -> str:
    text = _canonical([type, mesh, name, dict(labels), spec_json])
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def copy_name(type_scoped_to_mesh: bool, name: str, mesh: str, zone: str | None) -> str:
    """The name of the copy of ``name`` a receiver stores (see the module docstring);
    ``zone``: the zone the resource comes from, None when it comes from the global CP."""
    if not type_scoped_to_mesh and zone is None:
        return name
    digest = hashlib.sha256(f"{zone or ''}/{mesh}/{name}".encode()).hexdigest()[:HASH_CHARS]
    return f"{name[: MAX_NAME - HASH_CHARS - 1]}-{digest}"


@dataclass(frozen=True)
class Outgoing:
    key: str
    version: str
    packed: any_pb2.Any


def to_wire(doc: Mapping[str, Any], origin: str) -> Outgoing:
    """A stored document as it travels: labels of the copy itself are dropped and
    ``kuma.io/origin`` says who sends it. Raises MappingError for anything holding a
    private key (never sent, whatever the type)."""
    type_name = str(doc.get("type") or "")
    mesh, name = str(doc.get("mesh") or ""), str(doc.get("name") or "")
    labels = {str(k): str(v) for k, v in labels_of(doc).items() if k not in wire.SYNC_LABELS}
    labels[wire.ORIGIN_LABEL] = origin
    spec = {k: v for k, v in doc.items() if k not in META_KEYS}
    spec_json = _canonical(spec)
    if _PRIVATE_KEY_MARK in spec_json or any(_PRIVATE_KEY_MARK in v for v in labels.values()):
        raise MappingError(f"{type_name} {resource_key(mesh, name)} holds a private key: not sent")
    version = content_version(type_name, mesh, name, labels, spec_json)
    message = KumaResource(
        meta=ResourceMeta(name=name, mesh=mesh, version=version, labels=labels, type=type_name),
        spec_json=spec_json,
    )
    packed = any_pb2.Any()
    packed.Pack(message)
    return Outgoing(resource_key(mesh, name), version, packed)


@dataclass(frozen=True)
class Incoming:
    """A received resource, checked for shape (not yet for content)."""

    type: str
    mesh: str
    name: str
    version: str
    labels: Mapping[str, str]
    spec: dict[str, Any]

    @property
    def key(self) -> str:
        return resource_key(self.mesh, self.name)


def from_wire(type_name: str, mesh_scoped: bool, resource: discovery_pb2.Resource) -> Incoming:
    """Unpack a received delta ``Resource`` of ``type_name``. Raises MappingError (one line,
    for the NACK) when it is malformed, too large, or not what its name says."""
    if resource.resource.type_url != RESOURCE_TYPE_URL:
        raise MappingError(f"carries {resource.resource.type_url or 'nothing'}, not a KumaResource")
    if len(resource.resource.value) > MAX_SPEC_BYTES + 64 * 1024:
        raise MappingError(f"larger than {MAX_SPEC_BYTES} bytes")
    message = KumaResource()
    try:
        message.ParseFromString(resource.resource.value)
    except DecodeError as exc:
        raise MappingError(f"not a valid KumaResource: {exc}") from None
    meta = message.meta
    if meta.type != type_name:
        raise MappingError(f"meta.type is {meta.type or 'empty'}, not {type_name}")
    if not meta.name:
        raise MappingError("meta.name is empty")
    if mesh_scoped != bool(meta.mesh):
        raise MappingError("meta.mesh: required" if mesh_scoped else "meta.mesh: must be empty")
    key = resource_key(meta.mesh, meta.name)
    if key != resource.name:
        raise MappingError(f'named "{resource.name}" but its meta says "{key}"')
    if len(message.spec_json) > MAX_SPEC_BYTES:
        raise MappingError(f"spec_json: larger than {MAX_SPEC_BYTES} bytes")
    try:
        spec = json.loads(message.spec_json or "{}")
    except (ValueError, RecursionError) as exc:
        raise MappingError(f"spec_json: not valid JSON ({type(exc).__name__})") from None
    if not isinstance(spec, dict):
        raise MappingError("spec_json: must be a JSON object")
    if _depth(spec) > MAX_DEPTH:
        raise MappingError(f"spec_json: nested deeper than {MAX_DEPTH} levels")
    clash = sorted(set(spec) & set(META_KEYS))
    if clash:
        raise MappingError(f"spec_json: {', '.join(clash)} belong in meta")
    version = resource.version or meta.version
    return Incoming(type_name, meta.mesh, meta.name, version, dict(meta.labels), spec)


def _depth(value: Any) -> int:
    """How deeply ``value`` nests (iteratively: no recursion on untrusted input)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


def local_copy(
    incoming: Incoming, *, mesh_scoped: bool, origin: str, zone: str | None
) -> dict[str, Any]:
    """The document a receiver stores for ``incoming``: the copy's name and labels set from
    what the receiver knows (``origin``, ``zone``: who sent it), never from the payload."""
    labels = {k: v for k, v in incoming.labels.items() if k not in wire.SYNC_LABELS}
    labels[wire.ORIGIN_LABEL] = origin
    if zone is not None:
        labels[wire.ZONE_LABEL] = zone
    labels[wire.DISPLAY_NAME_LABEL] = incoming.name
    labels[wire.VERSION_LABEL] = incoming.version
    doc: dict[str, Any] = {"type": incoming.type}
    if mesh_scoped:
        doc["mesh"] = incoming.mesh
    doc["name"] = copy_name(mesh_scoped, incoming.name, incoming.mesh, zone)
    doc["labels"] = labels
    doc.update(incoming.spec)
    return doc


def labels_of(doc: Mapping[str, Any]) -> Mapping[str, str]:
    labels = doc.get("labels")
    return labels if isinstance(labels, dict) else {}


def copy_key(doc: Mapping[str, Any]) -> str:
    """The key (upstream mesh and name) of a stored copy."""
    name = labels_of(doc).get(wire.DISPLAY_NAME_LABEL) or str(doc.get("name") or "")
    return resource_key(str(doc.get("mesh") or ""), name)


def copy_version(doc: Mapping[str, Any]) -> str | None:
    """The version a stored copy was written from; None for a resource that is no copy."""
    return labels_of(doc).get(wire.VERSION_LABEL)


__all__ = [
    "MAX_SPEC_BYTES",
    "META_KEYS",
    "RESOURCE_TYPE_URL",
    "Incoming",
    "MappingError",
    "Outgoing",
    "content_version",
    "copy_key",
    "copy_name",
    "copy_version",
    "from_wire",
    "labels_of",
    "local_copy",
    "resource_key",
    "split_key",
    "to_wire",
]
