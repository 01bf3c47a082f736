"""What the CP pushes to agents over ``Watch``: each mesh's name table and each dataplane's
identity. The reconciler publishes; every open ``Watch`` stream gets what changed, at once.

It also carries the API's reads of a dataplane's Envoy admin (``request_admin``: the request
goes down the dataplane's ``Watch`` stream, the agent answers with ``AdminReply``, which
``answer_admin`` hands back)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from kumadp.wire import agent_pb2
from kumadp.wire.names import FEATURE_BIND_OUTBOUNDS as BIND_OUTBOUNDS


@dataclass
class _Subscriber:
    mesh: str
    name: str
    loopback: bool
    queue: asyncio.Queue[agent_pb2.AgentUpdate] = field(default_factory=asyncio.Queue)


class AdminUnavailable(Exception):
    """The dataplane's Envoy admin cannot be read through its agent (the message says why)."""


class AgentHub:
    def __init__(self) -> None:
        # mesh -> (loopback?) -> table
        self._tables: dict[tuple[str, bool], agent_pb2.NameTable] = {}
        self._identities: dict[tuple[str, str], agent_pb2.MeshIdentity] = {}
        self._subscribers: list[_Subscriber] = []
        # admin request id -> (dataplane, its answer)
        self._admin: dict[str, tuple[tuple[str, str], asyncio.Future[agent_pb2.AdminResponse]]]
        self._admin = {}

    async def request_admin(
        self,
        mesh: str,
        name: str,
        path: str,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> agent_pb2.AdminResponse:
        """Envoy's answer to ``GET path`` on the admin API of dataplane ``mesh.name``, read
        by its agent; ``AdminUnavailable`` when no agent of it watches this CP or it does
        not answer in ``timeout`` seconds."""
        subscribers = [s for s in self._subscribers if (s.mesh, s.name) == (mesh, name)]
        if not subscribers:
            raise AdminUnavailable(
                f"dataplane {mesh}.{name} has no agent connected to this control plane"
            )
        request_id = secrets.token_hex(8)
        future: asyncio.Future[agent_pb2.AdminResponse] = asyncio.get_running_loop().create_future()
        self._admin[request_id] = ((mesh, name), future)
        request = agent_pb2.AdminRequest(id=request_id, path=path)
        subscribers[-1].queue.put_nowait(agent_pb2.AgentUpdate(admin_request=request))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise AdminUnavailable(
                f"the agent of dataplane {mesh}.{name} did not answer within {timeout:g}s"
            ) from None
        finally:
            self._admin.pop(request_id, None)

    def answer_admin(self, mesh: str, name: str, response: agent_pb2.AdminResponse) -> bool:
        """An agent's ``AdminReply``: True when it answers a request made to that agent."""
        entry = self._admin.get(response.id)
        if entry is None or entry[0] != (mesh, name):
            return False
        if not entry[1].done():
            entry[1].set_result(response)
        return True

    @property
    def watchers(self) -> int:
        return len(self._subscribers)

    def publish_names(self, mesh: str, loopback: bool, table: agent_pb2.NameTable) -> None:
        key = (mesh, loopback)
        old = self._tables.get(key)
        if old is not None and old.version == table.version:
            return
        self._tables[key] = table
        for sub in self._subscribers:
            if sub.mesh == mesh and sub.loopback == loopback:
                sub.queue.put_nowait(agent_pb2.AgentUpdate(names=table))

    def publish_identity(self, mesh: str, name: str, identity: agent_pb2.MeshIdentity) -> None:
        key = (mesh, name)
        old = self._identities.get(key)
        if old is not None and old.generation == identity.generation:
            return
        self._identities[key] = identity
        for sub in self._subscribers:
            if sub.mesh == mesh and sub.name == name:
                sub.queue.put_nowait(agent_pb2.AgentUpdate(identity=identity))

    def identity(self, mesh: str, name: str) -> agent_pb2.MeshIdentity | None:
        return self._identities.get((mesh, name))

    async def watch(
        self, mesh: str, name: str, features: list[str]
    ) -> AsyncIterator[agent_pb2.AgentUpdate]:
        """Current state first (what is known), then every change, until cancelled."""
        sub = _Subscriber(mesh, name, BIND_OUTBOUNDS in features)
        self._subscribers.append(sub)
        try:
            first = agent_pb2.AgentUpdate()
            identity = self._identities.get((mesh, name))
            if identity is not None:
                first.identity.CopyFrom(identity)
            table = self._tables.get((mesh, sub.loopback))
            if table is not None:
                first.names.CopyFrom(table)
            if identity is not None or table is not None:
                yield first
            while True:
                yield await sub.queue.get()
        finally:
            self._subscribers.remove(sub)
