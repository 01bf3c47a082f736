"""What a zone ingress's or a zone egress's generation knows: the proxy itself, its zone,
every mesh of the zone (a view each, with the mesh's local endpoints) and the ingresses of
every zone (what an egress forwards to).

A zone proxy serves every mesh at once, so its context is not a dataplane's ``Context``.
"""

from __future__ import annotations

from dataclasses import dataclass

from kumadp.cp.generate.view import MeshView
from kumadp.resources.zone_proxies import ZoneEgress, ZoneIngress, ZoneProxy


@dataclass(frozen=True)
class ZoneProxyContext:
    proxy: ZoneProxy
    zone: str
    views: tuple[MeshView, ...] = ()  # every mesh of the zone, sorted by name
    # meshes served with mTLS here (only those carry traffic across zones)
    mtls_meshes: frozenset[str] = frozenset()
    ingresses: tuple[ZoneIngress, ...] = ()  # every zone's (an egress forwards to the others')

    @property
    def proxy_id(self) -> str:
        """The Envoy node id: ``.<name>`` (a zone proxy belongs to no mesh)."""
        return f".{self.proxy.name}"

    @property
    def ingress(self) -> ZoneIngress:
        if not isinstance(self.proxy, ZoneIngress):
            raise TypeError(f"{self.proxy.type} {self.proxy.name} is no zone ingress")
        return self.proxy

    @property
    def egress(self) -> ZoneEgress:
        if not isinstance(self.proxy, ZoneEgress):
            raise TypeError(f"{self.proxy.type} {self.proxy.name} is no zone egress")
        return self.proxy


__all__ = ["ZoneProxyContext"]
