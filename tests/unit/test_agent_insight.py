"""The agent's insight reporter: what it collects, when it sends, and CP failures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from kumadp import __version__
from kumadp.agent.cp_channel import DpServer
from kumadp.agent.cp_watch import CpLink
from kumadp.agent.envoy import EnvoyVersion
from kumadp.agent.insight import InsightReporter, agent_sources, config_from_stats
from kumadp.agent.nametable import NameTable
from kumadp.agent.readiness import Readiness
from kumadp.wire import agent_pb2, agent_pb2_grpc


class FakeCp(agent_pb2_grpc.AgentChannelServicer):
    def __init__(self) -> None:
        self.reports: list[tuple[str, str, dict[str, Any], str]] = []
        self.fail: grpc.StatusCode | None = None
        self.received = asyncio.Event()
        self.port = 0
        self._server = grpc.aio.server()
        agent_pb2_grpc.add_AgentChannelServicer_to_server(self, self._server)

    async def ReportInsight(
        self, request: agent_pb2.InsightReport, context: grpc.aio.ServicerContext
    ) -> agent_pb2.InsightAck:
        if self.fail is not None:
            await context.abort(self.fail, "not now")
        token = dict(context.invocation_metadata() or ()).get("authorization", "")
        self.reports.append(
            (request.mesh, request.name, json.loads(request.insight_json), str(token))
        )
        self.received.set()
        return agent_pb2.InsightAck()

    async def start(self, port: int = 0) -> None:
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop(None)


@pytest.fixture
async def cp() -> AsyncIterator[FakeCp]:
    server = FakeCp()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def link_to(port: int) -> CpLink:
    return CpLink(DpServer(f"127.0.0.1:{port}"), "default", "web-1", "the-token")


async def test_sends_on_change_and_when_due(cp: FakeCp) -> None:
    state = {"readiness": {"state": "NOT_READY"}}
    link = link_to(cp.port)
    reporter = InsightReporter(link, lambda: dict(state), max_interval=3600)
    try:
        assert await reporter.tick() is True
        assert cp.reports == [("default", "web-1", state, "the-token")]
        assert await reporter.tick() is False  # unchanged, not due
        state["readiness"] = {"state": "READY"}
        assert await reporter.tick() is True
        assert cp.reports[-1][2] == {"readiness": {"state": "READY"}}
        reporter._max_interval = 0.0  # due at every tick now
        assert await reporter.tick() is True
        assert len(cp.reports) == 3 and reporter.reports == 3
    finally:
        await link.close()


async def test_failures_are_retried_next_tick(cp: FakeCp) -> None:
    link = link_to(cp.port)
    reporter = InsightReporter(link, lambda: {"a": 1}, max_interval=3600)
    try:
        cp.fail = grpc.StatusCode.UNAVAILABLE
        assert await reporter.tick() is False
        assert reporter.failures == 1 and reporter.last_error == "not now"
        cp.fail = None
        assert await reporter.tick() is True  # the same content, sent now
        assert reporter.last_error is None and len(cp.reports) == 1
    finally:
        await link.close()


async def test_no_cp_at_all_is_not_an_error(unused_tcp_port: int) -> None:
    link = link_to(unused_tcp_port)
    reporter = InsightReporter(link, lambda: {"a": 1}, timeout=0.5)
    try:
        assert await reporter.tick() is False
        assert reporter.failures == 1 and reporter.last_error
    finally:
        await link.close()


async def test_a_broken_source_still_reports(cp: FakeCp) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    link = link_to(cp.port)
    try:
        assert await InsightReporter(link, broken).tick() is True
        assert cp.reports[-1][2] == {}
    finally:
        await link.close()


async def test_run_reports_until_stopped(cp: FakeCp) -> None:
    link = link_to(cp.port)
    reporter = InsightReporter(link, lambda: {"a": 1}, interval=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(reporter.run(stop))
    try:
        await asyncio.wait_for(cp.received.wait(), 5)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await link.close()
    assert len(cp.reports) == 1  # unchanged content: once, not every tick


async def test_envoy_config_from_admin_stats(cp: FakeCp) -> None:
    stats = [
        {"name": "cluster_manager.cds.update_success", "value": 3},
        {"name": "cluster_manager.cds.update_time", "value": 1735787045000},
        {"name": "listener_manager.lds.update_success", "value": 2},
        {"name": "listener_manager.lds.update_rejected", "value": 1},
        {"name": "listener_manager.lds.update_time", "value": 1735787046000},
        {"name": "control_plane.connected_state", "value": 1},
    ]
    seen: list[tuple[str, dict[str, object]]] = []

    class Admin:
        async def get_json(self, path: str, **params: object) -> dict[str, object]:
            seen.append((path, params))
            return {"stats": stats}

    link = link_to(cp.port)
    try:
        report = await InsightReporter(link, dict, envoy_admin=Admin()).collect()
    finally:
        await link.close()
    assert seen[0][0] == "/stats" and seen[0][1]["format"] == "json"
    assert report["config"] == {
        "cds": {"updateSuccess": 3, "updateRejected": 0, "updateTime": "2025-01-02T03:04:05Z"},
        "lds": {"updateSuccess": 2, "updateRejected": 1, "updateTime": "2025-01-02T03:04:06Z"},
        "lastAppliedTime": "2025-01-02T03:04:06Z",
        "xdsConnected": True,
    }
    assert config_from_stats([])["lastAppliedTime"] is None


def test_agent_sources_shape() -> None:
    names = NameTable()
    names.update("v7", 30, {"backend.mesh": (["240.0.0.1"], [])})
    readiness = Readiness()
    certificates = SimpleNamespace(
        expiration=datetime(2025, 1, 3, 3, 4, 5, tzinfo=UTC),
        last_rotation=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        rotations=2,
        backend="ca-1",
        mtls_enabled=True,
        last_error=None,
        failures=0,
    )
    dns = SimpleNamespace(stats=SimpleNamespace(snapshot=lambda: {"queries": {"udp": 4}}))
    watch = SimpleNamespace(connected=True, reconnects=1, last_error="stream ended")
    collect = agent_sources(
        envoy_version=EnvoyVersion("1.40.0", "sha/1.40.0/Clean/RELEASE/BoringSSL"),
        certificates=certificates,
        dns=dns,
        names=names,
        envoy=SimpleNamespace(pid=4242),
        readiness=readiness,
        watch=watch,
    )
    report = collect()
    assert report == {
        "version": {
            "kumaDp": {"version": __version__},
            "envoy": {
                "version": "1.40.0",
                "build": "sha/1.40.0/Clean/RELEASE/BoringSSL",
                "kumaDpCompatible": True,
            },
        },
        "mTLS": {
            "certificateExpirationTime": "2025-01-03T03:04:05Z",
            "lastCertificateRegeneration": "2025-01-02T03:04:05Z",
            "certificateRegenerations": 2,
            "issuedBackend": "ca-1",
        },
        "certificates": {"mtlsEnabled": True, "lastError": None, "failures": 0},
        "envoy": {"pid": 4242, "restarts": 0, "lastExit": None},
        "dns": {
            "enabled": True,
            "tableVersion": "v7",
            "names": 1,
            "stats": {"queries": {"udp": 4}},
        },
        "readiness": {
            "state": "NOT_READY",
            "reasons": ["Envoy is not LIVE with its listeners yet"],
        },
        "controlPlane": {"connected": True, "reconnects": 1, "lastError": "stream ended"},
    }
    json.dumps(report)  # JSON all the way down
    certificates.expiration = None
    assert collect()["mTLS"] is None
    assert agent_sources()() == {
        "version": {"kumaDp": {"version": __version__}},
        "dns": {"enabled": False},
    }
