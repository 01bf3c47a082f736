"""The control plane's HTTP API against an in-memory store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import yaml

import kumadp
from kumadp.cp.api import create_app
from kumadp.cp.api.bodies import MAX_BODY_BYTES
from kumadp.cp.bootstrap import BootstrapError, ErrorKind
from kumadp.cp.store import ChangeEvent, MemoryStore

BASE_URL = "http://127.0.0.1:5681"  # a loopback caller: an admin


def mesh_doc(name: str = "default") -> dict[str, Any]:
    return {"type": "Mesh", "name": name}


def dp_doc(mesh: str = "default", name: str = "web-1", port: int = 10001) -> dict[str, Any]:
    return {
        "type": "Dataplane",
        "mesh": mesh,
        "name": name,
        "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": port, "servicePort": 8080, "tags": {"kuma.io/service": "web"}}],
        },
    }


class FakeBootstrap:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], str]] = []
        self.error: BootstrapError | None = None

    async def handle(self, body: dict[str, Any], host: str) -> dict[str, Any]:
        self.calls.append((body, host))
        if self.error is not None:
            raise self.error
        return {"bootstrap": "eWFtbA==", "kumaSidecarConfiguration": {}}


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def fake_bootstrap() -> FakeBootstrap:
    return FakeBootstrap()


@pytest.fixture
async def client(
    store: MemoryStore, fake_bootstrap: FakeBootstrap
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store, fake_bootstrap)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        yield c


def assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    # ours (title, details, causes) and Kuma's newer fields beside them
    assert set(body) - {"invalid_parameters"} == {
        "type",
        "status",
        "title",
        "detail",
        "details",
        "causes",
    }
    assert body["type"] == "/std-errors" and body["status"] == status
    assert body["detail"] == body["details"]
    assert isinstance(body["causes"], list)
    expected = [{"field": c["field"], "reason": c["message"]} for c in body["causes"]]
    assert body.get("invalid_parameters", []) == expected
    assert "Traceback" not in response.text
    return body


def cause_fields(body: dict[str, Any]) -> list[str]:
    return [c["field"] for c in body["causes"]]


async def put_json(client: httpx.AsyncClient, url: str, doc: Any) -> httpx.Response:
    return await client.put(url, json=doc)


# --- index and routing ------------------------------------------------------------------


async def test_index(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 200
    body = r.json()
    assert body["tagline"] == "kumadp"
    assert body["product"] == "kumadp"
    assert body["version"] == kumadp.__version__
    assert body["hostname"]


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    body = assert_error(await client.get("/nope"), 404)
    assert "/nope" in body["details"]
    r = await client.post("/meshes/default")
    body = assert_error(r, 405)
    assert "PUT" in r.headers["allow"]


# --- meshes -----------------------------------------------------------------------------


async def test_mesh_crud(client: httpx.AsyncClient, store: MemoryStore) -> None:
    r = await put_json(client, "/meshes/default", mesh_doc())
    assert (r.status_code, r.json()) == (201, {})

    r = await client.get("/meshes/default")
    assert r.status_code == 200
    body = r.json()
    assert body["type"] == "Mesh" and body["name"] == "default"
    assert body["creationTime"].endswith("Z") and body["modificationTime"].endswith("Z")
    assert list(body)[:4] == ["type", "name", "creationTime", "modificationTime"]

    r = await put_json(client, "/meshes/default", {**mesh_doc(), "labels": {"team": "a"}})
    assert (r.status_code, r.json()) == (200, {})
    updated = (await client.get("/meshes/default")).json()
    assert updated["labels"] == {"team": "a"}
    assert updated["creationTime"] == body["creationTime"]
    stored = await store.get("Mesh", "", "default")
    assert stored is not None and stored.version == 2

    r = await client.get("/meshes")
    assert r.json() == {"total": 1, "items": [updated], "next": None}

    r = await client.delete("/meshes/default")
    assert (r.status_code, r.json()) == (200, {})
    body = assert_error(await client.get("/meshes/default"), 404)
    assert "default" in body["details"]
    assert_error(await client.delete("/meshes/default"), 404)


async def test_identical_put_emits_no_event(client: httpx.AsyncClient, store: MemoryStore) -> None:
    changes = store.changes()
    assert (await put_json(client, "/meshes/m", mesh_doc("m"))).status_code == 201
    assert (await put_json(client, "/meshes/m", mesh_doc("m"))).status_code == 200
    events: list[ChangeEvent] = changes.drain()
    # The first PUT creates the mesh and its default policies; the identical second one nothing.
    assert [(e.op, e.type) for e in events] == [
        ("create", "Mesh"),
        ("create", "MeshTrafficPermission"),
        ("create", "MeshTimeout"),
        ("create", "MeshCircuitBreaker"),
        ("create", "MeshRetry"),
    ]


async def test_put_yaml(client: httpx.AsyncClient) -> None:
    text = yaml.safe_dump(mesh_doc("a"))
    r = await client.put("/meshes/a", content=text, headers={"content-type": "application/yaml"})
    assert r.status_code == 201, r.text
    # YAML without a YAML content type is accepted too.
    r = await client.put("/meshes/b", content=yaml.safe_dump(mesh_doc("b")))
    assert r.status_code == 201, r.text
    names = [m["name"] for m in (await client.get("/meshes")).json()["items"]]
    assert names == ["a", "b"]


async def test_put_fills_type_and_name(client: httpx.AsyncClient) -> None:
    assert (await put_json(client, "/meshes/m", {})).status_code == 201
    assert (await client.get("/meshes/m")).json()["type"] == "Mesh"


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"type": "Mesh", "name": "other"}, "name"),
        ({"type": "Dataplane", "name": "m"}, "type"),
    ],
)
async def test_mesh_body_must_match_url(
    client: httpx.AsyncClient, doc: dict[str, Any], field: str
) -> None:
    body = assert_error(await put_json(client, "/meshes/m", doc), 400)
    assert cause_fields(body) == [field]
    assert body["details"].startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("content", "content_type", "fragment"),
    [
        (b"", "application/json", "empty"),
        (b"{not json", "application/json", "not valid JSON"),
        (b"[1, 2]", "application/json", "must be an object"),
        (b"a: [b", "application/yaml", "not valid JSON or YAML"),
        (b'{"name": NaN}', "application/json", "not valid JSON"),
    ],
)
async def test_bad_bodies(
    client: httpx.AsyncClient, content: bytes, content_type: str, fragment: str
) -> None:
    r = await client.put("/meshes/m", content=content, headers={"content-type": content_type})
    body = assert_error(r, 400)
    assert fragment in body["details"]


async def test_body_too_large(client: httpx.AsyncClient) -> None:
    r = await client.put("/meshes/m", content=b" " * (MAX_BODY_BYTES + 1))
    assert_error(r, 413)


# --- dataplanes -------------------------------------------------------------------------


async def test_dataplane_crud(client: httpx.AsyncClient) -> None:
    await put_json(client, "/meshes/default", mesh_doc())
    url = "/meshes/default/dataplanes/web-1"
    r = await put_json(client, url, dp_doc())
    assert r.status_code == 201, r.text
    body = (await client.get(url)).json()
    assert body["mesh"] == "default" and body["name"] == "web-1"
    assert body["networking"]["inbound"][0]["port"] == 10001
    assert list(body)[:5] == ["type", "mesh", "name", "creationTime", "modificationTime"]

    r = await put_json(client, url, dp_doc(port=10002))
    assert r.status_code == 200
    assert (await client.get(url)).json()["networking"]["inbound"][0]["port"] == 10002

    assert (await client.delete(url)).status_code == 200
    body = assert_error(await client.get(url), 404)
    assert "web-1" in body["details"] and "default" in body["details"]


async def test_dataplane_mesh_filled_from_path(client: httpx.AsyncClient) -> None:
    await put_json(client, "/meshes/prod", mesh_doc("prod"))
    doc = dp_doc()
    del doc["mesh"]
    assert (await put_json(client, "/meshes/prod/dataplanes/web-1", doc)).status_code == 201
    assert (await client.get("/meshes/prod/dataplanes/web-1")).json()["mesh"] == "prod"


async def test_dataplane_mesh_mismatch(client: httpx.AsyncClient) -> None:
    await put_json(client, "/meshes/prod", mesh_doc("prod"))
    r = await put_json(client, "/meshes/prod/dataplanes/web-1", dp_doc(mesh="default"))
    body = assert_error(r, 400)
    assert cause_fields(body) == ["mesh"]


async def test_dataplane_into_missing_mesh(client: httpx.AsyncClient) -> None:
    r = await put_json(client, "/meshes/x/dataplanes/web-1", dp_doc(mesh="x"))
    body = assert_error(r, 400)
    assert body["details"] == 'mesh: mesh "x" does not exist'
    assert body["causes"] == [{"field": "mesh", "message": 'mesh "x" does not exist'}]


async def test_dataplane_validation_errors_name_fields(client: httpx.AsyncClient) -> None:
    await put_json(client, "/meshes/default", mesh_doc())
    doc = dp_doc(port=70000)
    r = await put_json(client, "/meshes/default/dataplanes/web-1", doc)
    body = assert_error(r, 400)
    assert "networking.inbound[0].port" in cause_fields(body)
    assert "networking.inbound[0].port: " in body["details"]
    assert_error(await client.get("/meshes/default/dataplanes/web-1"), 404)


async def test_list_dataplanes_per_mesh_and_all(client: httpx.AsyncClient) -> None:
    for mesh in ("a", "b"):
        await put_json(client, f"/meshes/{mesh}", mesh_doc(mesh))
    for mesh, name in [("b", "x"), ("a", "y"), ("a", "x")]:
        r = await put_json(client, f"/meshes/{mesh}/dataplanes/{name}", dp_doc(mesh, name))
        assert r.status_code == 201, r.text

    in_a = (await client.get("/meshes/a/dataplanes")).json()
    assert in_a["total"] == 2 and [d["name"] for d in in_a["items"]] == ["x", "y"]
    everything = (await client.get("/dataplanes")).json()
    assert [(d["mesh"], d["name"]) for d in everything["items"]] == [
        ("a", "x"),
        ("a", "y"),
        ("b", "x"),
    ]
    missing = assert_error(await client.get("/meshes/none/dataplanes"), 404)  # as Kuma
    assert missing["details"] == 'Mesh "none" not found'


async def test_mesh_delete_cascades(client: httpx.AsyncClient, store: MemoryStore) -> None:
    for mesh in ("a", "b"):
        await put_json(client, f"/meshes/{mesh}", mesh_doc(mesh))
        for name in ("x", "y"):
            await put_json(client, f"/meshes/{mesh}/dataplanes/{name}", dp_doc(mesh, name))
    assert (await client.delete("/meshes/a")).status_code == 200
    assert await store.list("Dataplane", "a") == []
    assert [d.name for d in await store.list("Dataplane", "b")] == ["x", "y"]
    assert (await client.get("/dataplanes")).json()["total"] == 2


# --- paging -----------------------------------------------------------------------------


async def test_paging(client: httpx.AsyncClient) -> None:
    names = [f"m{i}" for i in range(5)]
    for name in names:
        await put_json(client, f"/meshes/{name}", mesh_doc(name))

    first = (await client.get("/meshes", params={"size": 2})).json()
    assert first["total"] == 5
    assert [m["name"] for m in first["items"]] == ["m0", "m1"]
    assert first["next"] is not None and first["next"].startswith(BASE_URL + "/meshes?")

    seen = [m["name"] for m in first["items"]]
    url = first["next"]
    while url is not None:
        body = (await client.get(url)).json()
        seen += [m["name"] for m in body["items"]]
        url = body["next"]
    assert seen == names

    beyond = (await client.get("/meshes", params={"offset": 10})).json()
    assert beyond == {"total": 5, "items": [], "next": None}
    default_size = (await client.get("/meshes")).json()
    assert len(default_size["items"]) == 5 and default_size["next"] is None


@pytest.mark.parametrize(
    "params", [{"size": "0"}, {"size": "1001"}, {"size": "x"}, {"offset": "-1"}]
)
async def test_bad_paging_params(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    body = assert_error(await client.get("/meshes", params=params), 400)
    assert cause_fields(body) == list(params)


# --- unexpected errors ------------------------------------------------------------------


class BrokenStore(MemoryStore):
    async def get(self, type: str, mesh: str, name: str) -> Any:
        raise RuntimeError("secret internal detail")


async def test_unexpected_error_is_a_json_500(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(BrokenStore())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        r = await c.get("/meshes/default")
    body = assert_error(r, 500)
    assert body["title"] == "Internal error"
    assert "secret internal detail" not in r.text
    assert "secret internal detail" in caplog.text


# --- bootstrap --------------------------------------------------------------------------


async def test_bootstrap_success(client: httpx.AsyncClient, fake_bootstrap: FakeBootstrap) -> None:
    r = await client.post("/bootstrap", json={"mesh": "default", "name": "web-1"})
    assert r.status_code == 200
    assert r.json()["bootstrap"] == "eWFtbA=="
    assert fake_bootstrap.calls == [({"mesh": "default", "name": "web-1"}, "127.0.0.1")]


async def test_bootstrap_host_ipv6(
    client: httpx.AsyncClient, fake_bootstrap: FakeBootstrap
) -> None:
    r = await client.post("/bootstrap", json={}, headers={"host": "[::1]:5681"})
    assert r.status_code == 200
    assert fake_bootstrap.calls[-1][1] == "::1"


async def test_bootstrap_not_known_yet_is_empty_404(
    client: httpx.AsyncClient, fake_bootstrap: FakeBootstrap
) -> None:
    fake_bootstrap.error = BootstrapError(ErrorKind.NOT_FOUND)
    r = await client.post("/bootstrap", json={"mesh": "default", "name": "web-1"})
    assert r.status_code == 404
    assert r.content == b""


async def test_bootstrap_handler_error_message(
    client: httpx.AsyncClient, fake_bootstrap: FakeBootstrap
) -> None:
    fake_bootstrap.error = BootstrapError(ErrorKind.INVALID, "proxyType: must be one of dataplane")
    body = assert_error(await client.post("/bootstrap", json={}), 422)
    assert body["details"] == "proxyType: must be one of dataplane"


@pytest.mark.parametrize("content", [b"{nope", b"[1]", b'"text"', b""])
async def test_bootstrap_bad_json(
    client: httpx.AsyncClient, fake_bootstrap: FakeBootstrap, content: bytes
) -> None:
    r = await client.post(
        "/bootstrap", content=content, headers={"content-type": "application/json"}
    )
    body = assert_error(r, 400)
    assert body["details"]
    assert fake_bootstrap.calls == []


async def test_bootstrap_without_handler() -> None:
    transport = httpx.ASGITransport(app=create_app(MemoryStore()))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        r = await c.post("/bootstrap", content=json.dumps({}))
    body = assert_error(r, 404)
    assert "bootstrap" in body["details"]
