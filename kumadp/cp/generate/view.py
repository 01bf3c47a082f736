"""The mesh view: what the generators know about one mesh at one moment.

Built once per reconcile from the store's resources, then read by every generator of every
dataplane of the mesh. Everything in it is sorted, so generation is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

from google.protobuf.message import Message

from kumadp.resources.model import Dataplane, Mesh
from kumadp.resources.policies import MeshTrafficPermission


@dataclass(frozen=True)
class Endpoint:
    """One place a service can be reached: an inbound of some dataplane."""

    address: str
    port: int
    tags: dict[str, str]
    dataplane: str  # name of the dataplane that owns the inbound


@dataclass(frozen=True)
class MeshView:
    mesh: Mesh
    dataplanes: tuple[Dataplane, ...]
    endpoints: dict[str, tuple[Endpoint, ...]]  # service name -> endpoints, sorted
    traffic_permissions: tuple[MeshTrafficPermission, ...] = ()  # sorted by name
    # Resources that are the same for every dataplane of this view (a service's cluster and
    # endpoints, its VIP listeners), built once per view and shared: see ``memoized``.
    memo: dict[Hashable, tuple[Message, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )
    protocols: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def endpoints_of(self, service: str) -> tuple[Endpoint, ...]:
        return self.endpoints.get(service, ())

    def memoized(
        self, key: Hashable, build: Callable[[], Iterable[Message]]
    ) -> tuple[Message, ...]:
        """``build()``'s resources, made once per view for ``key``. The key must name
        everything the resources depend on besides the view itself; the resources must not
        be changed afterwards (snapshots copy what they keep)."""
        found = self.memo.get(key)
        if found is None:
            found = self.memo[key] = tuple(build())
        return found


def _endpoint_key(endpoint: Endpoint) -> tuple[str, int, str, tuple[tuple[str, str], ...]]:
    return (
        endpoint.address,
        endpoint.port,
        endpoint.dataplane,
        tuple(sorted(endpoint.tags.items())),
    )


def build_mesh_view(
    mesh: Mesh,
    dataplanes: Iterable[Dataplane],
    policies: Iterable[MeshTrafficPermission] = (),
) -> MeshView:
    """Index every inbound of every dataplane of ``mesh`` by its ``kuma.io/service``, and
    keep the mesh's policies (``MeshTrafficPermission``s, sorted by name).

    Dataplanes and policies of other meshes are ignored. An endpoint's address is the one other
    dataplanes use to reach the inbound (``advertised_inbound_address``).
    """
    members = sorted((dp for dp in dataplanes if dp.mesh == mesh.name), key=lambda dp: dp.name)
    by_service: dict[str, list[Endpoint]] = {}
    for dp in members:
        for inbound in dp.networking.inbound:
            endpoint = Endpoint(
                address=dp.advertised_inbound_address(inbound),
                port=inbound.port,
                tags=dict(inbound.tags),
                dataplane=dp.name,
            )
            by_service.setdefault(inbound.service, []).append(endpoint)
    endpoints = {
        service: tuple(sorted(found, key=_endpoint_key))
        for service, found in sorted(by_service.items())
    }
    permissions = sorted(
        (p for p in policies if isinstance(p, MeshTrafficPermission) and p.mesh == mesh.name),
        key=lambda p: p.name,
    )
    return MeshView(
        mesh=mesh,
        dataplanes=tuple(members),
        endpoints=endpoints,
        traffic_permissions=tuple(permissions),
    )
