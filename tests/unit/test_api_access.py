"""The API's access layer: every route has a rule, who is who (tokens, loopback with a
loopback Host, anonymous), what each may do, and what is logged."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from kumadp.cp.api import create_app
from kumadp.cp.api.access import ADMIN, READ, Rule, resource_rules
from kumadp.cp.api.authn import ApiSecurity, is_loopback_host
from kumadp.cp.runtime.config import ControlPlaneConfig
from kumadp.cp.runtime.control_plane import ControlPlane
from kumadp.cp.runtime.servers import api_app, write_bootstrap_admin_token
from kumadp.cp.store import MemoryStore
from kumadp.cp.user_tokens import ADMIN_GROUP, UserTokens
from kumadp.resources.registry import REGISTRY

LOOPBACK = "http://127.0.0.1:5681"
MESH = {"type": "Mesh", "name": "other"}


@pytest.fixture
async def cp(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    config = ControlPlaneConfig(store="memory", data_dir=tmp_path, dp_server_tls=False)
    store = MemoryStore()
    plane = ControlPlane(config, store)
    yield plane
    plane.tokens.close()
    plane.zone_tokens.close()
    plane.user_tokens.close()
    await store.close()


def client(app: Any, *, client: tuple[str, int] = ("127.0.0.1", 40000), **kw: Any) -> Any:
    transport = httpx.ASGITransport(app=app, client=client)
    return httpx.AsyncClient(transport=transport, base_url=kw.pop("base_url", LOOPBACK), **kw)


def remote(app: Any, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client(app, client=("10.9.8.7", 40000), base_url="http://10.1.2.3:5681",
                  headers=headers)  # fmt: skip


async def test_every_route_of_the_control_plane_has_a_rule(cp: ControlPlane) -> None:
    app = api_app(cp)
    rules = app.state.access_rules
    assert rules.missing(app.routes) == []
    # the table names every kind of access; config dumps and tokens are for admins
    assert rules.rule_for("GET", "/meshes/{mesh}/dataplanes/{name}/_config").access is ADMIN
    assert rules.rule_for("POST", "/tokens/zone").access is ADMIN
    assert rules.rule_for("HEAD", "/meshes").access is READ
    for rule in resource_rules(REGISTRY):
        assert (rule.access is READ) == (rule.method == "GET"), rule


async def test_a_route_without_a_rule_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    async def secret(request: Request) -> Response:
        return PlainTextResponse("the crown jewels")

    app = create_app(MemoryStore(), extra_routes=[Route("/jewels", secret, methods=["GET"])])
    assert app.state.access_rules.missing(app.routes) == ["GET /jewels"]
    async with client(app) as c:  # even an admin: fail closed
        r = await c.get("/jewels")
    assert r.status_code == 403 and "no access rule for GET /jewels" in r.json()["details"]
    assert "no access rule for GET /jewels" in caplog.text
    ruled = create_app(
        MemoryStore(),
        extra_routes=[Route("/jewels", secret, methods=["GET"])],
        extra_rules=[Rule("GET", "/jewels", ADMIN)],
    )
    async with client(ruled) as c:
        assert (await c.get("/jewels")).text == "the crown jewels"
    async with remote(ruled) as c:
        assert (await c.get("/jewels")).status_code == 401


async def test_anonymous_remote_callers_read_but_never_write(
    cp: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    app = api_app(cp)
    caplog.set_level(logging.INFO)
    async with remote(app) as c:
        assert (await c.get("/meshes")).status_code == 200
        assert (await c.get("/")).status_code == 200
        for method, path, body in [
            ("PUT", "/meshes/other", MESH),
            ("DELETE", "/meshes/default", None),
            ("POST", "/tokens/dataplane", {"mesh": "default"}),
            ("POST", "/tokens/user", {"name": "eve", "groups": [ADMIN_GROUP]}),
            ("GET", "/meshes/default/dataplanes/x/_config", None),
        ]:
            r = await c.request(method, path, json=body)
            assert r.status_code == 401, (method, path, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert "needs an admin" in r.json()["details"]
    assert "api: PUT /meshes/other refused (401) for an anonymous caller from 10.9.8.7" in (
        caplog.text
    )
    assert await cp.store.get("Mesh", "", "other") is None


async def test_anonymous_reads_can_be_turned_off(cp: ControlPlane) -> None:
    cp.config.api_anonymous_read = False
    async with remote(api_app(cp)) as c:
        r = await c.get("/meshes")
        assert r.status_code == 401 and "needs a user token" in r.json()["details"]
        assert (await c.get("/")).status_code == 200  # public


async def test_user_tokens_admin_and_read_only(
    cp: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = api_app(cp)
    async with client(app) as local:  # loopback admin issues the first tokens
        r = await local.post("/tokens/user", json={"name": "alice", "groups": [ADMIN_GROUP]})
        admin = r.text
        reader = (await local.post("/tokens/user", json={"name": "bob"})).text
    assert "issued a user token for \"alice\" in groups ['mesh-system:admin'] to " in caplog.text
    assert admin not in caplog.text  # never the token itself
    async with remote(app, reader) as c:
        assert (await c.get("/meshes")).status_code == 200
        r = await c.put("/meshes/other", json=MESH)
        assert r.status_code == 403
        assert r.json()["details"] == 'user "bob" is not an admin (not in group mesh-system:admin)'
    async with remote(app, admin) as c:
        assert (await c.put("/meshes/other", json=MESH)).status_code == 201
        assert (await c.post("/tokens/zone", json={"zone": "zone-a"})).status_code == 200
    assert 'api: PUT /meshes/other -> 201 by user "alice" from 10.9.8.7' in caplog.text
    assert (
        "issued a zone token for zone \"zone-a\" with scope ['ingress', 'egress'] to user "
        '"alice" from 10.9.8.7' in caplog.text
    )


async def test_expired_revoked_and_forged_tokens_are_refused(cp: ControlPlane) -> None:
    app = api_app(cp)
    admin = await cp.user_tokens.issue("alice", [ADMIN_GROUP])
    other_store = MemoryStore()
    forger = UserTokens(other_store)  # another CP's keys: same kid, other key
    forged = await forger.issue("mallory", [ADMIN_GROUP])
    forger.close()
    await other_store.close()
    cases = {
        forged: "user token refused: signature does not verify",
        admin[:-4] + "AAAA": "user token refused: signature does not verify",
        "not-a-token": "user token refused: malformed token",
    }
    async with remote(app, admin) as c:
        jti = (await cp.user_tokens.verify(admin)).jti
        assert (await c.put("/meshes/other", json=MESH)).status_code == 201
        assert (await c.post("/tokens/user/revoke", json={"jti": jti})).status_code == 200
        cases[admin] = f"user token refused: token was revoked (jti {jti})"
    for token, reason in cases.items():
        async with remote(app, token) as c:
            r = await c.get("/meshes")  # even a read: a bad credential is never anonymous
            assert r.status_code == 401 and r.json()["details"].startswith(reason), r.text
    import jwt as pyjwt

    keys = cp.user_tokens.signing_keys
    assert keys is not None
    key = await keys.signing_key()
    expired = pyjwt.encode(
        {"Name": "alice", "Groups": [ADMIN_GROUP], "jti": "x", "exp": 1_700_000_000},
        key.private_key,
        algorithm="RS256",
        headers={"kid": key.kid},
    )
    async with remote(app, expired) as c:
        r = await c.delete("/meshes/other")
        assert r.status_code == 401
        assert r.json()["details"] == "user token refused: token expired at 2023-11-14T22:13:20Z"
    async with remote(app) as c:
        r = await c.get("/meshes", headers={"Authorization": "Basic YTpi"})
        assert r.status_code == 401 and "Bearer <user token>" in r.json()["details"]


@pytest.mark.parametrize(
    ("host", "origin", "admin"),
    [
        ("127.0.0.1:5681", None, True),
        ("localhost:5681", None, True),
        ("[::1]:5681", None, True),
        ("127.0.0.1:5681", "http://localhost:3000", True),
        ("attacker.example:5681", None, False),  # DNS rebinding
        ("web.mesh", None, False),  # relayed by a sidecar
        ("127.0.0.1:5681", "http://attacker.example", False),  # a web page's request
        ("", None, False),
    ],
)
async def test_loopback_is_admin_only_with_a_loopback_host(
    cp: ControlPlane, host: str, origin: str | None, admin: bool
) -> None:
    headers = {"Host": host}
    if origin:
        headers["Origin"] = origin
    async with client(api_app(cp)) as c:
        r = await c.put("/meshes/other", json=MESH, headers=headers)
    assert r.status_code == (201 if admin else 401), r.text


async def test_loopback_admin_can_be_turned_off(cp: ControlPlane) -> None:
    cp.config.localhost_is_admin = False
    token = await cp.user_tokens.issue("alice", [ADMIN_GROUP])
    async with client(api_app(cp)) as c:
        assert (await c.put("/meshes/other", json=MESH)).status_code == 401
        headers = {"Authorization": f"Bearer {token}"}
        assert (await c.put("/meshes/other", json=MESH, headers=headers)).status_code == 201


async def test_bootstrap_admin_token_file(cp: ControlPlane, tmp_path: Path) -> None:
    path = await write_bootstrap_admin_token(cp.config, cp.user_tokens)
    assert path == tmp_path / "admin-user-token"
    assert path.stat().st_mode & 0o777 == 0o600
    claims = await cp.user_tokens.verify(path.read_text())
    assert claims.is_admin
    again = await write_bootstrap_admin_token(cp.config, cp.user_tokens)  # still valid: kept
    assert again == path and (await cp.user_tokens.verify(path.read_text())).jti == claims.jti


def test_is_loopback_host() -> None:
    for good in ("localhost", "LOCALHOST:1", "127.0.0.1", "127.9.9.9:80", "[::1]:5681",
                 "http://localhost:3000", "localhost."):  # fmt: skip
        assert is_loopback_host(good), good
    for bad in ("", "localhost.attacker.example", "10.0.0.1", "[::2]", "0.0.0.0", "x:y:z"):
        assert not is_loopback_host(bad), bad


async def test_default_security_is_loopback_admin_and_anonymous_read() -> None:
    app = create_app(MemoryStore(), security=ApiSecurity())
    async with remote(app, "whatever") as c:
        r = await c.get("/meshes")
        assert r.status_code == 401 and "accepts no user tokens" in r.json()["details"]
