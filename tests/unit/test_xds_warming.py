"""A changed EDS cluster warms in Envoy until endpoints arrive for it: after every clusters
response the ADS server sends the endpoints again, even when their version is unchanged
(else Envoy waits its 15 s ``initial_fetch_timeout`` before using the changed cluster)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from google.protobuf import duration_pb2

from kumadp.xds import types
from kumadp.xds.snapshot import Snapshot
from tests.unit.test_xds_server import NODE, Harness, ack, names_in, request, snapshot


def with_connect_timeout(base: Snapshot, seconds: int) -> Snapshot:
    """``base`` with every cluster's connect timeout changed: CDS changes, EDS does not."""
    resources = {}
    for url in base.type_urls:
        resources[url] = []
        for message in base.resources(url).values():
            copy = type(message)()
            copy.CopyFrom(message)
            resources[url].append(copy)
    for cluster in resources[types.CLUSTER]:
        cluster.connect_timeout.CopyFrom(duration_pb2.Duration(seconds=seconds))
    return Snapshot.build(resources)


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = Harness()
    try:
        yield harness
    finally:
        if harness.task is not None and not harness.task.done():
            harness.task.cancel()


async def test_a_cluster_change_resends_the_unchanged_endpoints(h: Harness) -> None:
    first = snapshot()
    h.cache.set_snapshot(NODE, first)
    h.start()
    got = await h.subscribe_all()
    changed = with_connect_timeout(first, 2)
    assert changed.versions[types.ENDPOINT] == first.versions[types.ENDPOINT]
    assert changed.versions[types.CLUSTER] != first.versions[types.CLUSTER]

    h.cache.set_snapshot(NODE, changed)
    cds, eds = await h.stream.next_response(), await h.stream.next_response()
    assert (cds.type_url, eds.type_url) == (types.CLUSTER, types.ENDPOINT)
    assert eds.version_info == got[types.ENDPOINT].version_info  # same content...
    assert eds.nonce != got[types.ENDPOINT].nonce  # ...as a new response
    assert names_in(eds) == ["backend", "web"]  # the names Envoy asked for
    # Envoy's EDS request for the re-created clusters and the ACKs: nothing more to send.
    h.stream.push(request(types.ENDPOINT, version=eds.version_info, nonce=eds.nonce,
                          names=["backend", "web"]))  # fmt: skip
    h.stream.push(ack(cds))
    await h.stream.settled()
    assert h.stream.unread() == []


async def test_endpoint_only_changes_send_no_clusters(h: Harness) -> None:
    first = snapshot()
    h.cache.set_snapshot(NODE, first)
    h.start()
    await h.subscribe_all()
    h.cache.set_snapshot(NODE, snapshot(port=9090))
    pushed = await h.stream.next_response()
    assert pushed.type_url == types.ENDPOINT
    h.stream.push(ack(pushed, names=["backend", "web"]))
    await h.stream.settled()
    assert h.stream.unread() == []
