"""Optimistic concurrency on the HTTP API: ETag/If-Match, and concurrent PUTs without a
version that never silently overwrite each other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from kumadp.cp.api import create_app
from kumadp.cp.store import MemoryStore, StoredResource
from testkit.procs import until
from tests.unit.test_api import BASE_URL, FakeBootstrap, assert_error, dp_doc, mesh_doc


class GatedStore(MemoryStore):
    """Holds every read of a Dataplane until released: two PUTs then surely overlap (both
    read before either writes), as two CP instances serving two clients at once can."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: asyncio.Event | None = None
        self.readers = 0

    async def get(self, type: str, mesh: str, name: str) -> StoredResource | None:
        result = await super().get(type, mesh, name)
        if type == "Dataplane" and self.gate is not None:
            self.readers += 1
            await self.gate.wait()
        return result


@pytest.fixture
def store() -> GatedStore:
    return GatedStore()


@pytest.fixture
async def client(store: GatedStore) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(store, FakeBootstrap()))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        assert (await c.put("/meshes/default", json=mesh_doc())).status_code == 201
        yield c


async def test_get_and_put_give_the_version_as_etag(client: httpx.AsyncClient) -> None:
    created = await client.put("/meshes/default/dataplanes/web-1", json=dp_doc())
    assert created.status_code == 201 and created.headers["etag"] == '"1"'
    got = await client.get("/meshes/default/dataplanes/web-1")
    assert got.headers["etag"] == '"1"'
    updated = await client.put(
        "/meshes/default/dataplanes/web-1", json=dp_doc(port=2), headers={"If-Match": '"1"'}
    )
    assert updated.status_code == 200 and updated.headers["etag"] == '"2"'


async def test_a_stale_if_match_gets_409_and_changes_nothing(client: httpx.AsyncClient) -> None:
    await client.put("/meshes/default/dataplanes/web-1", json=dp_doc())
    await client.put("/meshes/default/dataplanes/web-1", json=dp_doc(port=2))
    stale = await client.put(
        "/meshes/default/dataplanes/web-1", json=dp_doc(port=3), headers={"If-Match": '"1"'}
    )
    body = assert_error(stale, 409)
    assert body["details"] == (
        'Dataplane "web-1" in mesh "default" was changed by another writer meanwhile '
        "(expected version 1, found 2); read it again and retry"
    )
    assert stale.headers["etag"] == '"2"'
    got = (await client.get("/meshes/default/dataplanes/web-1")).json()
    assert got["networking"]["inbound"][0]["port"] == 2
    # If-Match "0": create only.
    again = await client.put(
        "/meshes/default/dataplanes/web-1", json=dp_doc(), headers={"If-Match": '"0"'}
    )
    assert_error(again, 409)


async def test_a_bad_if_match_is_a_400(client: httpx.AsyncClient) -> None:
    resp = await client.put(
        "/meshes/default/dataplanes/web-1", json=dp_doc(), headers={"If-Match": "yesterday"}
    )
    body = assert_error(resp, 400)
    assert body["causes"][0]["field"] == "If-Match"


@pytest.mark.parametrize("existing", [False, True])
async def test_two_overlapping_puts_without_version_one_wins_one_409(
    client: httpx.AsyncClient, store: GatedStore, existing: bool
) -> None:
    if existing:
        await client.put("/meshes/default/dataplanes/web-1", json=dp_doc())
    store.gate = asyncio.Event()

    async def put(port: int) -> httpx.Response:
        return await client.put("/meshes/default/dataplanes/web-1", json=dp_doc(port=port))

    first = asyncio.ensure_future(put(11))
    second = asyncio.ensure_future(put(12))
    await until(lambda: store.readers >= 2, "both PUTs read the same version")
    store.gate.set()
    responses = [await first, await second]
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200 if existing else 201, 409], [r.text for r in responses]
    store.gate = None
    winner = next(r for r in responses if r.status_code != 409)
    port = 11 if winner is responses[0] else 12
    got: dict[str, Any] = (await client.get("/meshes/default/dataplanes/web-1")).json()
    assert got["networking"]["inbound"][0]["port"] == port
