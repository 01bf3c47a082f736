"""Names of generated Envoy resources, as Kuma gives them (one place that knows them)."""

from __future__ import annotations

import re

from kumadp.wire import names as wire_names

_NOT_STAT_SAFE = re.compile(r"[^A-Za-z0-9_]")


def inbound_listener(address: str, port: int) -> str:
    return f"inbound:{address}:{port}"


def outbound_listener(address: str, port: int) -> str:
    return f"outbound:{address}:{port}"


def outbound_passthrough(family: str = "ipv4") -> str:
    """Transparent proxy: the outbound passthrough listener and its ORIGINAL_DST cluster."""
    return f"outbound:passthrough:{family}"


def inbound_passthrough(family: str = "ipv4") -> str:
    """Transparent proxy: the inbound passthrough listener and its ORIGINAL_DST cluster."""
    return f"inbound:passthrough:{family}"


def local_cluster(service_port: int) -> str:
    """The static cluster an inbound forwards to: the application itself."""
    return f"localhost:{service_port}"


def outbound_cluster(service: str) -> str:
    """The EDS cluster of a service (its ClusterLoadAssignment has the same name)."""
    return service


def mesh_service_cluster(mesh: str, service: str, port: int) -> str:
    """The EDS cluster of an outbound's ``backendRef`` (a MeshService port): Kuma's legacy
    name for a universal MeshService, ``<mesh>_<name>_<namespace>_<zone>_msvc_<port>``."""
    return f"{mesh}_{service}___msvc_{port}"


def inbound_route(service: str) -> str:
    return f"inbound:{service}"


def outbound_route(service: str) -> str:
    return f"outbound:{service}"


def identity_secret(mesh: str) -> str:
    """The SDS secret with the dataplane's certificate (the agent serves it: the contract's
    name)."""
    return wire_names.identity_secret_name(mesh)


def mesh_ca_secret(mesh: str) -> str:
    """The SDS secret with the mesh CA (the contract's name)."""
    return wire_names.mesh_ca_secret_name(mesh)


def stat_prefix(name: str) -> str:
    """A stat prefix Envoy will not split: ``localhost:8080`` -> ``localhost_8080``."""
    return _NOT_STAT_SAFE.sub("_", name)
