"""Validate Dataplane and Mesh documents (parsed YAML/JSON) into the typed model.

Every ``parse_*`` function walks the whole document and collects every problem it finds, then
raises one ``ValidationError`` listing them all, each with the path of the field it is about
(``networking.inbound[0].port: must be 1-65535``). Checks shared with other parsers are in
``kumadp.resources.checks``; dispatch on ``type`` is the registry's
(``kumadp.resources.registry.parse_resource``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kumadp.resources.checks import (
    OUTPUT_ONLY_FIELDS,
    check_type,
    open_document,
    resource_name,
)
from kumadp.resources.durations import parse_duration
from kumadp.resources.errors import (
    ErrorCollector,
    index_path,
    parse_ip,
)
from kumadp.resources.interfaces import parse_inbound, parse_outbound
from kumadp.resources.model import (
    DATAPLANE_TYPE,
    Dataplane,
    Inbound,
    Networking,
    TransparentProxying,
)
from kumadp.resources.validate_mesh import parse_mesh  # re-exported: one import for parsers

# --- Dataplane ---------------------------------------------------------------------------

_DATAPLANE_FIELDS = ("type", "mesh", "name", "labels", "networking", *OUTPUT_ONLY_FIELDS)
_NETWORKING_FIELDS = (
    "address",
    "advertisedAddress",
    "admin",
    "inbound",
    "outbound",
    "transparentProxying",
)
_TP_FIELDS = ("redirectPortInbound", "redirectPortOutbound")
# Kuma fields kumadp does not implement yet, in two classes (``ErrorCollector.fields``):
# refused ("not supported yet") where ignoring them would change traffic or security, else
# accepted with a warning that says what ignoring them means.
_DATAPLANE_IGNORED = {
    "metrics": "kumadp's agent serves the merged metrics on its --metrics-port",
    "probes": "virtual probes are a Kubernetes feature",
}
_NETWORKING_UNSUPPORTED = ("gateway", "listeners")
_TP_UNSUPPORTED = ("directAccessServices",)
_TP_IGNORED = {
    "redirectPortInboundV6": "kumadp's transparent proxy is IPv4 only",
    "ipFamilyMode": "kumadp's transparent proxy is IPv4 only",
    "reachableServices": "every service of the mesh stays reachable",
    "reachableBackends": "every service of the mesh stays reachable",
}


def _transparent_proxying(c: ErrorCollector, obj: dict[str, Any]) -> TransparentProxying | None:
    path = "networking.transparentProxying"
    tp = c.mapping(obj, "networking", "transparentProxying")
    if tp is None:
        return None
    c.fields(tp, path, _TP_FIELDS, _TP_UNSUPPORTED, _TP_IGNORED)
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
        if i.has_listener
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
        if not inbound.has_listener:
            continue
        listener = _Socket(inbound.address or net.address, inbound.port)
        app = _Socket(inbound.service_address or "127.0.0.1", inbound.service_port)
        if listener.clashes(app):
            c.add(
                f"networking.inbound[{n}].port",
                f"the inbound listener and the application would both use {app}; "
                "set servicePort (or serviceAddress) to where the application listens",
            )


def _check_inbound_names(c: ErrorCollector, inbound: list[Inbound | None]) -> None:
    """Kuma: an inbound's ``name`` is unique among the dataplane's inbounds."""
    seen: dict[str, int] = {}
    for n, item in enumerate(inbound):
        if item is None or item.name is None:
            continue
        if item.name in seen:
            c.add(
                f"networking.inbound[{n}].name",
                f'"{item.name}" is already used by networking.inbound[{seen[item.name]}]',
            )
        seen.setdefault(item.name, n)


def _networking(
    c: ErrorCollector, doc: dict[str, Any], labels: dict[str, str] | None
) -> Networking | None:
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
    # no inbound at all: an outbound-only dataplane (Kuma 2.14)
    inbound = [
        parse_inbound(c, raw, index_path("networking.inbound", n), labels)
        for n, raw in enumerate(c.sequence(obj, path, "inbound") or [])
    ]
    _check_inbound_names(c, inbound)
    outbound = [
        parse_outbound(c, raw, index_path("networking.outbound", n))
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
    c.fields(obj, "", _DATAPLANE_FIELDS, ignored=_DATAPLANE_IGNORED)
    check_type(c, obj, DATAPLANE_TYPE)
    mesh = resource_name(c, obj, "", "mesh", dns_label=True)
    name = resource_name(c, obj, "", "name", dns_label=False)
    labels = c.string_map(obj, "", "labels")
    networking = _networking(c, obj, labels)
    c.raise_if_any()
    assert networking is not None
    return Dataplane(mesh=mesh, name=name, networking=networking, labels=labels or {})


__all__ = ["parse_dataplane", "parse_duration", "parse_mesh"]
