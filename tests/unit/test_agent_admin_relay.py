"""The agent answers the CP's reads of its Envoy admin API: GET of a fixed set of paths only."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from kumadp.agent.admin import EnvoyAdmin
from kumadp.agent.admin_relay import AdminRelay
from kumadp.agent.cp_channel import DpServer
from kumadp.agent.cp_watch import CpLink
from kumadp.wire import agent_pb2
from testkit.procs import until


class FakeStub:
    def __init__(self) -> None:
        self.replies: list[Any] = []

    async def AdminReply(self, reply: Any, **kwargs: Any) -> Any:
        self.replies.append(reply)
        return agent_pb2.AdminAck()


@pytest.fixture
async def relay() -> Any:
    seen: list[tuple[str, str]] = []

    def envoy(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url)))
        return httpx.Response(200, text="cluster.x.upstream_rq: 3\n")

    admin = EnvoyAdmin(9901)
    await admin.aclose()
    admin._client = httpx.AsyncClient(
        transport=httpx.MockTransport(envoy), base_url="http://127.0.0.1:9901"
    )
    link = CpLink(DpServer("127.0.0.1:1"), "default", "web-1", "")
    stub = FakeStub()
    link.stub = lambda: stub  # type: ignore[method-assign]
    yield AdminRelay(link, admin), stub, seen
    await admin.aclose()


async def test_reads_the_allowed_paths_and_answers(relay: Any) -> None:
    relay_, stub, seen = relay
    relay_.on_request(agent_pb2.AdminRequest(id="r1", path="/stats?format=prometheus"))
    await until(lambda: bool(stub.replies))
    (reply,) = stub.replies
    assert (reply.id, reply.mesh, reply.name, reply.status) == ("r1", "default", "web-1", 200)
    assert reply.body == b"cluster.x.upstream_rq: 3\n"
    assert seen == [("GET", "http://127.0.0.1:9901/stats?format=prometheus")]


@pytest.mark.parametrize(
    "path", ["/quitquitquit", "/drain_listeners", "http://evil/stats", "//evil/stats", "/stats/.."]
)
async def test_refuses_anything_else(relay: Any, path: str) -> None:
    relay_, _, seen = relay
    status, body, _, error = await relay_.read(path)
    assert status == 0 and body == b"" and "is not served" in error
    assert seen == []
