"""Drain until idle: reading Envoy's outbound connections, the wait, and the agent's
shutdown sequence with ``drain_until_idle`` (fake Envoy admin API)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from pathlib import Path

import pytest

from kumadp.agent.admin import AdminError, EnvoyAdmin
from kumadp.agent.drain import (
    AdminConnections,
    active_connections,
    describe,
    listener_stat_prefix,
    outbound_listeners,
    wait_until_idle,
)
from testkit.fakes import FakeHttpServer, Request
from tests.unit import test_agent_run as fakes

world = fakes.world  # the fixture: fake CP, agent channel and Envoy admin

LISTENERS = {
    "listener_statuses": [
        {
            "name": "inbound:127.0.0.1:20001",
            "local_address": {"socket_address": {"address": "127.0.0.1", "port_value": 20001}},
        },
        {
            "name": "outbound:127.0.0.1:10001",
            "local_address": {"socket_address": {"address": "127.0.0.1", "port_value": 10001}},
        },
        {
            "name": "outbound:240.0.0.1:80",
            "local_address": {"socket_address": {"address": "240.0.0.1", "port_value": 80}},
        },
        {"name": "outbound:broken"},
        {
            "name": "kuma:metrics:prometheus",
            "local_address": {"socket_address": {"address": "0.0.0.0", "port_value": 5670}},
        },
    ]
}


def stats(**active: int) -> dict[str, object]:
    items = [{"name": f"listener.{k}.downstream_cx_active", "value": v} for k, v in active.items()]
    items.append({"name": "listener.admin.downstream_cx_active", "value": 3})
    return {"stats": items}


def test_listener_stat_prefix_matches_envoys_naming() -> None:
    assert listener_stat_prefix("127.0.0.1", 10001) == "listener.127.0.0.1_10001."
    assert listener_stat_prefix("::1", 8080) == "listener.[__1]_8080."


def test_outbound_listeners_by_name() -> None:
    assert outbound_listeners(LISTENERS) == {
        "outbound:127.0.0.1:10001": "listener.127.0.0.1_10001.",
        "outbound:240.0.0.1:80": "listener.240.0.0.1_80.",
    }
    assert outbound_listeners({}) == {}


def test_active_connections_per_outbound_listener() -> None:
    outbound = outbound_listeners(LISTENERS)
    data = stats(**{"127.0.0.1_10001": 2, "127.0.0.1_20001": 7})
    assert active_connections(data, outbound) == {
        "outbound:127.0.0.1:10001": 2,
        "outbound:240.0.0.1:80": 0,  # no stat yet: nothing active
    }
    text = describe({"outbound:127.0.0.1:10001": 2, "outbound:240.0.0.1:80": 0})
    assert text == "2 connections on outbound:127.0.0.1:10001 (2)"


class Script:
    """A connection source that plays a list of answers (the last one repeats)."""

    def __init__(self, *answers: dict[str, int] | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def outbound_connections(self) -> dict[str, int]:
        self.calls += 1
        answer = self.answers[0] if len(self.answers) == 1 else self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)


async def test_wait_until_idle_needs_a_quiet_period(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kumadp")
    busy, idle = {"outbound:127.0.0.1:10001": 1}, {"outbound:127.0.0.1:10001": 0}
    # Busy, a gap between two requests, an admin error, busy again, then idle for good.
    source = Script(busy, idle, AdminError("Envoy admin GET /stats: refused"), busy, idle)
    started = time.monotonic()
    await asyncio.wait_for(wait_until_idle(source, interval=0.01, quiet=0.2), 5)
    assert time.monotonic() - started >= 0.2
    assert source.calls >= 5 + 10  # the quiet period took several polls
    assert "waiting for the application's 1 connection on outbound:127.0.0.1:10001" in caplog.text
    assert "no connection through the sidecar for 0.2s: stopping" in caplog.text


async def test_wait_until_idle_keeps_waiting_while_busy() -> None:
    source = Script({"outbound:127.0.0.1:10001": 1})
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(wait_until_idle(source, interval=0.01, quiet=0.05), 0.3)
    assert source.calls > 5


async def test_wait_until_idle_with_no_outbound_listeners_returns() -> None:
    await asyncio.wait_for(wait_until_idle(Script({}), interval=0.01, quiet=0.05), 2)


class FakeEnvoyStats:
    """/listeners and /stats of a fake Envoy admin API, with a settable connection count."""

    def __init__(self) -> None:
        self.active = 1
        self.requests: list[Request] = []

    async def __call__(self, request: Request) -> tuple[int, str, bytes]:
        self.requests.append(request)
        if request.path == "/listeners":
            return 200, "application/json", json.dumps(LISTENERS).encode()
        if request.path == "/stats" and "downstream_cx_active" in request.target:
            body = stats(**{"127.0.0.1_10001": self.active, "127.0.0.1_20001": 4})
            return 200, "application/json", json.dumps(body).encode()
        return 404, "text/plain", b"not found\n"


async def test_admin_connections_reads_envoys_admin_api() -> None:
    envoy = FakeEnvoyStats()
    async with FakeHttpServer(envoy) as server:
        async with EnvoyAdmin(server.port) as admin:
            assert await AdminConnections(admin).outbound_connections() == {
                "outbound:127.0.0.1:10001": 1,
                "outbound:240.0.0.1:80": 0,
            }
    stats_request = next(r for r in envoy.requests if r.path == "/stats")
    assert "format=json" in stats_request.target


async def test_sigterm_with_drain_until_idle_waits_for_the_last_connection(
    world: fakes.World, tmp_path: Path, unused_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kumadp")
    envoy = FakeEnvoyStats()
    admin_handler = world.admin.server.handler
    drained: list[str] = []

    async def handler(request: Request) -> tuple[int, str, bytes]:
        if request.path == "/drain_listeners":
            drained.append(request.target)
        if request.path == "/listeners" or (
            request.path == "/stats" and "downstream_cx_active" in request.target
        ):
            return await envoy(request)
        return await admin_handler(request)

    world.admin.server.handler = handler
    cfg = fakes.config(world, tmp_path, unused_tcp_port, drain_time=60.0, drain_until_idle=True)
    async with fakes.agent_task(cfg) as task:
        await fakes.until_ready_state(unused_tcp_port, (200, "READY"))
        os.kill(os.getpid(), signal.SIGTERM)
        waiting = "drain-until-idle: waiting for the application's 1 connection"
        await fakes.until(lambda: waiting in caplog.text, what="the wait for the app")
        assert not task.done()
        assert world.admin.healthcheck_failed_at is not None
        assert drained == ["/drain_listeners?inboundonly&graceful&skip_exit"]
        polls = len(envoy.requests)
        await fakes.until(lambda: len(envoy.requests) >= polls + 6, what="polling")
        assert not task.done()
        closed = time.monotonic()
        envoy.active = 0  # the application closed its last connection
        assert await asyncio.wait_for(task, 10) == 0
    assert 0.9 <= time.monotonic() - closed < 10  # the 1 s quiet period, not the 60 s
    assert (tmp_path / "wd" / "fake-envoy.events").read_text().strip() == "terminated"


async def test_drain_until_idle_is_bounded_by_the_drain_time(
    world: fakes.World, tmp_path: Path, unused_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kumadp")
    envoy = FakeEnvoyStats()  # one connection that never closes
    admin_handler = world.admin.server.handler

    async def handler(request: Request) -> tuple[int, str, bytes]:
        if request.path in ("/listeners", "/stats") and "lds" not in request.target:
            return await envoy(request)
        return await admin_handler(request)

    world.admin.server.handler = handler
    cfg = fakes.config(world, tmp_path, unused_tcp_port, drain_time=0.5, drain_until_idle=True)
    async with fakes.agent_task(cfg) as task:
        await fakes.until_ready_state(unused_tcp_port, (200, "READY"))
        signalled = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, 10) == 0
    assert time.monotonic() - signalled >= 0.45
    assert "drain time (0.5s) over with outbound connections still open" in caplog.text
