"""The Envoy admin client, the readiness checker and the /ready server over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from kumadp.agent.admin import AdminError, EnvoyAdmin, admin_port_from_bootstrap
from kumadp.agent.readiness import Readiness, ReadinessChecker, ReadinessServer, State
from testkit.fakes import FakeAdmin
from testkit.procs import until


@pytest.fixture
async def fake_admin() -> AsyncIterator[FakeAdmin]:
    async with FakeAdmin(state="PRE_INITIALIZING", lds_updates=0) as admin:
        yield admin


async def test_admin_client(fake_admin: FakeAdmin) -> None:
    async with EnvoyAdmin(fake_admin.port) as admin:
        assert await admin.server_state() == "PRE_INITIALIZING"
        assert not await admin.listeners_received()
        fake_admin.state, fake_admin.lds_updates = "LIVE", 2
        assert await admin.server_state() == "LIVE"
        assert await admin.listeners_received()
        await admin.healthcheck_fail()
        assert fake_admin.healthcheck_failed_at is not None
        await admin.drain_listeners()
    targets = [r.target for r in fake_admin.server.requests]
    assert "/drain_listeners?inboundonly&graceful&skip_exit" in targets
    stats = next(t for t in targets if t.startswith("/stats"))
    assert "format=json" in stats


async def test_admin_client_unreachable(unused_tcp_port: int) -> None:
    async with EnvoyAdmin(unused_tcp_port) as admin:
        with pytest.raises(AdminError, match="/ready"):
            await admin.server_state()


def test_admin_port_from_bootstrap() -> None:
    yaml = b"admin:\n  address:\n    socket_address: {address: 127.0.0.1, port_value: 9911}\n"
    assert admin_port_from_bootstrap(yaml) == 9911
    assert admin_port_from_bootstrap(b"node: {}") is None


def test_readiness_state_is_sticky_terminating() -> None:
    r = Readiness()
    assert r.state is State.NOT_READY
    r.set_ready(True)
    assert r.state is State.READY
    r.set_terminating()
    r.set_ready(True)
    assert r.state is State.TERMINATING


async def get_ready(port: int) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False) as client:
        return await client.get(f"http://127.0.0.1:{port}/ready")


async def test_server_and_checker(fake_admin: FakeAdmin) -> None:
    readiness = Readiness()
    server = ReadinessServer(readiness, 0)
    stop = asyncio.Event()
    async with EnvoyAdmin(fake_admin.port) as admin:
        checker = ReadinessChecker(readiness, admin, initial_interval=0.02, interval=0.05)
        tasks = [asyncio.create_task(c.run(stop)) for c in (server, checker)]
        try:
            await asyncio.wait_for(server.started.wait(), 5)
            response = await get_ready(server.port)
            assert (response.status_code, response.text) == (503, "NOT_READY")
            assert response.headers["content-type"].startswith("text/plain")

            fake_admin.state = "LIVE"  # LIVE but no listeners yet: still not ready
            seen = len(fake_admin.server.requests)
            # two more checks, each asking /ready and then the LDS stats
            await until(lambda: len(fake_admin.server.requests) >= seen + 4)
            assert readiness.state is State.NOT_READY
            fake_admin.lds_updates = 1
            await until(lambda: readiness.state is State.READY)
            response = await get_ready(server.port)
            assert (response.status_code, response.text) == (200, "READY")

            fake_admin.state = "DRAINING"
            await until(lambda: readiness.state is State.NOT_READY)

            readiness.set_terminating()
            response = await get_ready(server.port)
            assert (response.status_code, response.text) == (503, "TERMINATING")

            async with httpx.AsyncClient(trust_env=False) as client:
                assert (await client.get(f"http://127.0.0.1:{server.port}/x")).status_code == 404
                head = await client.head(f"http://127.0.0.1:{server.port}/ready")
                assert head.status_code == 503 and head.content == b""
                post = await client.post(f"http://127.0.0.1:{server.port}/ready")
                assert post.status_code == 405
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 5)


async def test_server_port_in_use() -> None:
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    try:
        server = ReadinessServer(Readiness(), port)
        with pytest.raises(OSError, match=f"readiness server cannot listen on 127.0.0.1:{port}"):
            await server.run(asyncio.Event())
    finally:
        blocker.close()
        with contextlib.suppress(Exception):
            await blocker.wait_closed()
