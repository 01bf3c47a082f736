"""The CP watch stream against a fake agent channel: what it dispatches, how it reconnects
(counters, the log line, the backoff) and how it stops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from kumadp.agent.cp_channel import DpServer
from kumadp.agent.cp_watch import CpLink, CpWatch
from kumadp.wire import agent_pb2, agent_pb2_grpc
from testkit.procs import until

LOST = "lost the control plane's watch stream"


class FakeWatch(agent_pb2_grpc.AgentChannelServicer):
    """``Watch``: per stream, ``mode`` says what happens: "update-then-end" sends one name
    table and ends the stream, "fail" aborts with UNAVAILABLE, "hold" sends one update and
    keeps the stream open."""

    def __init__(self) -> None:
        self.mode = "update-then-end"
        self.streams = 0
        self.features: list[list[str]] = []
        self.port = 0
        self._server = grpc.aio.server()
        agent_pb2_grpc.add_AgentChannelServicer_to_server(self, self._server)

    async def Watch(
        self, request: agent_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.AgentUpdate]:
        self.streams += 1
        self.features.append(list(request.features))
        if self.mode == "fail":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "going away")
        table = agent_pb2.NameTable(version=f"v{self.streams}", ttl_seconds=30)
        yield agent_pb2.AgentUpdate(names=table)
        if self.mode == "hold":
            await asyncio.Event().wait()

    async def __aenter__(self) -> FakeWatch:
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._server.stop(None)


def delays(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The reconnect delays the watch logged (the record's own argument, not the text)."""
    out = []
    for record in caplog.records:
        if record.getMessage().startswith(LOST):
            assert isinstance(record.args, tuple)
            out.append(float(record.args[1]))
    return out


def watch_for(cp: FakeWatch, names: list[Any]) -> CpWatch:
    link = CpLink(DpServer(f"127.0.0.1:{cp.port}"), "default", "web-1", "")
    return CpWatch(
        link,
        features=["bind-outbounds"],
        on_identity=lambda _: None,
        on_names=names.append,
        initial_backoff=0.01,
        max_backoff=0.04,
    )


async def test_streams_that_end_after_updates_reconnect_at_the_initial_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="kumadp.agent.cp_watch")
    names: list[Any] = []
    async with FakeWatch() as cp:
        watch = watch_for(cp, names)
        stop = asyncio.Event()
        task = asyncio.create_task(watch.run(stop))
        try:
            await until(lambda: watch.reconnects >= 5, "five reconnects")
            assert watch.last_error == "stream ended"
            assert watch.updates >= 5 and [t.version for t in names[:2]] == ["v1", "v2"]
            assert cp.features[0] == ["bind-outbounds"]
            # each stream delivered an update: the backoff starts over every time
            assert all(d <= 0.015 for d in delays(caplog)), delays(caplog)
            assert "reconnecting in 0.0s (Envoy keeps serving its last config)" in caplog.text
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)
        assert not watch.connected


async def test_failing_streams_back_off_up_to_the_cap(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="kumadp.agent.cp_watch")
    async with FakeWatch() as cp:
        cp.mode = "fail"
        watch = watch_for(cp, [])
        stop = asyncio.Event()
        task = asyncio.create_task(watch.run(stop))
        try:
            await until(lambda: watch.reconnects >= 5, "five reconnects")
            assert watch.last_error == "UNAVAILABLE: going away"
            assert not watch.connected and watch.updates == 0
            seen = delays(caplog)
            assert 0.005 <= seen[0] <= 0.015  # 0.01 +- 50 %
            assert all(0.02 <= d <= 0.06 for d in seen[2:5]), seen  # 0.04, the cap
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)


async def test_stop_while_connected() -> None:
    async with FakeWatch() as cp:
        cp.mode = "hold"
        watch = watch_for(cp, [])
        stop = asyncio.Event()
        task = asyncio.create_task(watch.run(stop))
        await until(lambda: watch.connected, "the stream")
        stop.set()
        await asyncio.wait_for(task, 5)
        assert not watch.connected and watch.reconnects == 0


async def test_a_dead_instance_is_replaced_by_the_next_one_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Several DP servers (the bootstrap lists every CP instance): when the one in use dies
    after serving, the watch moves to the next one after the *initial* backoff."""
    caplog.set_level("INFO", logger="kumadp.agent.cp_watch")
    async with FakeWatch() as second:
        second.mode = "hold"
        first = FakeWatch()
        await first.__aenter__()
        first.mode = "hold"
        server = DpServer(f"127.0.0.1:{first.port}", others=(f"127.0.0.1:{second.port}",))
        link = CpLink(server, "default", "web-1", "")
        watch = CpWatch(
            link, features=[], on_identity=lambda _: None, on_names=lambda _: None
        )  # the default backoff: 0.2 s up to 10 s
        stop = asyncio.Event()
        task = asyncio.create_task(watch.run(stop))
        try:
            await until(lambda: watch.connected and first.streams == 1, "on the first")
            await first.__aexit__()  # the instance dies
            await until(lambda: second.streams == 1 and watch.connected, "on the second", within=3)
            assert link.address == f"127.0.0.1:{second.port}" and link.failovers == 1
            assert delays(caplog)[0] <= 0.3  # it had delivered: no long wait
            assert "switching to the control plane's DP server at" in caplog.text
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)
