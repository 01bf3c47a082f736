"""Helpers the resilience plug-ins share: which generated listeners and clusters carry a
proxy's traffic to each outbound service and from each inbound, and small editors for the
typed configs packed inside them (an HCM, a TCP proxy, a cluster's HTTP options).

Plug-ins take resources with ``ResourceSet.edit`` (a private copy) before changing them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeAlias, TypeVar

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.core.v3 import base_pb2, protocol_pb2
from envoy.config.listener.v3.listener_components_pb2 import Filter
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import duration_pb2
from google.protobuf.message import Message

from kumadp.cp.generate import names
from kumadp.cp.generate.clusters import HTTP_PROTOCOL_OPTIONS
from kumadp.cp.generate.listeners import HTTP_CONNECTION_MANAGER, TCP_PROXY
from kumadp.cp.generate.resource_set import ResourceSet
from kumadp.cp.generate.view import MeshView
from kumadp.resources.confschema import seconds
from kumadp.resources.model import Dataplane, Inbound

M = TypeVar("M", bound=Message)
HttpOptions: TypeAlias = http_protocol_options_pb2.HttpProtocolOptions


def duration(value: str | float) -> duration_pb2.Duration:
    """A policy duration (``"1.5s"``) or seconds as a protobuf Duration."""
    total = seconds(value) if isinstance(value, str) else value
    whole = math.floor(total)
    return duration_pb2.Duration(seconds=whole, nanos=round((total - whole) * 1e9))


@dataclass
class OutboundTarget:
    """What carries the proxy's traffic to one service: its EDS cluster and listeners."""

    service: str
    cluster: str
    listeners: list[str] = field(default_factory=list)
    http: bool = False  # its listeners route with an HTTP connection manager


def _filters(listener: Listener) -> Iterator[Filter]:
    for chain in listener.filter_chains:
        yield from chain.filters
    if listener.HasField("default_filter_chain"):
        yield from listener.default_filter_chain.filters


def _cluster_of(terminal: Filter) -> tuple[str, bool] | None:
    """The cluster a terminal filter sends to, and whether it is an HCM."""
    if terminal.name == TCP_PROXY:
        proxy = tcp_proxy_pb2.TcpProxy()
        terminal.typed_config.Unpack(proxy)
        return proxy.cluster, False
    if terminal.name == HTTP_CONNECTION_MANAGER:
        manager = hcm_pb2.HttpConnectionManager()
        terminal.typed_config.Unpack(manager)
        for host in manager.route_config.virtual_hosts:
            for route in host.routes:
                if route.route.cluster:
                    return route.route.cluster, True
    return None


def _routes_to(listener: Listener) -> tuple[str, bool] | None:
    """The cluster an outbound listener sends to, and whether through an HCM."""
    for terminal in _filters(listener):
        found = _cluster_of(terminal)
        if found is not None:
            return found
    return None


def outbound_targets(view: MeshView, resources: ResourceSet) -> dict[str, OutboundTarget]:
    """Service -> its outbound target, from the generated resources: every EDS cluster, and
    every outbound listener whose terminal filter sends to one (passthrough excluded).
    Computed once per generation run and shared by the plug-ins (they change what resources
    say, never which listener routes to which cluster)."""
    found = resources.derived.get("outbound-targets")
    if found is None:
        found = resources.derived["outbound-targets"] = _outbound_targets(view, resources)
    return found  # type: ignore[return-value]


def _outbound_targets(view: MeshView, resources: ResourceSet) -> dict[str, OutboundTarget]:
    targets: dict[str, OutboundTarget] = {}
    for name, cluster in resources.table(Cluster).items():
        if cluster.type == Cluster.EDS:
            targets[name] = OutboundTarget(service=name, cluster=name)
    # which cluster each shared listener routes to: once per view, by identity (a shared
    # listener lives as long as the view)
    routes: dict[int, tuple[str, bool] | None] = view.fact(("routes-to",), dict)
    for name, listener in resources.table(Listener).items():
        if listener.traffic_direction != base_pb2.OUTBOUND:
            continue
        if view.shares(listener):
            key = id(listener)
            if key in routes:
                found = routes[key]
            else:
                found = routes[key] = _routes_to(listener)
        else:
            found = _routes_to(listener)
        if found is not None and found[0] in targets:
            target = targets[found[0]]
            target.listeners.append(name)
            target.http = target.http or found[1]
    return dict(sorted(targets.items()))


@dataclass(frozen=True)
class InboundTarget:
    inbound: Inbound
    listener: str
    cluster: str


def inbound_targets(dataplane: Dataplane) -> list[InboundTarget]:
    """Each inbound with its listener and local cluster (the first of identical ones)."""
    seen: set[str] = set()
    out = []
    for inbound in dataplane.networking.inbound:
        listener = names.inbound_listener(dataplane.inbound_address(inbound), inbound.port)
        if listener not in seen:
            seen.add(listener)
            out.append(InboundTarget(inbound, listener, names.local_cluster(inbound.service_port)))
    return out


def _edit_filter(terminal: Filter, kind: type[M], change: Callable[[M], None]) -> None:
    message = kind()
    terminal.typed_config.Unpack(message)
    change(message)
    terminal.typed_config.Pack(message)


def edit_hcm(listener: Listener, change: Callable[[hcm_pb2.HttpConnectionManager], None]) -> None:
    """Apply ``change`` to every HTTP connection manager of the listener."""
    for terminal in _filters(listener):
        if terminal.name == HTTP_CONNECTION_MANAGER:
            _edit_filter(terminal, hcm_pb2.HttpConnectionManager, change)


def edit_tcp_proxy(listener: Listener, change: Callable[[tcp_proxy_pb2.TcpProxy], None]) -> None:
    """Apply ``change`` to every TCP proxy filter of the listener."""
    for terminal in _filters(listener):
        if terminal.name == TCP_PROXY:
            _edit_filter(terminal, tcp_proxy_pb2.TcpProxy, change)


def route_actions(
    manager: hcm_pb2.HttpConnectionManager,
) -> Iterator[route_components_pb2.RouteAction]:
    """Every route action of an HCM's inline route configuration."""
    for host in manager.route_config.virtual_hosts:
        for route in host.routes:
            if route.HasField("route"):
                yield route.route


def edit_http_options(cluster: Cluster, change: Callable[[HttpOptions], None]) -> None:
    """Apply ``change`` to the cluster's upstream HTTP options (created, HTTP/1.1, when the
    cluster has none: Envoy requires a protocol choice in them)."""
    options = HttpOptions()
    packed = cluster.typed_extension_protocol_options.get(HTTP_PROTOCOL_OPTIONS)
    if packed is not None:
        packed.Unpack(options)
    else:
        options.explicit_http_config.http_protocol_options.CopyFrom(
            protocol_pb2.Http1ProtocolOptions()
        )
    change(options)
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Pack(options)


def configure(
    view: MeshView,
    resources: ResourceSet,
    kind: type[M],
    name: str,
    key: Hashable,
    change: Callable[[M], None],
) -> None:
    """Apply ``change`` to the resource of ``kind`` named ``name``. A resource the view's
    proxies share is changed once per view for ``key`` (everything ``change`` depends on,
    e.g. the merged conf) and the result shared in turn, so N proxies with the same rules
    cost one change, not N; a private one is changed in place."""
    configure_all(view, resources, kind, (name,), key, change)


def configure_all(
    view: MeshView,
    resources: ResourceSet,
    kind: type[M],
    names: Iterable[str],
    key: Hashable,
    change: Callable[[M], None],
) -> None:
    """``configure`` for each of ``names`` with the same ``key`` and ``change``: the
    shared resources' changed copies are looked up by identity in one table per view and
    ``key``, and put in place at once."""
    table = resources.table(kind)
    done: dict[int, M] = view.fact(("policy-edits", key, kind), dict)
    replaced: dict[str, M] = {}
    for name in names:
        current = replaced.get(name)
        if current is None:
            current = table.get(name)
        if current is None:
            raise ValueError(f"no {kind.__name__} {name!r} to configure")
        if not view.shares(current):
            resources.replace_all(kind, replaced)
            replaced.clear()
            change(editable(resources, kind, name))
            continue
        edited = done.get(id(current))
        if edited is None:
            edited = done[id(current)] = _changed(view, kind, current, key, change)
        replaced[name] = edited
    resources.replace_all(kind, replaced)


def _changed(
    view: MeshView, kind: type[M], current: M, key: Hashable, change: Callable[[M], None]
) -> M:
    """A changed copy of the shared ``current``, shared in turn (alive as long as the view,
    as ``current`` is: a table keyed by ``id(current)`` stays right)."""

    def build() -> Iterator[M]:
        copy = kind()
        copy.CopyFrom(current)
        change(copy)
        yield copy

    edited = view.memoized(("policy-edit", key, kind, id(current)), build)[0]
    assert isinstance(edited, kind)
    return edited


class Changes:
    """The changes a plug-in makes to the view's outbound resources, grouped by ``key`` (as
    for ``configure``: everything the change depends on) and applied per group with
    ``configure_all``; each resource is changed at most once."""

    def __init__(self) -> None:
        self._groups: dict[tuple[type[Message], Hashable], tuple[Callable[..., None], list[str]]]
        self._groups = {}

    def add(self, kind: type[M], name: str, key: Hashable, change: Callable[[M], None]) -> None:
        self.add_all(kind, (name,), key, change)

    def add_all(
        self, kind: type[M], names: Iterable[str], key: Hashable, change: Callable[[M], None]
    ) -> None:
        group = self._groups.get((kind, key))
        if group is None:
            group = self._groups[(kind, key)] = (change, [])
        group[1].extend(names)

    def apply(self, view: MeshView, resources: ResourceSet) -> None:
        for (kind, key), (change, group) in self._groups.items():
            configure_all(view, resources, kind, group, key, change)


def editable(resources: ResourceSet, kind: type[M], name: str) -> M:
    """``resources.edit`` for a resource the generators must have made."""
    found = resources.edit(kind, name)
    if found is None:
        raise ValueError(f"no {kind.__name__} {name!r} to configure")
    return found


__all__ = [
    "Changes",
    "InboundTarget",
    "OutboundTarget",
    "configure",
    "configure_all",
    "duration",
    "edit_hcm",
    "edit_http_options",
    "edit_tcp_proxy",
    "editable",
    "inbound_targets",
    "outbound_targets",
    "route_actions",
]
