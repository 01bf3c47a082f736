"""Incremental ("delta") xDS, independent of gRPC: Envoy's ``DELTA_GRPC`` ADS, and next KDS.

The server reads ``DeltaDiscoveryRequest``s from an ``XdsStream`` and answers from a
``DeltaSource`` (the snapshot cache, or any source of ``VersionedResources``). Per type URL
each stream keeps a subscription and what the client has:

* subscription: wildcard (``*``, or a first request that names nothing) and/or explicit
  names; later requests subscribe and unsubscribe incrementally;
* ``known``: the version of every resource the client has (or is being sent), seeded by
  ``initial_resource_versions`` on the first request, so a client that reconnects is sent
  only what changed while it was away, and told what was removed;
* a response carries only the resources whose version differs from ``known`` and the names
  the client has that no longer exist (``removed_resources``). The first response for a
  type is always sent, even empty, so the client knows it is up to date.

ACK and NACK go by nonce (several responses may be in flight): an ACK is reported to
``on_ack``; a NACK to ``on_nack`` with a ``Nack`` naming the resources the client rejected,
when it named them (``kumadp.xds.nack``). A rejected version is not sent again; the next
change of that resource is.

Flow: three tasks per stream. The receive side only updates state, so it always drains the
client's requests, however slow sending is; the send side is a coalescing queue bounded by
the number of types (at most one pending response per type, built from the newest state
when it is its turn, in the snapshot's type order: make-before-break for Envoy, Mesh first
for KDS); the third task waits for a newer snapshot.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from kumadp.xds import nack, types
from kumadp.xds.stream import Code, StreamRejected, XdsStream

log = logging.getLogger(__name__)

DeltaStream = XdsStream[discovery_pb2.DeltaDiscoveryRequest, discovery_pb2.DeltaDiscoveryResponse]
MAX_IN_FLIGHT = 256  # responses remembered per stream until ACKed or NACKed


class VersionedResources(Protocol):
    """One immutable state of every type for a node (``Snapshot`` is one)."""

    @property
    def type_urls(self) -> tuple[str, ...]: ...

    def version(self, type_url: str) -> str | None: ...

    def packed(self, type_url: str) -> Mapping[str, any_pb2.Any]: ...

    def resource_versions(self, type_url: str) -> Mapping[str, str]: ...


class DeltaSource(Protocol):
    """What the server needs from the cache (``SnapshotCache`` is one)."""

    def get_snapshot(self, node_id: str) -> VersionedResources | None: ...

    async def next_snapshot(self, node_id: str, known: object | None) -> VersionedResources: ...


@dataclass(frozen=True)
class Nack:
    """A client rejected a response."""

    type_url: str
    version: str  # the rejected response's system_version_info
    nonce: str
    message: str  # the client's error message
    resources: Mapping[str, str]  # name -> reason, when it named them; empty: all of it


class DeltaCallbacks(Protocol):
    async def on_stream_open(
        self, stream_id: int, node_id: str, node: base_pb2.Node, metadata: Mapping[str, str]
    ) -> None: ...

    async def on_stream_closed(self, stream_id: int, node_id: str) -> None: ...

    def on_ack(self, node_id: str, type_url: str, version: str) -> None: ...

    def on_nack(self, node_id: str, rejected: Nack) -> None: ...

    def on_response_sent(
        self, node_id: str, response: discovery_pb2.DeltaDiscoveryResponse
    ) -> None: ...


class NoopDeltaCallbacks:
    """Accept every stream, ignore every event; subclass what you need."""

    async def on_stream_open(
        self, stream_id: int, node_id: str, node: base_pb2.Node, metadata: Mapping[str, str]
    ) -> None:
        return None

    async def on_stream_closed(self, stream_id: int, node_id: str) -> None:
        return None

    def on_ack(self, node_id: str, type_url: str, version: str) -> None:
        return None

    def on_nack(self, node_id: str, rejected: Nack) -> None:
        return None

    def on_response_sent(
        self, node_id: str, response: discovery_pb2.DeltaDiscoveryResponse
    ) -> None:
        return None


class DeltaServer:
    """Serves ``source`` over delta xDS streams."""

    def __init__(
        self,
        source: DeltaSource,
        callbacks: DeltaCallbacks | None = None,
        *,
        type_urls: Collection[str] | None = None,
        require_node_id: bool = True,
    ) -> None:
        """``type_urls``: the types served (None: whatever the source has); a request for
        another type ends the stream with INVALID_ARGUMENT."""
        self._source = source
        self._callbacks: DeltaCallbacks = callbacks or NoopDeltaCallbacks()
        self._type_urls = frozenset(type_urls) if type_urls is not None else None
        self._require_node_id = require_node_id
        self._stream_ids = itertools.count(1)
        self._nonces = itertools.count(1)
        self._sessions: set[_Session] = set()

    @property
    def open_streams(self) -> int:
        return len(self._sessions)

    async def handle_stream(self, stream: DeltaStream) -> None:
        """Serve one stream until the client closes it; the same contract as the
        state-of-the-world server (``on_stream_closed`` exactly once for an opened stream,
        ``StreamRejected`` for a refused or malformed one)."""
        requests = aiter(stream.requests())
        first = await anext(requests, None)
        if first is None:
            return
        node_id = first.node.id
        if not node_id and self._require_node_id:
            raise StreamRejected(Code.INVALID_ARGUMENT, "the first request has no node id")
        stream_id = next(self._stream_ids)
        await self._callbacks.on_stream_open(stream_id, node_id, first.node, stream.metadata)
        log.debug("delta stream %d opened by %s", stream_id, node_id)
        session = _Session(stream_id, node_id, self, stream)
        self._sessions.add(session)
        try:
            await session.run(first, requests)
        finally:
            self._sessions.discard(session)
            log.debug("delta stream %d of %s closed", stream_id, node_id)
            await self._callbacks.on_stream_closed(stream_id, node_id)

    def _check_type(self, type_url: str) -> None:
        if self._type_urls is not None and type_url not in self._type_urls:
            raise StreamRejected(
                Code.INVALID_ARGUMENT,
                f"this server only serves {', '.join(sorted(self._type_urls))}, not {type_url}",
            )


@dataclass
class _Subscription:
    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    known: dict[str, str] = field(default_factory=dict)  # name -> version the client has
    answered: bool = False  # the first response has been sent


class _Session:
    """The state of one open stream."""

    def __init__(
        self, stream_id: int, node_id: str, server: DeltaServer, stream: DeltaStream
    ) -> None:
        self._who = node_id or f"delta stream {stream_id}"
        self._node_id = node_id
        self._server = server
        self._callbacks = server._callbacks
        self._stream = stream
        self._snapshot: VersionedResources | None = None
        self._subs: dict[str, _Subscription] = {}
        self._dirty: set[str] = set()  # types to look at: the send queue, one entry a type
        self._wake = asyncio.Event()
        self._in_flight: dict[str, tuple[str, str]] = {}  # nonce -> (type URL, version)

    async def run(
        self,
        first: discovery_pb2.DeltaDiscoveryRequest,
        requests: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
    ) -> None:
        self._snapshot = self._server._source.get_snapshot(self._node_id)
        self._on_request(first)
        receive = asyncio.ensure_future(self._receive(requests))
        tasks = {receive, asyncio.ensure_future(self._watch()), asyncio.ensure_future(self._send())}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a failure ends the stream with it; else the client left
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- receive side: state only, never waits on sending ------------------------------------
    async def _receive(self, requests: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest]) -> None:
        async for request in requests:
            self._on_request(request)

    def _on_request(self, request: discovery_pb2.DeltaDiscoveryRequest) -> None:
        type_url = request.type_url
        if not type_url:
            log.warning("%s: delta request without type_url ignored", self._who)
            return
        self._server._check_type(type_url)
        if request.response_nonce:
            self._on_reply(type_url, request)
        sub = self._subs.get(type_url)
        first = sub is None
        if sub is None:
            sub = self._subs[type_url] = _Subscription(
                wildcard=not request.resource_names_subscribe,  # legacy wildcard
                known=dict(request.initial_resource_versions),
            )
        if _update(sub, request) or first:
            self._mark(type_url)

    def _on_reply(self, type_url: str, request: discovery_pb2.DeltaDiscoveryRequest) -> None:
        sent = self._in_flight.pop(request.response_nonce, None)
        if sent is None or sent[0] != type_url:
            log.debug("%s: reply to unknown nonce %r ignored", self._who, request.response_nonce)
            return
        version = sent[1]
        if not request.HasField("error_detail"):
            self._callbacks.on_ack(self._node_id, type_url, version)
            return
        detail = request.error_detail
        rejected = Nack(
            type_url=type_url,
            version=version,
            nonce=request.response_nonce,
            message=detail.message,
            resources=nack.failed_resources(detail),
        )
        log.warning(
            "%s rejected %s version %s: %s",
            self._who, types.short_name(type_url), version, nack.describe(detail),
        )  # fmt: skip
        self._callbacks.on_nack(self._node_id, rejected)

    def _mark(self, type_url: str) -> None:
        self._dirty.add(type_url)
        self._wake.set()

    # -- snapshots -----------------------------------------------------------------------------
    async def _watch(self) -> None:
        source = self._server._source
        while True:
            previous = self._snapshot
            self._snapshot = await source.next_snapshot(self._node_id, previous)
            for type_url in self._subs:
                # versions are content hashes: an unchanged type has nothing to send
                if previous is None or previous.version(type_url) != self._snapshot.version(
                    type_url
                ):
                    self._mark(type_url)

    # -- send side --------------------------------------------------------------------------------
    async def _send(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while (type_url := self._next_dirty()) is not None:
                response = self._build(type_url)
                if response is None:
                    continue
                log.debug(
                    "%s: sending %s version %s nonce %s (%d resources, %d removed)",
                    self._who, types.short_name(type_url), response.system_version_info,
                    response.nonce, len(response.resources), len(response.removed_resources),
                )  # fmt: skip
                self._callbacks.on_response_sent(self._node_id, response)
                await self._stream.send(response)

    def _next_dirty(self) -> str | None:
        if not self._dirty or self._snapshot is None:
            return None  # without a snapshot the types stay dirty until one comes
        order = self._snapshot.type_urls
        found = [url for url in order if url in self._dirty] or sorted(self._dirty)
        self._dirty.discard(found[0])
        return found[0]

    def _build(self, type_url: str) -> discovery_pb2.DeltaDiscoveryResponse | None:
        snapshot, sub = self._snapshot, self._subs[type_url]
        version = snapshot.version(type_url) if snapshot is not None else None
        if snapshot is None or version is None:
            return None  # a type this snapshot does not have: nothing to say about it
        packed = snapshot.packed(type_url)
        versions = snapshot.resource_versions(type_url)
        visible = packed.keys() if sub.wildcard else sub.names & packed.keys()
        changed = sorted(name for name in visible if sub.known.get(name) != versions[name])
        removed = sorted(name for name in sub.known if name not in visible)
        if sub.answered and not changed and not removed:
            return None
        nonce = str(next(self._server._nonces))
        response = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=version,
            type_url=type_url,
            nonce=nonce,
            resources=[
                discovery_pb2.Resource(name=name, version=versions[name], resource=packed[name])
                for name in changed
            ],
            removed_resources=removed,
        )
        for name in changed:
            sub.known[name] = versions[name]
        for name in removed:
            del sub.known[name]
        sub.answered = True
        self._in_flight[nonce] = (type_url, version)
        if len(self._in_flight) > MAX_IN_FLIGHT:  # a client that never answers
            del self._in_flight[next(iter(self._in_flight))]
        return response


def _update(sub: _Subscription, request: discovery_pb2.DeltaDiscoveryRequest) -> bool:
    """Apply a request's (un)subscriptions; whether something may now need sending."""
    subscribe = set(request.resource_names_subscribe)
    unsubscribe = set(request.resource_names_unsubscribe)
    changed = False
    if "*" in subscribe and not sub.wildcard:
        sub.wildcard = changed = True
    if "*" in unsubscribe and sub.wildcard:
        sub.wildcard = False
        for name in [n for n in sub.known if n not in sub.names]:
            del sub.known[name]  # the client forgets what only the wildcard gave it
    new = subscribe - {"*"} - sub.names
    if new:
        sub.names |= new
        changed = True
    for name in unsubscribe - {"*"}:
        sub.names.discard(name)
        if not sub.wildcard:
            sub.known.pop(name, None)
    return changed
