"""MeshTimeout plug-in: connection, idle and HTTP timeouts on the proxy's outbound and
inbound traffic (Kuma's placement).

For each outbound service with a ``to`` rule, and each inbound with a ``from`` rule, the
merged conf is completed with ``meshtimeout.DEFAULTS`` for the fields no policy sets, then:

=========================  ===========================================================
field                      where
=========================  ===========================================================
connectionTimeout          the cluster's ``connect_timeout``
idleTimeout                TCP: the TCP proxy's ``idle_timeout``; HTTP: the cluster's
                           ``common_http_protocol_options.idle_timeout`` (outbound; the
                           listener's HCM idle timeout is then 0), the HCM's (inbound)
http.requestTimeout        every route's ``timeout``
http.streamIdleTimeout     the HCM's ``stream_idle_timeout``
http.maxStreamDuration     the cluster's ``common_http_protocol_options``
http.maxConnectionDuration the cluster's ``common_http_protocol_options``
http.requestHeadersTimeout the inbound HCM's ``request_headers_timeout``
=========================  ===========================================================

Without a matching policy the generated defaults stay (connect 5 s, route 15 s).
"""

from __future__ import annotations

from functools import partial

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from kumadp.cp.generate.context import Context
from kumadp.cp.generate.policies.edit import (
    Changes,
    HttpOptions,
    duration,
    edit_hcm,
    edit_http_options,
    edit_tcp_proxy,
    editable,
    inbound_targets,
    outbound_targets,
    route_actions,
)
from kumadp.cp.generate.policies.rules import ProxyRules
from kumadp.cp.generate.protocol import is_http
from kumadp.cp.generate.resource_set import ResourceSet
from kumadp.resources.confschema import merge
from kumadp.resources.meshtimeout import DEFAULTS, HttpTimeouts, MeshTimeout, TimeoutConf


def _complete(conf: TimeoutConf) -> tuple[TimeoutConf, HttpTimeouts]:
    full = merge(DEFAULTS, conf)
    assert full is not None and full.http is not None
    return full, full.http


def _cluster(cluster: Cluster, conf: TimeoutConf, http: bool) -> None:
    full, timeouts = _complete(conf)
    assert full.connection_timeout is not None
    cluster.connect_timeout.CopyFrom(duration(full.connection_timeout))
    if not http:
        return

    def change(options: HttpOptions) -> None:
        common = options.common_http_protocol_options
        common.idle_timeout.CopyFrom(duration(full.idle_timeout or "0s"))
        common.max_stream_duration.CopyFrom(duration(timeouts.max_stream_duration or "0s"))
        common.max_connection_duration.CopyFrom(duration(timeouts.max_connection_duration or "0s"))

    edit_http_options(cluster, change)


def _listener(listener: Listener, conf: TimeoutConf, inbound: bool) -> None:
    full, timeouts = _complete(conf)

    def hcm(manager: hcm_pb2.HttpConnectionManager) -> None:
        manager.stream_idle_timeout.CopyFrom(duration(timeouts.stream_idle_timeout or "0s"))
        idle = full.idle_timeout if inbound else "0s"  # outbound: the cluster's
        manager.common_http_protocol_options.idle_timeout.CopyFrom(duration(idle or "0s"))
        if inbound:
            headers = timeouts.request_headers_timeout or "0s"
            manager.request_headers_timeout.CopyFrom(duration(headers))
        for action in route_actions(manager):
            action.timeout.CopyFrom(duration(timeouts.request_timeout or "0s"))

    def tcp(proxy: tcp_proxy_pb2.TcpProxy) -> None:
        proxy.idle_timeout.CopyFrom(duration(full.idle_timeout or "0s"))

    edit_hcm(listener, hcm)
    edit_tcp_proxy(listener, tcp)


class TimeoutPlugin:
    policy_type = MeshTimeout.type

    def apply(self, ctx: Context, resources: ResourceSet) -> None:
        policies = ctx.view.policies_of(MeshTimeout)
        if not policies:
            return
        rules = ProxyRules(policies, ctx.dataplane, ctx.view)
        changes = Changes()
        for service, target in outbound_targets(ctx.view, resources).items():
            rule = rules.outbound(service)
            if rule is None:
                continue
            conf, http = rule.conf, target.http
            changes.add(
                Cluster,
                target.cluster,
                (self.policy_type, id(rule), http),
                partial(_cluster, conf=conf, http=http),
            )
            changes.add_all(
                Listener,
                target.listeners,
                (self.policy_type, id(rule)),
                partial(_listener, conf=conf, inbound=False),
            )
        changes.apply(ctx.view, resources)
        for inbound in inbound_targets(ctx.dataplane):
            rule = rules.inbound(inbound.inbound)
            if rule is None:
                continue
            http = is_http(inbound.inbound.protocol)
            _cluster(editable(resources, Cluster, inbound.cluster), rule.conf, http)
            _listener(editable(resources, Listener, inbound.listener), rule.conf, inbound=True)
