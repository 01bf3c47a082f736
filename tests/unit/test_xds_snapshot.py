from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2

from kumadp.xds import types
from kumadp.xds.cache import SnapshotCache
from kumadp.xds.snapshot import InconsistentSnapshot, Snapshot, snapshot_to_dict


def eds_cluster(name: str, service_name: str = "") -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    cluster.eds_cluster_config.eds_config.ads.SetInParent()
    cluster.eds_cluster_config.service_name = service_name
    return cluster


def cla(name: str, port: int = 8080) -> endpoint_pb2.ClusterLoadAssignment:
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    lb = assignment.endpoints.add().lb_endpoints.add()
    lb.endpoint.address.socket_address.address = "127.0.0.1"
    lb.endpoint.address.socket_address.port_value = port
    return assignment


def http_listener(name: str, route_config: str, *, default_chain: bool = False):
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=name,
        rds=hcm_pb2.Rds(
            route_config_name=route_config,
            config_source=config_source_pb2.ConfigSource(ads={}),
        ),
    )
    typed = any_pb2.Any()
    typed.Pack(hcm, deterministic=True)
    listener = listener_pb2.Listener(name=name)
    chain = listener.default_filter_chain if default_chain else listener.filter_chains.add()
    chain.filters.add(name="envoy.filters.network.http_connection_manager", typed_config=typed)
    return listener


def full() -> dict[str, list]:
    return {
        types.CLUSTER: [eds_cluster("backend"), eds_cluster("web", service_name="web-svc")],
        types.ENDPOINT: [cla("backend"), cla("web-svc")],
        types.LISTENER: [http_listener("outbound:240.0.0.1:80", "backend")],
        types.ROUTE: [route_pb2.RouteConfiguration(name="backend")],
    }


def test_build_names_and_versions() -> None:
    snapshot = Snapshot.build(full())
    assert sorted(snapshot.resources(types.CLUSTER)) == ["backend", "web"]
    assert sorted(snapshot.resources(types.ENDPOINT)) == ["backend", "web-svc"]
    assert set(snapshot.versions) == set(types.ADS_ORDER)
    assert all(len(v) == 16 for v in snapshot.versions.values())
    # empty types are present, with the version of nothing
    assert snapshot.resources(types.SECRET) == {}
    assert snapshot.version(types.SECRET) == Snapshot.build({}).version(types.SECRET)


def test_same_content_same_version_regardless_of_order() -> None:
    a = Snapshot.build(full())
    resources = full()
    for messages in resources.values():
        messages.reverse()
    b = Snapshot.build(resources)
    assert a.versions == b.versions
    assert a == b


def test_change_moves_only_that_types_version() -> None:
    a = Snapshot.build(full())
    resources = full()
    resources[types.ENDPOINT] = [cla("backend", port=9090), cla("web-svc")]
    b = Snapshot.build(resources)
    changed = {url for url in types.ADS_ORDER if a.versions[url] != b.versions[url]}
    assert changed == {types.ENDPOINT}


def test_snapshot_is_immutable_and_copies_input() -> None:
    resources = full()
    snapshot = Snapshot.build(resources)
    before = snapshot.versions
    resources[types.CLUSTER][0].name = "renamed"
    assert "backend" in snapshot.resources(types.CLUSTER)
    assert snapshot.resources(types.CLUSTER)["backend"].name == "backend"
    assert snapshot.versions == before
    with pytest.raises(AttributeError):
        snapshot._versions = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        snapshot.resources(types.CLUSTER)["x"] = cluster_pb2.Cluster()  # type: ignore[index]


def test_eds_cluster_without_assignment_is_inconsistent() -> None:
    resources = full()
    resources[types.ENDPOINT] = [cla("backend")]
    with pytest.raises(InconsistentSnapshot, match=r"cluster 'web' \(EDS\).*'web-svc'"):
        Snapshot.build(resources)


def test_static_cluster_needs_no_assignment() -> None:
    static = cluster_pb2.Cluster(name="static", type=cluster_pb2.Cluster.STATIC)
    Snapshot.build({types.CLUSTER: [static]})


@pytest.mark.parametrize("default_chain", [False, True])
def test_listener_with_missing_route_config_is_inconsistent(default_chain: bool) -> None:
    resources = full()
    resources[types.LISTENER].append(
        http_listener("inbound:1", "missing", default_chain=default_chain)
    )
    with pytest.raises(
        InconsistentSnapshot, match="listener 'inbound:1' uses RouteConfiguration 'missing'"
    ):
        Snapshot.build(resources)


def test_all_problems_reported_at_once() -> None:
    resources = full()
    resources[types.ENDPOINT] = []
    resources[types.ROUTE] = []
    with pytest.raises(InconsistentSnapshot) as info:
        Snapshot.build(resources)
    message = str(info.value)
    assert "'backend' (EDS)" in message and "'web' (EDS)" in message
    assert "RouteConfiguration 'backend'" in message


def test_malformed_input_is_rejected() -> None:
    with pytest.raises(InconsistentSnapshot, match="duplicate name 'backend'"):
        Snapshot.build({types.CLUSTER: [cluster_pb2.Cluster(name="backend")] * 2})
    with pytest.raises(InconsistentSnapshot, match="without a name"):
        Snapshot.build({types.CLUSTER: [cluster_pb2.Cluster()]})
    with pytest.raises(InconsistentSnapshot, match="given under type"):
        Snapshot.build({types.LISTENER: [cluster_pb2.Cluster(name="c")]})


def test_snapshot_to_dict_is_yaml_friendly() -> None:
    out = snapshot_to_dict(Snapshot.build(full()))
    assert list(out) == ["cds", "eds", "lds", "rds", "sds"]
    assert [c["name"] for c in out["cds"]] == ["backend", "web"]
    assert out["cds"][0]["type"] == "EDS"
    assert out["eds"][0]["cluster_name"] == "backend"
    hcm = out["lds"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["@type"].endswith("HttpConnectionManager")
    assert hcm["rds"]["route_config_name"] == "backend"
    assert out["sds"] == []


async def test_cache_set_get_clear_and_wait() -> None:
    cache = SnapshotCache()
    assert cache.get_snapshot("n") is None
    waiter = asyncio.ensure_future(cache.next_snapshot("n", None))
    await asyncio.sleep(0)
    assert not waiter.done()
    first = Snapshot.build(full())
    assert cache.set_snapshot("n", first) is True
    assert await asyncio.wait_for(waiter, 5) is first
    # identical versions: a no-op, nobody is woken
    assert cache.set_snapshot("n", Snapshot.build(full())) is False
    assert cache.get_snapshot("n") is first
    # a known snapshot is not returned again; a newer one is
    waiter = asyncio.ensure_future(cache.next_snapshot("n", first))
    await asyncio.sleep(0)
    assert not waiter.done()
    resources = full()
    resources[types.ROUTE].append(route_pb2.RouteConfiguration(name="other"))
    second = Snapshot.build(resources)
    cache.set_snapshot("n", second)
    assert await asyncio.wait_for(waiter, 5) is second
    # a waiter that already lags gets the current one at once
    assert await asyncio.wait_for(cache.next_snapshot("n", first), 5) is second
    assert cache.node_ids() == ["n"]
    cache.clear("n")
    assert cache.get_snapshot("n") is None
    assert cache.node_ids() == []
    # cancelling a waiter leaves nothing behind
    waiter = asyncio.ensure_future(cache.next_snapshot("gone", None))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert cache._nodes == {}


def test_importing_the_package_loads_nothing_heavy() -> None:
    """``kumadp.xds`` is a leaf shared by the CP and the agent: importing it (or its type
    URLs) must not load grpc or the server."""
    code = (
        "import sys, kumadp.xds, kumadp.xds.types; "
        "heavy = [m for m in ('grpc', 'kumadp.xds.server', 'kumadp.xds.grpc_adapter') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
