"""Parsing of a Dataplane's inbounds and outbounds (``networking.inbound[]`` and
``networking.outbound[]``), part of ``kumadp.resources.validate``.

Kuma 2.14's forms are taken as Kuma takes them:

- an inbound with ``tags`` (``kuma.io/service`` required), or without tags: then its service is
  the dataplane's ``kuma.io/workload`` label and its protocol its own ``protocol`` field (Kuma's
  MeshService generator reads them the same way); ``name`` is what policies' ``sectionName``
  names; ``state`` ``NotReady`` or ``health.ready: false`` keep it out of other dataplanes'
  endpoints, ``Ignored`` also gets it no listener;
- an outbound with ``tags`` or a ``backendRef`` to a MeshService by ``name`` and ``port``: with
  no MeshService resources in kumadp, the name is a ``kuma.io/service`` and the port one of its
  inbound ports, as Kuma generates MeshServices on universal.
"""

from __future__ import annotations

from typing import Any

from kumadp.resources.checks import TAG_CHARS, TAG_RULE
from kumadp.resources.errors import ErrorCollector, field_path, key_path
from kumadp.resources.model import (
    INBOUND_STATES,
    PROTOCOL_TAG,
    PROTOCOLS,
    READY,
    SERVICE_TAG,
    WORKLOAD_LABEL,
    BackendRef,
    Inbound,
    Outbound,
)

_INBOUND_FIELDS = (
    "port",
    "servicePort",
    "serviceAddress",
    "address",
    "tags",
    "name",
    "protocol",
    "health",
    "state",
)
_INBOUND_IGNORED = {
    "serviceProbe": "no probe runs; the inbound counts as healthy while its proxy is online",
}
_OUTBOUND_FIELDS = ("port", "address", "tags", "backendRef")
_BACKEND_REF_FIELDS = ("kind", "name", "port")
_BACKEND_REF_UNSUPPORTED = ("labels", "namespace")
MESH_SERVICE = "MeshService"
_BACKEND_KINDS_LATER = ("MeshExternalService", "MeshMultiZoneService")


def parse_tags(
    c: ErrorCollector, obj: dict[str, Any], parent: str, *, required: bool = True
) -> dict[str, str] | None:
    """``parent.tags`` with a non-empty ``kuma.io/service``; absent and not ``required``:
    ``{}``."""
    path = field_path(parent, "tags")
    if obj.get("tags") is None:
        if not required:
            return {}
        c.add(path, f'is required (with at least "{SERVICE_TAG}")')
        return None
    tags = c.string_map(obj, parent, "tags", TAG_CHARS, TAG_RULE)
    if tags is None:
        return None
    if not tags.get(SERVICE_TAG):
        c.add(
            key_path(path, SERVICE_TAG),
            "must not be empty" if SERVICE_TAG in tags else "is required",
        )
        return None
    protocol = tags.get(PROTOCOL_TAG)
    if protocol is not None and protocol not in PROTOCOLS:
        c.add(key_path(path, PROTOCOL_TAG), f"must be one of {', '.join(PROTOCOLS)}")
        return None
    return tags


def _health(c: ErrorCollector, obj: dict[str, Any], path: str) -> bool | None:
    health = c.mapping(obj, path, "health")
    if health is None:
        return None
    health_path = field_path(path, "health")
    c.fields(health, health_path, ("ready",))
    ready = health.get("ready", False)  # protobuf's default: an empty health is not ready
    if not isinstance(ready, bool):
        c.add(field_path(health_path, "ready"), "must be true or false")
        return None
    return ready


def parse_inbound(
    c: ErrorCollector, raw: Any, path: str, labels: dict[str, str] | None
) -> Inbound | None:
    """One inbound; ``labels`` are the dataplane's (its ``kuma.io/workload`` names the
    service of an inbound without tags)."""
    obj = c.is_object(raw, path)
    if obj is None:
        return None
    c.fields(obj, path, _INBOUND_FIELDS, ignored=_INBOUND_IGNORED)
    port = c.port(obj, path, "port", required=True)
    service_port = c.port(obj, path, "servicePort")
    service_address = c.address(obj, path, "serviceAddress", hostname=False)
    address = c.address(obj, path, "address", routable=True)
    name = c.string(obj, path, "name")
    if name == "":
        c.add(field_path(path, "name"), "must not be empty")
    app_protocol = c.one_of(obj, path, "protocol", PROTOCOLS)
    state = c.one_of(obj, path, "state", INBOUND_STATES) or READY
    health_ready = _health(c, obj, path)
    derived = not obj.get("tags")  # absent or {}: Kuma 2.14's inbound without tags
    tags: dict[str, str] | None = {}
    if not derived:
        tags = parse_tags(c, obj, path)
    else:
        workload = (labels or {}).get(WORKLOAD_LABEL)
        if not workload:
            c.add(
                field_path(path, "tags"),
                f'is required (with at least "{SERVICE_TAG}") unless the dataplane has a '
                f'"{WORKLOAD_LABEL}" label naming the service of its inbounds without tags',
            )
            return None
        tags = {SERVICE_TAG: workload}
        if app_protocol is not None:
            tags[PROTOCOL_TAG] = app_protocol
    if port is None or tags is None:
        return None
    return Inbound(
        port=port,
        tags=tags,
        service_port=port if service_port is None else service_port,
        address=address,
        service_address=service_address,
        name=name or None,
        app_protocol=app_protocol,
        state=state,
        health_ready=health_ready,
        tags_derived=derived,
    )


def _backend_ref(c: ErrorCollector, obj: dict[str, Any], path: str) -> BackendRef | None:
    ref = c.mapping(obj, path, "backendRef")
    if ref is None:
        return None
    ref_path = field_path(path, "backendRef")
    before = len(c.errors)
    c.fields(ref, ref_path, _BACKEND_REF_FIELDS, _BACKEND_REF_UNSUPPORTED)
    kind = c.string(ref, ref_path, "kind", required=True)
    if kind in _BACKEND_KINDS_LATER:
        c.add(field_path(ref_path, "kind"), f"{kind} is not supported yet by kumadp")
    elif kind is not None and kind != MESH_SERVICE:
        c.add(field_path(ref_path, "kind"), f"must be {MESH_SERVICE}")
    name = c.string(ref, ref_path, "name", required=ref.get("labels") is None)
    if name is not None and (not name or not TAG_CHARS.fullmatch(name)):
        c.add(field_path(ref_path, "name"), f"must be a service name: {TAG_RULE}")
    port = c.port(ref, ref_path, "port", required=True)
    if len(c.errors) > before or name is None or port is None:
        return None
    return BackendRef(name=name, port=port)


def parse_outbound(c: ErrorCollector, raw: Any, path: str) -> Outbound | None:
    obj = c.is_object(raw, path)
    if obj is None:
        return None
    c.fields(obj, path, _OUTBOUND_FIELDS)
    port = c.port(obj, path, "port", required=True)
    address = c.address(obj, path, "address", hostname=False)
    if obj.get("backendRef") is not None:
        if obj.get("tags"):
            c.add(field_path(path, "backendRef"), "must not be given together with tags")
            return None
        ref = _backend_ref(c, obj, path)
        if port is None or ref is None:
            return None
        service = {SERVICE_TAG: ref.name}
        return Outbound(port=port, tags=service, address=address or "127.0.0.1", backend_ref=ref)
    tags = parse_tags(c, obj, path)
    if port is None or tags is None:
        return None
    return Outbound(port=port, tags=tags, address=address or "127.0.0.1")


__all__ = ["MESH_SERVICE", "parse_inbound", "parse_outbound", "parse_tags"]
