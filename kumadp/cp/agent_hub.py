"""What the CP pushes to agents over ``Watch``: each mesh's name table and each dataplane's
identity. The reconciler publishes; every open ``Watch`` stream gets what changed, at once."""

from __future__ import annotations

import asyncio
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


class AgentHub:
    def __init__(self) -> None:
        # mesh -> (loopback?) -> table
        self._tables: dict[tuple[str, bool], agent_pb2.NameTable] = {}
        self._identities: dict[tuple[str, str], agent_pb2.MeshIdentity] = {}
        self._subscribers: list[_Subscriber] = []

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
