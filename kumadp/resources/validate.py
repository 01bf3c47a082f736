"""Validate Dataplane and Mesh documents (parsed YAML/JSON) into the typed model.

Every ``parse_*`` function walks the whole document and collects every problem it finds, then
raises one ``ValidationError`` listing them all, each with the path of the field it is about
(``networking.inbound[0].port: must be 1-65535``). Checks shared with other parsers are in
``kumadp.resources.checks``; dispatch on ``type`` is the registry's
(``kumadp.resources.registry.parse_resource``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from kumadp.resources.checks import (
    IGNORED_FIELDS,
    TAG_CHARS,
    TAG_RULE,
    check_type,
    open_document,
    resource_name,
)
from kumadp.resources.durations import parse_duration
from kumadp.resources.errors import (
    ErrorCollector,
    field_path,
    index_path,
    key_path,
    parse_ip,
)
from kumadp.resources.initial_policies import INITIAL_POLICY_TYPES, SKIP_ALL
from kumadp.resources.model import (
    DATAPLANE_TYPE,
    MESH_TYPE,
    PROTOCOL_TAG,
    PROTOCOLS,
    SERVICE_TAG,
    Dataplane,
    Inbound,
    Mesh,
    Networking,
    Outbound,
    TransparentProxying,
)

# --- Dataplane ---------------------------------------------------------------------------

_DATAPLANE_FIELDS = ("type", "mesh", "name", "labels", "networking", *IGNORED_FIELDS)
_NETWORKING_FIELDS = (
    "address",
    "advertisedAddress",
    "admin",
    "inbound",
    "outbound",
    "transparentProxying",
)
_INBOUND_FIELDS = ("port", "servicePort", "serviceAddress", "address", "tags")
_OUTBOUND_FIELDS = ("port", "address", "tags")
_TP_FIELDS = ("redirectPortInbound", "redirectPortOutbound")
# Kuma fields that kumadp does not implement yet: said so, rather than "unknown field".
_DATAPLANE_UNSUPPORTED = ("metrics", "probes")
_NETWORKING_UNSUPPORTED = ("gateway",)
_INBOUND_UNSUPPORTED = ("name", "health", "serviceProbe", "state")
_OUTBOUND_UNSUPPORTED = ("backendRef",)
_TP_UNSUPPORTED = (
    "directAccessServices",
    "redirectPortInboundV6",
    "reachableServices",
    "reachableBackends",
    "ipFamilyMode",
)


def _tags(c: ErrorCollector, obj: dict[str, Any], parent: str) -> dict[str, str] | None:
    path = field_path(parent, "tags")
    if obj.get("tags") is None:
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


def _inbound(c: ErrorCollector, raw: Any, path: str) -> Inbound | None:
    obj = c.is_object(raw, path)
    if obj is None:
        return None
    c.fields(obj, path, _INBOUND_FIELDS, _INBOUND_UNSUPPORTED)
    port = c.port(obj, path, "port", required=True)
    service_port = c.port(obj, path, "servicePort")
    service_address = c.address(obj, path, "serviceAddress", hostname=False)
    address = c.address(obj, path, "address", routable=True)
    tags = _tags(c, obj, path)
    if port is None or tags is None:
        return None
    return Inbound(
        port=port,
        tags=tags,
        service_port=port if service_port is None else service_port,
        address=address,
        service_address=service_address,
    )


def _outbound(c: ErrorCollector, raw: Any, path: str) -> Outbound | None:
    obj = c.is_object(raw, path)
    if obj is None:
        return None
    c.fields(obj, path, _OUTBOUND_FIELDS, _OUTBOUND_UNSUPPORTED)
    port = c.port(obj, path, "port", required=True)
    address = c.address(obj, path, "address", hostname=False)
    tags = _tags(c, obj, path)
    if port is None or tags is None:
        return None
    return Outbound(port=port, tags=tags, address=address or "127.0.0.1")


def _transparent_proxying(c: ErrorCollector, obj: dict[str, Any]) -> TransparentProxying | None:
    path = "networking.transparentProxying"
    tp = c.mapping(obj, "networking", "transparentProxying")
    if tp is None:
        return None
    c.fields(tp, path, _TP_FIELDS, _TP_UNSUPPORTED)
    default = TransparentProxying()
    inbound = c.port(tp, path, "redirectPortInbound") or default.redirect_port_inbound
    outbound = c.port(tp, path, "redirectPortOutbound") or default.redirect_port_outbound
    if inbound == outbound:
        c.add(f"{path}.redirectPortOutbound", f"must differ from redirectPortInbound ({inbound})")
    return TransparentProxying(redirect_port_inbound=inbound, redirect_port_outbound=outbound)


@dataclass(frozen=True)
class _Socket:
    """An address and port something listens on, and the field that asks for it."""

    address: str
    port: int
    what: str = ""

    def clashes(self, other: _Socket) -> bool:
        if self.port != other.port:
            return False
        a, b = parse_ip(self.address), parse_ip(other.address)
        if a is not None and b is not None:
            return a == b or a.is_unspecified or b.is_unspecified
        return self.address.lower() == other.address.lower()

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


def _check_sockets(c: ErrorCollector, net: Networking) -> None:
    """Nothing may listen twice on one address and port: the admin API (on 127.0.0.1), the
    inbound and outbound listeners and, without transparent proxying, an inbound's listener
    and the application behind it."""
    used: list[_Socket] = []
    if net.admin_port is not None:
        used.append(_Socket("127.0.0.1", net.admin_port, "networking.admin.port"))
    listeners = [
        _Socket(i.address or net.address, i.port, f"networking.inbound[{n}]")
        for n, i in enumerate(net.inbound)
    ] + [
        _Socket(o.address, o.port, f"networking.outbound[{n}]") for n, o in enumerate(net.outbound)
    ]
    for socket in listeners:
        earlier = next((u for u in used if u.clashes(socket)), None)
        if earlier is not None:
            c.add(f"{socket.what}.port", f"{socket} is already used by {earlier.what}")
        used.append(socket)
    if net.transparent_proxying is not None:
        return  # inbound listeners do not bind their port: traffic is redirected to them
    for n, inbound in enumerate(net.inbound):
        listener = _Socket(inbound.address or net.address, inbound.port)
        app = _Socket(inbound.service_address or "127.0.0.1", inbound.service_port)
        if listener.clashes(app):
            c.add(
                f"networking.inbound[{n}].port",
                f"the inbound listener and the application would both use {app}; "
                "set servicePort (or serviceAddress) to where the application listens",
            )


def _networking(c: ErrorCollector, doc: dict[str, Any]) -> Networking | None:
    path = "networking"
    obj = c.mapping(doc, "", path, required=True)
    if obj is None:
        return None
    before = len(c.errors)
    c.fields(obj, path, _NETWORKING_FIELDS, _NETWORKING_UNSUPPORTED)
    address = c.address(obj, path, "address", required=True, routable=True)
    advertised = c.address(obj, path, "advertisedAddress", routable=True)
    admin_port = None
    admin = c.mapping(obj, path, "admin")
    if admin is not None:
        c.fields(admin, "networking.admin", ("port",))
        admin_port = c.port(admin, "networking.admin", "port")
    raw_inbound = c.sequence(obj, path, "inbound")
    if raw_inbound == []:
        c.add("networking.inbound", "needs at least one inbound (gateways are not supported yet)")
    inbound = [
        _inbound(c, raw, index_path("networking.inbound", n))
        for n, raw in enumerate(raw_inbound or [])
    ]
    outbound = [
        _outbound(c, raw, index_path("networking.outbound", n))
        for n, raw in enumerate(c.sequence(obj, path, "outbound") or [])
    ]
    tp = _transparent_proxying(c, obj)
    if len(c.errors) > before or address is None:
        return None
    net = Networking(
        address=address,
        inbound=tuple(i for i in inbound if i is not None),
        outbound=tuple(o for o in outbound if o is not None),
        advertised_address=advertised,
        admin_port=admin_port,
        transparent_proxying=tp,
    )
    _check_sockets(c, net)
    return net


def parse_dataplane(doc: Any) -> Dataplane:
    """A validated ``Dataplane`` from a document (as ``load_document`` returns it)."""
    c, obj = open_document(doc)
    c.fields(obj, "", _DATAPLANE_FIELDS, _DATAPLANE_UNSUPPORTED)
    check_type(c, obj, DATAPLANE_TYPE)
    mesh = resource_name(c, obj, "", "mesh", dns_label=True)
    name = resource_name(c, obj, "", "name", dns_label=False)
    labels = c.string_map(obj, "", "labels")
    networking = _networking(c, obj)
    c.raise_if_any()
    assert networking is not None
    return Dataplane(mesh=mesh, name=name, networking=networking, labels=labels or {})


# --- Mesh ----------------------------------------------------------------------------------

_MESH_FIELDS = ("type", "name", "labels", "mtls", "skipCreatingInitialPolicies", *IGNORED_FIELDS)
_MESH_UNSUPPORTED = (
    "metrics",
    "logging",
    "tracing",
    "networking",
    "routing",
    "constraints",
    "meshServices",
)
_BACKEND_FIELDS = ("name", "type", "mode", "dpCert", "conf")


def _duration(c: ErrorCollector, obj: dict[str, Any], parent: str, key: str) -> None:
    value = c.string(obj, parent, key)
    if value is None:
        return
    try:
        if parse_duration(value) <= 0:
            c.add(field_path(parent, key), "must be longer than 0")
    except ValueError as exc:
        c.add(field_path(parent, key), str(exc))


def _backend(c: ErrorCollector, raw: Any, path: str) -> str | None:
    """Check one mTLS backend; return its name."""
    obj = c.is_object(raw, path)
    if obj is None:
        return None
    c.fields(obj, path, _BACKEND_FIELDS, ("rootChain",))
    name = resource_name(c, obj, path, "name", dns_label=False)
    kind = c.one_of(obj, path, "type", ("builtin", "provided"), required=True)
    c.one_of(obj, path, "mode", ("STRICT", "PERMISSIVE"))
    dp_cert = c.mapping(obj, path, "dpCert")
    if dp_cert is not None:
        cert_path = f"{path}.dpCert"
        c.fields(dp_cert, cert_path, ("rotation",), ("requestTimeout",))
        rotation = c.mapping(dp_cert, cert_path, "rotation")
        if rotation is not None:
            c.fields(rotation, f"{cert_path}.rotation", ("expiration",))
            _duration(c, rotation, f"{cert_path}.rotation", "expiration")
    conf = c.mapping(obj, path, "conf")
    if conf is not None and kind == "builtin":  # "provided" conf: checked when it is used
        c.fields(conf, f"{path}.conf", ("caCert",))
        ca_cert = c.mapping(conf, f"{path}.conf", "caCert")
        if ca_cert is not None:
            ca_path = f"{path}.conf.caCert"
            c.fields(ca_cert, ca_path, ("RSAbits", "expiration"))
            bits = c.integer(ca_cert, ca_path, "RSAbits")
            if bits is not None and bits < 2048:
                c.add(f"{ca_path}.RSAbits", "must be at least 2048")
            _duration(c, ca_cert, ca_path, "expiration")
    return name or None


def _mtls(c: ErrorCollector, doc: dict[str, Any]) -> dict[str, Any] | None:
    obj = c.mapping(doc, "", "mtls")
    if obj is None:
        return None
    c.fields(obj, "mtls", ("enabledBackend", "backends"), ("skipValidation",))
    enabled = c.string(obj, "mtls", "enabledBackend")
    names: dict[str, int] = {}
    for n, raw in enumerate(c.sequence(obj, "mtls", "backends") or []):
        path = index_path("mtls.backends", n)
        name = _backend(c, raw, path)
        if name is not None and name in names:
            c.add(f"{path}.name", f'"{name}" is already used by mtls.backends[{names[name]}]')
        elif name is not None:
            names[name] = n
    if enabled and enabled not in names:
        known = ", ".join(f'"{n}"' for n in names) or "none is defined"
        c.add("mtls.enabledBackend", f'must name one of mtls.backends ({known}), not "{enabled}"')
    return copy.deepcopy(obj)


def _skip_initial_policies(c: ErrorCollector, doc: dict[str, Any]) -> tuple[str, ...]:
    """``skipCreatingInitialPolicies``: ``["*"]`` or types of initial policies."""
    allowed = (SKIP_ALL, *INITIAL_POLICY_TYPES)
    out = []
    for n, value in enumerate(c.sequence(doc, "", "skipCreatingInitialPolicies") or []):
        if value not in allowed:
            expected = ", ".join(f'"{a}"' for a in allowed)
            c.add(index_path("skipCreatingInitialPolicies", n), f"must be one of {expected}")
        else:
            out.append(value)
    return tuple(out)


def parse_mesh(doc: Any) -> Mesh:
    """A validated ``Mesh`` from a document (as ``load_document`` returns it)."""
    c, obj = open_document(doc)
    c.fields(obj, "", _MESH_FIELDS, _MESH_UNSUPPORTED)
    check_type(c, obj, MESH_TYPE)
    name = resource_name(c, obj, "", "name", dns_label=True)
    labels = c.string_map(obj, "", "labels")
    mtls = _mtls(c, obj)
    skip = _skip_initial_policies(c, obj)
    c.raise_if_any()
    return Mesh(name=name, mtls=mtls, labels=labels or {}, skip_creating_initial_policies=skip)


__all__ = ["parse_dataplane", "parse_duration", "parse_mesh"]
