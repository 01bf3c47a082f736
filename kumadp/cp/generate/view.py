"""The mesh view: what the generators know about one mesh at one moment.

Built once per reconcile from the store's resources, then read by every generator and every
policy plug-in of every proxy of the mesh. Everything in it is sorted, so generation is
deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from google.protobuf.message import Message

from kumadp.resources.model import Dataplane, Mesh
from kumadp.xds.snapshot import PackCache


class Policy(Protocol):
    """What the view needs of a policy model (e.g. ``MeshTrafficPermission``): its resource
    type, its mesh and its name. A plug-in reads the rest of its own model."""

    type: str  # a class attribute of the model, e.g. "MeshTrafficPermission"

    @property
    def mesh(self) -> str: ...

    @property
    def name(self) -> str: ...


P = TypeVar("P", bound=Policy)
T = TypeVar("T")


@dataclass(frozen=True)
class Endpoint:
    """One place a service can be reached: an inbound of some dataplane, or (cross-zone) the
    ingress of another zone (or this zone's egress) standing for ``weight`` instances."""

    address: str
    port: int
    tags: dict[str, str]
    dataplane: str  # name of the dataplane that owns the inbound (or the zone proxy's)
    weight: int = 1  # instances behind it (Envoy's load_balancing_weight)
    remote: bool = False  # in another zone (reached through an ingress or the egress)


@dataclass(frozen=True)
class MeshView:
    mesh: Mesh
    dataplanes: tuple[Dataplane, ...]
    endpoints: dict[str, tuple[Endpoint, ...]]  # service name -> endpoints, sorted
    # policy type -> the mesh's policies of that type, sorted by name: see ``policies``
    policies_by_type: Mapping[str, tuple[Policy, ...]] = field(default_factory=dict)
    # Resources that are the same for every dataplane of this view (a service's cluster and
    # endpoints, its VIP listeners), built once per view and shared: see ``memoized``.
    memo: dict[Hashable, tuple[Message, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )
    protocols: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    # Cross-zone (``kumadp.cp.generate.crosszone``): the mesh's services in other zones, by
    # service, and this zone's name (None: standalone).
    remote: dict[str, tuple[Endpoint, ...]] = field(default_factory=dict)
    zone: str | None = None
    _memo_ids: set[int] = field(default_factory=set, compare=False, repr=False)
    _facts: dict[Hashable, object] = field(default_factory=dict, compare=False, repr=False)

    def endpoints_of(self, service: str) -> tuple[Endpoint, ...]:
        """Where a sidecar of this zone reaches ``service``: its local instances, then the
        other zones' (``remote``)."""
        local = self.endpoints.get(service, ())
        remote = self.remote.get(service)
        return local + remote if remote else local

    def local_endpoints_of(self, service: str) -> tuple[Endpoint, ...]:
        """Only the instances in this zone (what an ingress forwards to)."""
        return self.endpoints.get(service, ())

    def services(self) -> list[str]:
        """Every service a sidecar can reach, local or remote, sorted."""
        return sorted({*self.endpoints, *self.remote})

    @property
    def locality_aware(self) -> bool:
        """``mesh.routing.localityAwareLoadBalancing``: local first, other zones after."""
        return self.mesh.locality_aware

    def policies(self, policy_type: str) -> tuple[Policy, ...]:
        """The mesh's policies of ``policy_type`` (e.g. ``"MeshTrafficPermission"``), sorted
        by name; none: empty."""
        return self.policies_by_type.get(policy_type, ())

    def policies_of(self, model: type[P]) -> tuple[P, ...]:
        """``policies(model.type)``, typed as ``model``'s instances (what a plug-in reads)."""
        return tuple(p for p in self.policies(model.type) if isinstance(p, model))

    def memoized(
        self, key: Hashable, build: Callable[[], Iterable[Message]]
    ) -> tuple[Message, ...]:
        """``build()``'s resources, made once per view for ``key``. The key must name
        everything the resources depend on besides the view itself; the resources must not
        be changed afterwards (snapshots copy what they keep; plug-ins change a private copy,
        see ``ResourceSet.edit``)."""
        found = self.memo.get(key)
        if found is None:
            found = self.memo[key] = tuple(build())
            self._memo_ids.update(id(m) for m in found)
        return found

    def fact(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()``, once per view for ``key`` (something derived from the view or from
        its shared resources, e.g. which cluster a shared listener routes to)."""
        if key not in self._facts:
            self._facts[key] = compute()
        return self._facts[key]  # type: ignore[return-value]

    def shares(self, resource: Message) -> bool:
        """Whether ``resource`` is one ``memoized`` made (shared by the view's proxies, and
        alive as long as the view)."""
        return id(resource) in self._memo_ids

    def pack_cache(self) -> PackCache:
        """Where the snapshots of the view's proxies copy, serialise and check the resources
        they share (``shares``) once, not once per proxy (``Snapshot.build``)."""
        return self.fact(("pack-cache",), lambda: PackCache(self.shares))


def _endpoint_key(endpoint: Endpoint) -> tuple[str, int, str, tuple[tuple[str, str], ...]]:
    return (
        endpoint.address,
        endpoint.port,
        endpoint.dataplane,
        tuple(sorted(endpoint.tags.items())),
    )


def _policies_by_type(mesh: str, policies: Iterable[Policy]) -> dict[str, tuple[Policy, ...]]:
    by_type: dict[str, list[Policy]] = {}
    for policy in policies:
        if policy.mesh == mesh:
            by_type.setdefault(policy.type, []).append(policy)
    return {
        policy_type: tuple(sorted(found, key=lambda p: p.name))
        for policy_type, found in sorted(by_type.items())
    }


def build_mesh_view(
    mesh: Mesh,
    dataplanes: Iterable[Dataplane],
    policies: Iterable[Policy] = (),
    *,
    remote: Mapping[str, tuple[Endpoint, ...]] | None = None,
    zone: str | None = None,
) -> MeshView:
    """Index every inbound of every dataplane of ``mesh`` by its ``kuma.io/service``, and
    keep the mesh's policies by type (each type sorted by name).

    Dataplanes and policies of other meshes are ignored. An endpoint's address is the one other
    dataplanes use to reach the inbound (``advertised_inbound_address``); an inbound that is
    not ``serving`` (state NotReady or Ignored, ``health.ready: false``) is no endpoint.
    ``remote``: the mesh's services in other zones (``crosszone.remote_endpoints``);
    ``zone``: the zone of the control plane.
    """
    members = sorted((dp for dp in dataplanes if dp.mesh == mesh.name), key=lambda dp: dp.name)
    by_service: dict[str, list[Endpoint]] = {}
    for dp in members:
        for inbound in dp.networking.inbound:
            if not inbound.serving:
                continue  # NotReady, Ignored or unhealthy: no traffic for it
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
    return MeshView(
        mesh=mesh,
        dataplanes=tuple(members),
        endpoints=endpoints,
        policies_by_type=_policies_by_type(mesh.name, policies),
        remote=dict(sorted((remote or {}).items())),
        zone=zone,
    )
