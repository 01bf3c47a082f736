"""State-of-the-world ADS (``StreamAggregatedResources``), independent of gRPC.

The server reads requests from an ``AdsStream`` and answers from a ``SnapshotSource`` (the
cache); it never sees how config is made. One task per stream waits on whichever comes
first, the next request or a newer snapshot for the node, so nothing polls.

Per type URL the stream remembers the version sent last (the client's, until it says
otherwise), the latest nonce, and the resource names asked for:

* a request whose ``response_nonce`` is not the latest nonce sent for its type is stale and
  ignored (the client follows up once it has seen the newer response);
* ACK = latest nonce, no ``error_detail``, the version sent: reported once per version;
* NACK = latest nonce with ``error_detail``: one warning per rejected version, reported to
  ``on_nack``; the rejected version is not sent again, the next snapshot version is;
* CDS and LDS are wildcard; other types send only the names asked for (everything if the
  first request of the type named none, or named ``*``) and answer again when the names
  change, even with an unchanged version;
* a newer snapshot pushes the types whose version changed, in ADS order.

Callbacks: ``on_stream_closed`` pairs with a successful ``on_stream_open``: exactly once,
however the stream ends. A stream refused by ``on_stream_open`` (``StreamRejected``) or one
without a node id is never opened, so never closed. An optional
``on_response_sent(node_id, type_url, version, nonce)`` is called after each response sent.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from kumadp.xds import types
from kumadp.xds.snapshot import Snapshot

log = logging.getLogger(__name__)

WILDCARD_TYPES = frozenset({types.CLUSTER, types.LISTENER})


class StreamRejected(Exception):
    """Raised by ``Callbacks.on_stream_open`` to refuse a stream with a gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AdsStream(Protocol):
    """One ADS stream as the protocol logic sees it (``grpc_adapter`` wraps grpc.aio's)."""

    @property
    def metadata(self) -> Mapping[str, str]: ...

    def requests(self) -> AsyncIterator[discovery_pb2.DiscoveryRequest]: ...

    async def send(self, response: discovery_pb2.DiscoveryResponse) -> None: ...


class SnapshotSource(Protocol):
    """What the server needs from the cache."""

    def get_snapshot(self, node_id: str) -> Snapshot | None: ...

    async def next_snapshot(self, node_id: str, known: Snapshot | None) -> Snapshot: ...


class Callbacks(Protocol):
    async def on_stream_open(
        self, stream_id: int, node_id: str, node: base_pb2.Node, metadata: Mapping[str, str]
    ) -> None: ...

    async def on_stream_closed(self, stream_id: int, node_id: str) -> None: ...

    def on_ack(self, node_id: str, type_url: str, version: str) -> None: ...

    def on_nack(self, node_id: str, type_url: str, version: str, error_detail: str) -> None: ...


class NoopCallbacks:
    """Callbacks that accept every stream and ignore every event; subclass what you need."""

    async def on_stream_open(
        self, stream_id: int, node_id: str, node: base_pb2.Node, metadata: Mapping[str, str]
    ) -> None:
        return None

    async def on_stream_closed(self, stream_id: int, node_id: str) -> None:
        return None

    def on_ack(self, node_id: str, type_url: str, version: str) -> None:
        return None

    def on_nack(self, node_id: str, type_url: str, version: str, error_detail: str) -> None:
        return None

    def on_response_sent(self, node_id: str, type_url: str, version: str, nonce: str) -> None:
        return None


@dataclass
class _TypeState:
    version: str = ""  # what the client has, or is being sent
    nonce: str = ""  # latest nonce sent for this type
    names: frozenset[str] | None = None  # None: everything
    names_changed: bool = False  # answer even if the version is the same
    acked: str | None = None  # last version reported to on_ack
    nack_logged: str | None = None  # last version whose NACK was logged


class AdsServer:
    """Serves snapshots from ``cache`` over state-of-the-world ADS streams."""

    def __init__(self, cache: SnapshotSource, callbacks: Callbacks | None = None) -> None:
        self._cache = cache
        self._callbacks: Callbacks = callbacks if callbacks is not None else NoopCallbacks()
        self._stream_ids = itertools.count(1)

    async def handle_stream(self, stream: AdsStream) -> None:
        """Serve one stream until the client closes it. Raises ``StreamRejected`` if the
        callbacks refuse it (``on_stream_closed`` is then not called); otherwise
        ``on_stream_closed`` is called exactly once, however the stream ends."""
        requests = aiter(stream.requests())
        first = await anext(requests, None)
        if first is None:
            return
        node_id = first.node.id
        if not node_id:
            raise StreamRejected(
                grpc.StatusCode.INVALID_ARGUMENT, "the first request has no node id"
            )
        stream_id = next(self._stream_ids)
        await self._callbacks.on_stream_open(stream_id, node_id, first.node, stream.metadata)
        log.debug("stream %d opened by %s", stream_id, node_id)
        try:
            await _Session(stream_id, node_id, self._cache, self._callbacks, stream).run(
                first, requests
            )
        finally:
            log.debug("stream %d of %s closed", stream_id, node_id)
            await self._callbacks.on_stream_closed(stream_id, node_id)


class _Session:
    """The state of one open stream."""

    def __init__(
        self,
        stream_id: int,
        node_id: str,
        cache: SnapshotSource,
        callbacks: Callbacks,
        stream: AdsStream,
    ) -> None:
        self._id = stream_id
        self._node_id = node_id
        self._cache = cache
        self._callbacks = callbacks
        self._stream = stream
        self._snapshot: Snapshot | None = None
        self._types: dict[str, _TypeState] = {}
        self._nonces = itertools.count(1)

    async def run(
        self,
        first: discovery_pb2.DiscoveryRequest,
        requests: AsyncIterator[discovery_pb2.DiscoveryRequest],
    ) -> None:
        self._snapshot = self._cache.get_snapshot(self._node_id)
        await self._on_request(first)
        receive: asyncio.Task[discovery_pb2.DiscoveryRequest | None] | None = None
        watch: asyncio.Task[Snapshot] | None = None
        try:
            while True:
                if receive is None:
                    receive = asyncio.ensure_future(anext(requests, None))
                if watch is None:
                    watch = asyncio.ensure_future(
                        self._cache.next_snapshot(self._node_id, self._snapshot)
                    )
                done, _ = await asyncio.wait({receive, watch}, return_when=asyncio.FIRST_COMPLETED)
                if watch in done:
                    self._snapshot = watch.result()
                    watch = None
                    for type_url in self._snapshot.type_urls:
                        await self._respond(type_url)
                if receive in done:
                    request = receive.result()
                    receive = None
                    if request is None:
                        return
                    await self._on_request(request)
        finally:
            pending = [task for task in (receive, watch) if task is not None]
            for task in pending:
                task.cancel()
            # Cancelling this task still cancels it: gather propagates it.
            await asyncio.gather(*pending, return_exceptions=True)

    async def _on_request(self, request: discovery_pb2.DiscoveryRequest) -> None:
        type_url = request.type_url
        if not type_url:
            log.warning("stream %d (%s): request without type_url ignored", self._id, self._node_id)
            return
        state = self._types.get(type_url)
        if state is None:
            state = self._types[type_url] = _TypeState(version=request.version_info)
        elif request.response_nonce != state.nonce:
            log.debug(
                "stream %d (%s): stale %s request (nonce %r, latest %r) ignored",
                self._id, self._node_id, types.SHORT_NAMES.get(type_url, type_url),
                request.response_nonce, state.nonce,
            )  # fmt: skip
            return
        elif not state.nonce:
            pass  # nothing sent for this type yet: only the names may have changed
        elif request.HasField("error_detail"):
            self._on_nack(type_url, state, request.error_detail.message)
        elif request.version_info == state.version:
            if state.acked != state.version:  # not again for a mere change of names
                state.acked = state.version
                self._callbacks.on_ack(self._node_id, type_url, state.version)
        # else: latest nonce, no error, an older version: a change of names after a NACK
        self._update_names(type_url, state, request.resource_names)
        await self._respond(type_url)

    def _on_nack(self, type_url: str, state: _TypeState, message: str) -> None:
        rejected = state.version  # stays the client's "current": not sent again
        if state.nack_logged != rejected:
            state.nack_logged = rejected
            log.warning(
                "%s rejected %s version %s: %s",
                self._node_id, types.SHORT_NAMES.get(type_url, type_url), rejected, message,
            )  # fmt: skip
        self._callbacks.on_nack(self._node_id, type_url, rejected, message)

    @staticmethod
    def _update_names(type_url: str, state: _TypeState, requested: Iterable[str]) -> None:
        if type_url in WILDCARD_TYPES:
            return
        names = frozenset(requested)
        if "*" in names:
            new: frozenset[str] | None = None
        elif not names and state.nonce == "":
            new = None  # legacy wildcard: the first request named nothing
        else:
            new = names
        if new != state.names:
            state.names = new
            state.names_changed = True

    async def _respond(self, type_url: str) -> None:
        state = self._types.get(type_url)
        snapshot = self._snapshot
        if state is None or snapshot is None:
            return  # not subscribed yet, or nothing to send yet
        version = snapshot.version(type_url)
        if version is None:
            return  # a type this snapshot does not serve
        if not state.names_changed and version == state.version:
            return
        packed = snapshot.packed(type_url)
        if state.names is None:
            resources = [packed[name] for name in sorted(packed)]
        else:
            resources = [packed[name] for name in sorted(state.names) if name in packed]
        nonce = str(next(self._nonces))
        response = discovery_pb2.DiscoveryResponse(
            version_info=version, type_url=type_url, nonce=nonce, resources=resources
        )
        state.version = version
        state.nonce = nonce
        state.names_changed = False
        log.debug(
            "stream %d (%s): sending %s version %s nonce %s (%d resources)",
            self._id, self._node_id, types.SHORT_NAMES.get(type_url, type_url),
            version, nonce, len(resources),
        )  # fmt: skip
        await self._stream.send(response)
        # Optional (not part of ``Callbacks``): insights count the responses sent.
        on_sent = getattr(self._callbacks, "on_response_sent", None)
        if on_sent is not None:
            on_sent(self._node_id, type_url, version, nonce)
