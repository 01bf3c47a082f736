"""The caches of one mesh view (``kumadp.cp.generate``) and of ``Snapshot.build``: what every
dataplane shares is changed by the policy plug-ins, copied and serialised once per view, and
the result is exactly what each dataplane gets without any sharing; a change of their input
(a new view, another resource, other rules) is not served from them."""

from __future__ import annotations

from typing import Any, cast

import pytest
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.listener.v3.listener_pb2 import Listener
from google.protobuf import duration_pb2

from kumadp.cp.generate import build_mesh_view, generate, mtls_context_for, resources_to_yaml
from kumadp.cp.generate.policies.edit import Changes, configure_all
from kumadp.cp.generate.resource_set import ResourceSet
from kumadp.cp.generate.view import MeshView, Policy
from kumadp.resources import REGISTRY, parse_dataplane, parse_mesh
from kumadp.resources.initial_policies import initial_policies
from kumadp.resources.model import Dataplane
from kumadp.xds import types
from kumadp.xds.snapshot import InconsistentSnapshot, PackCache, SharedResources, Snapshot

SERVICES = 6


def dataplane(i: int, outbound_port: int | None = None) -> Dataplane:
    svc = i % SERVICES
    return parse_dataplane(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": f"dp-{i}",
            "networking": {
                "address": "127.0.0.1",
                "inbound": [
                    {
                        "port": 20000 + i,
                        "servicePort": 30000 + i,
                        "tags": {
                            "kuma.io/service": f"svc-{svc}",
                            "kuma.io/protocol": "http" if svc % 3 else "tcp",
                        },
                    }
                ],
                "outbound": [
                    {
                        "port": outbound_port or 10000 + i,
                        "tags": {"kuma.io/service": f"svc-{(svc + 1) % SERVICES}"},
                    }
                ],
            },
        }
    )


def default_policies() -> list[Policy]:
    return [cast(Policy, REGISTRY.parse(p.to_dict())) for p in initial_policies("default")]


MESH = parse_mesh(
    {
        "type": "Mesh",
        "name": "default",
        "mtls": {"enabledBackend": "ca", "backends": [{"name": "ca", "type": "builtin"}]},
    }
)
DATAPLANES = [dataplane(i) for i in range(SERVICES * 2)]
VIPS = {f"svc-{s}": f"127.1.0.{s + 1}" for s in range(SERVICES)}


def generated(view: MeshView, dp: Dataplane) -> dict[str, Any]:
    return generate(view, dp, mtls=mtls_context_for(MESH), vips=VIPS, bind_outbounds=True)


def uncached(resources: dict[str, Any]) -> Snapshot:
    return Snapshot.build(dict(resources))  # a plain dict: no cache


def packed_bytes(snapshot: Snapshot) -> dict[str, dict[str, bytes]]:
    return {
        url: {name: a.value for name, a in snapshot.packed(url).items()}
        for url in snapshot.type_urls
    }


def test_every_dataplane_gets_what_it_gets_alone() -> None:
    shared_view = build_mesh_view(MESH, DATAPLANES, default_policies())
    for dp in DATAPLANES:
        shared = generated(shared_view, dp)  # after the dataplanes before it
        alone = generated(build_mesh_view(MESH, DATAPLANES, default_policies()), dp)
        assert resources_to_yaml(shared) == resources_to_yaml(alone)
        cached, plain = Snapshot.build(shared), uncached(alone)
        assert cached.versions == plain.versions
        assert packed_bytes(cached) == packed_bytes(plain)
    assert len(shared_view.pack_cache()) > 0  # the shared resources went through it


def test_the_pack_cache_is_one_per_view() -> None:
    view = build_mesh_view(MESH, DATAPLANES, default_policies())
    resources = generated(view, DATAPLANES[0])
    assert isinstance(resources, SharedResources)
    assert resources.cache is view.pack_cache()
    assert (
        build_mesh_view(MESH, DATAPLANES, default_policies()).pack_cache() is not view.pack_cache()
    )


def _cluster(name: str, seconds: int) -> Cluster:
    cluster = Cluster(name=name, type=Cluster.STATIC)
    cluster.connect_timeout.CopyFrom(duration_pb2.Duration(seconds=seconds))
    return cluster


def test_the_pack_cache_serves_only_the_same_shared_object() -> None:
    shared = _cluster("a", 1)
    cache = PackCache(lambda m: m is shared)
    first = Snapshot.build({types.CLUSTER: [shared]}, cache)
    assert len(cache) == 1
    again = Snapshot.build({types.CLUSTER: [shared]}, cache)
    assert again.resources(types.CLUSTER)["a"] is first.resources(types.CLUSTER)["a"]
    # another object with the same name and other content: its own bytes
    other = Snapshot.build({types.CLUSTER: [_cluster("a", 2)]}, cache)
    assert other.versions == Snapshot.build({types.CLUSTER: [_cluster("a", 2)]}).versions
    assert other.version(types.CLUSTER) != first.version(types.CLUSTER)
    # a resource the predicate does not call shared is serialised each time
    private = _cluster("b", 1)
    before = Snapshot.build({types.CLUSTER: [private]}, cache)
    private.connect_timeout.seconds = 3
    after = Snapshot.build({types.CLUSTER: [private]}, cache)
    assert before.version(types.CLUSTER) != after.version(types.CLUSTER)
    assert len(cache) == 1


def test_a_cached_resource_is_still_checked_against_each_snapshot() -> None:
    view = build_mesh_view(MESH, DATAPLANES, default_policies())
    resources = generated(view, DATAPLANES[0])
    Snapshot.build(resources)  # fills the cache
    without_endpoints = SharedResources({**resources, types.ENDPOINT: []}, resources.cache)
    with pytest.raises(InconsistentSnapshot, match="has no ClusterLoadAssignment"):
        Snapshot.build(without_endpoints)
    listener = resources[types.LISTENER][0]
    with pytest.raises(InconsistentSnapshot, match="given under type"):
        Snapshot.build(SharedResources({types.CLUSTER: [listener]}, resources.cache))


def _shared_listener_set(view: MeshView) -> tuple[ResourceSet, list[str]]:
    resources = ResourceSet()
    names = []
    for i in range(3):
        listener = view.memoized(("test-listener", i), lambda i=i: [Listener(name=f"l{i}")])[0]
        resources.add(listener)
        names.append(listener.name)
    return resources, names


def _stat_prefix(prefix: str) -> Any:
    def change(listener: Listener) -> None:
        listener.stat_prefix = prefix

    return change


def test_configure_all_shares_one_change_per_key_and_view() -> None:
    view = build_mesh_view(MESH, DATAPLANES)
    a, names = _shared_listener_set(view)
    b, _ = _shared_listener_set(view)
    configure_all(view, a, Listener, names, "key-1", _stat_prefix("one"))
    configure_all(view, b, Listener, names, "key-1", _stat_prefix("ignored: same key"))
    for name in names:
        edited = a.get(Listener, name)
        assert edited is not None and edited.stat_prefix == "one"
        assert b.get(Listener, name) is edited  # shared, changed once
        assert view.shares(edited)
    # another key (other rules): changed anew
    c, _ = _shared_listener_set(view)
    configure_all(view, c, Listener, names, "key-2", _stat_prefix("two"))
    assert [c.get(Listener, n).stat_prefix for n in names] == ["two"] * 3  # type: ignore[union-attr]
    # a new view: nothing carried over
    fresh = build_mesh_view(MESH, DATAPLANES)
    d, _ = _shared_listener_set(fresh)
    configure_all(fresh, d, Listener, names, "key-1", _stat_prefix("fresh"))
    assert d.get(Listener, "l0").stat_prefix == "fresh"  # type: ignore[union-attr]


def test_configure_all_changes_a_private_resource_in_place() -> None:
    view = build_mesh_view(MESH, DATAPLANES)
    resources, names = _shared_listener_set(view)
    resources.add(Listener(name="mine"))
    changes = Changes()
    changes.add_all(Listener, [*names, "mine"], "key", _stat_prefix("x"))
    changes.apply(view, resources)
    mine = resources.get(Listener, "mine")
    assert mine is not None and mine.stat_prefix == "x" and not view.shares(mine)
    with pytest.raises(ValueError, match="no Listener 'missing' to configure"):
        configure_all(view, resources, Listener, ["missing"], "key", _stat_prefix("y"))


def test_a_dataplane_of_its_own_shape_is_generated_as_alone() -> None:
    """Explicit outbounds on the same port to different services: the shared listeners
    differ, and each dataplane still gets its own config."""
    dps = [dataplane(i, outbound_port=15000) for i in range(SERVICES)]
    view = build_mesh_view(MESH, dps, default_policies())
    for dp in dps:
        alone = generated(build_mesh_view(MESH, dps, default_policies()), dp)
        assert resources_to_yaml(generated(view, dp)) == resources_to_yaml(alone)
