"""Validate Mesh documents (parsed YAML/JSON) into the typed model, collecting every problem
with its field path (see ``kumadp.resources.validate``)."""

from __future__ import annotations

import copy
from typing import Any

from kumadp.resources.checks import (
    OUTPUT_ONLY_FIELDS,
    check_type,
    open_document,
    resource_name,
)
from kumadp.resources.durations import parse_duration
from kumadp.resources.errors import ErrorCollector, field_path, index_path
from kumadp.resources.model import MESH_TYPE, Mesh, MeshRouting

# --- Mesh ----------------------------------------------------------------------------------

_MESH_FIELDS = (
    "type",
    "name",
    "labels",
    "mtls",
    "skipCreatingInitialPolicies",
    "meshServices",
    "routing",
    *OUTPUT_ONLY_FIELDS,
)
_MESH_UNSUPPORTED = ("networking", "constraints")
_MESH_IGNORED = {
    "metrics": "kumadp's agent serves the merged metrics on its --metrics-port",
    "logging": "no access logs are configured",
    "tracing": "no tracing is configured",
}
# meshServices.mode: kumadp routes by kuma.io/service and makes no MeshService resources.
_MESH_SERVICES_MODES = ("Disabled", "Everywhere", "ReachableBackends", "Exclusive")
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
    c.fields(obj, path, _BACKEND_FIELDS, ignored={"rootChain": "the CA's chain is not fetched"})
    name = resource_name(c, obj, path, "name", dns_label=False)
    kind = c.one_of(obj, path, "type", ("builtin", "provided"), required=True)
    c.one_of(obj, path, "mode", ("STRICT", "PERMISSIVE"))
    dp_cert = c.mapping(obj, path, "dpCert")
    if dp_cert is not None:
        cert_path = f"{path}.dpCert"
        c.fields(
            dp_cert,
            cert_path,
            ("rotation",),
            ignored={"requestTimeout": "kumadp's agent signs with its own request timeout"},
        )
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
    c.fields(
        obj,
        "mtls",
        ("enabledBackend", "backends"),
        ignored={"skipValidation": "the backends are validated all the same"},
    )
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


def parse_mesh(doc: Any) -> Mesh:
    """A validated ``Mesh`` from a document (as ``load_document`` returns it)."""
    c, obj = open_document(doc)
    c.fields(obj, "", _MESH_FIELDS, _MESH_UNSUPPORTED, _MESH_IGNORED)
    check_type(c, obj, MESH_TYPE)
    name = resource_name(c, obj, "", "name", dns_label=True)
    labels = c.string_map(obj, "", "labels")
    mtls = _mtls(c, obj)
    skip = _skip_initial_policies(c, obj)
    mode = _mesh_services(c, obj)
    routing = _routing(c, obj)
    c.raise_if_any()
    return Mesh(
        name=name,
        mtls=mtls,
        labels=labels or {},
        skip_creating_initial_policies=skip,
        mesh_services_mode=mode,
        routing=routing,
    )


def _routing(c: ErrorCollector, obj: dict[str, Any]) -> MeshRouting | None:
    """``routing.localityAwareLoadBalancing`` and ``routing.zoneEgress`` (booleans)."""
    section = c.mapping(obj, "", "routing")
    if section is None:
        return None
    keys = ("localityAwareLoadBalancing", "zoneEgress")
    c.fields(section, "routing", keys)
    flags = []
    for key in keys:
        value = section.get(key, False)
        if value is None:
            value = False
        if not isinstance(value, bool):
            c.add(f"routing.{key}", "must be true or false")
        flags.append(value is True)
    return MeshRouting(locality_aware_load_balancing=flags[0], zone_egress=flags[1])


def _skip_initial_policies(c: ErrorCollector, obj: dict[str, Any]) -> tuple[str, ...]:
    key = "skipCreatingInitialPolicies"
    out: list[str] = []
    for n, item in enumerate(c.sequence(obj, "", key) or []):
        if not isinstance(item, str) or not item:
            c.add(index_path(key, n), 'must be a policy type name or "*"')
        else:
            out.append(item)
    return tuple(out)


def _mesh_services(c: ErrorCollector, obj: dict[str, Any]) -> str | None:
    """``meshServices.mode``: kumadp makes no MeshService resources and routes by
    ``kuma.io/service``, which is Kuma's ``Disabled``; ``Exclusive`` would route only by
    MeshService, so it is refused; the other modes add MeshService routing on top: a warning."""
    section = c.mapping(obj, "", "meshServices")
    if section is None:
        return None
    c.fields(section, "meshServices", ("mode",))
    mode = c.one_of(section, "meshServices", "mode", _MESH_SERVICES_MODES)
    if mode == "Exclusive":
        c.add("meshServices.mode", "Exclusive is not supported yet by kumadp")
    elif mode in ("Everywhere", "ReachableBackends"):
        c.warn(
            "meshServices.mode",
            f"ignored: {mode} (kumadp routes by kuma.io/service and makes no MeshService "
            "resources)",
        )
    return mode


__all__ = ["parse_mesh"]
