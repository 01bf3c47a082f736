"""MeshTrafficPermission plug-in: a network RBAC filter on each inbound under mesh mTLS.

Without mTLS there is no caller identity to check, and the inbounds stay open (as in Kuma).
With it, every filter chain of an inbound listener that terminates mesh mTLS gets the RBAC
filter of that inbound (``rbac.inbound_rbac_filter``) first, before the terminal filter; a
PERMISSIVE listener's plaintext default chain gets none.
"""

from __future__ import annotations

from envoy.config.listener.v3.listener_pb2 import Listener

from kumadp.cp.generate import names, tls
from kumadp.cp.generate.context import Context
from kumadp.cp.generate.policies import rbac
from kumadp.cp.generate.resource_set import ResourceSet
from kumadp.resources.policies import MeshTrafficPermission


class TrafficPermissionPlugin:
    policy_type = MeshTrafficPermission.type

    def apply(self, ctx: Context, resources: ResourceSet) -> None:
        if ctx.mtls is None:
            return
        permissions = ctx.view.policies_of(MeshTrafficPermission)
        dataplane = ctx.dataplane
        done: set[str] = set()  # two identical inbounds share one listener
        for inbound in dataplane.networking.inbound:
            if not inbound.has_listener:
                continue
            name = names.inbound_listener(dataplane.inbound_address(inbound), inbound.port)
            if name in done:
                continue
            done.add(name)
            listener = resources.edit(Listener, name)
            if listener is None:
                raise ValueError(f"no inbound listener {name!r} to protect")
            permission_filter = rbac.inbound_rbac_filter(
                permissions,
                ctx.mesh,
                dataplane,
                inbound,
                stat_prefix=f"{names.stat_prefix(name)}.",
            )
            for chain in tls.mtls_filter_chains(listener):
                chain.filters.insert(0, permission_filter)
