"""State-of-the-world xDS, independent of gRPC: one server for the CP's ADS and the agent's SDS.

The server reads requests from an ``XdsStream`` and answers from a ``SnapshotSource`` (the
CP's cache, or the agent's secrets); it never sees how config is made. One task per stream
waits on whichever comes first, the next request or a newer snapshot for the node, so
nothing polls. ``SotwOptions`` say what differs between ADS and SDS.

Per type URL the stream remembers the version sent last (the client's, until it says
otherwise), the latest nonce, and the resource names asked for:

* a request whose ``response_nonce`` is not the latest nonce sent for its type is stale and
  ignored (the client follows up once it has seen the newer response);
* ACK = latest nonce, no ``error_detail``, the version sent: reported once per version;
* NACK = latest nonce with ``error_detail``: one warning per rejected version, reported to
  ``on_nack``; the rejected version is not sent again, the next snapshot version is;
* ``wildcard_types`` (ADS: CDS and LDS) get everything; other types send only the names
  asked for (everything if the first request of the type named none, or named ``*``) and
  answer again when the names change;
* a newer snapshot pushes the types whose version changed, in the snapshot's order (ADS
  order: make-before-break);
* after clusters are sent, endpoints are sent again even when their version is unchanged:
  Envoy keeps a changed EDS cluster warming (the old one serving) until a
  ``ClusterLoadAssignment`` response arrives, else for its ``initial_fetch_timeout`` (15 s).

Versions: ADS sends the snapshot's version of the type. With ``version_per_selection``
(SDS) a response's version is a digest of exactly the resources it carries, so a stream is
never sent the same content twice, and a change to resources it did not ask for sends it
nothing. Without ``send_empty`` (SDS) a stream whose names do not exist yet just waits.

Callbacks: ``on_stream_closed`` pairs with a successful ``on_stream_open``: exactly once,
however the stream ends. A stream refused by ``on_stream_open`` (``StreamRejected``) or one
without a node id (when ``require_node_id``) is never opened, so never closed. An optional
``on_response_sent(node_id, type_url, version, nonce)`` is called as each response is sent.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from kumadp.xds import types
from kumadp.xds.snapshot import Snapshot
from kumadp.xds.stream import Code, StreamRejected, XdsStream

log = logging.getLogger(__name__)

WILDCARD_TYPES = frozenset({types.CLUSTER, types.LISTENER})

SotwStream = XdsStream[discovery_pb2.DiscoveryRequest, discovery_pb2.DiscoveryResponse]

__all__ = [
    "ADS",
    "AdsServer",
    "Callbacks",
    "NoopCallbacks",
    "SnapshotSource",
    "SotwOptions",
    "SotwServer",
    "SotwStream",
    "StreamRejected",
]


@dataclass(frozen=True)
class SotwOptions:
    """What one state-of-the-world service serves, and how (the defaults are ADS's)."""

    # None: every type the snapshot has; else only these, and a request for another type
    # ends the stream (INVALID_ARGUMENT). With one type, a request without type_url is it.
    type_urls: frozenset[str] | None = None
    require_node_id: bool = True  # the first request must name its node
    version_per_selection: bool = False  # see the module docstring
    send_empty: bool = True  # answer even when none of the names asked for exist
    wildcard_types: frozenset[str] = WILDCARD_TYPES


ADS = SotwOptions()


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
    rewarm: bool = False  # EDS after a CDS response: answer even if the version is the same
    acked: str | None = None  # last version reported to on_ack
    nack_logged: str | None = None  # last version whose NACK was logged


class SotwServer:
    """Serves snapshots from ``cache`` over state-of-the-world xDS streams."""

    def __init__(
        self,
        cache: SnapshotSource,
        callbacks: Callbacks | None = None,
        options: SotwOptions = ADS,
    ) -> None:
        self._cache = cache
        self._callbacks: Callbacks = callbacks if callbacks is not None else NoopCallbacks()
        self._options = options
        self._stream_ids = itertools.count(1)
        self._nonces = itertools.count(1)  # shared by every stream: a nonce is never reused
        self._sessions: set[_Session] = set()

    @property
    def open_streams(self) -> int:
        """Streams being served (opened and not yet closed)."""
        return len(self._sessions)

    def subscribed_names(self, type_url: str) -> set[str]:
        """Every name of ``type_url`` some open stream asked for (wildcards add none)."""
        found: set[str] = set()
        for session in self._sessions:
            found |= session.names(type_url)
        return found

    async def handle_stream(self, stream: SotwStream) -> None:
        """Serve one stream until the client closes it. Raises ``StreamRejected`` if the
        callbacks refuse it (``on_stream_closed`` is then not called) or, once open, if it
        asks for a type this server does not serve; otherwise ``on_stream_closed`` is
        called exactly once, however the stream ends."""
        requests = aiter(stream.requests())
        first = await anext(requests, None)
        if first is None:
            return
        node_id = first.node.id
        if not node_id and self._options.require_node_id:
            raise StreamRejected(Code.INVALID_ARGUMENT, "the first request has no node id")
        stream_id = next(self._stream_ids)
        await self._callbacks.on_stream_open(stream_id, node_id, first.node, stream.metadata)
        log.debug("stream %d opened by %s", stream_id, node_id)
        session = _Session(stream_id, node_id, self, stream)
        self._sessions.add(session)
        try:
            await session.run(first, requests)
        finally:
            self._sessions.discard(session)
            log.debug("stream %d of %s closed", stream_id, node_id)
            await self._callbacks.on_stream_closed(stream_id, node_id)

    def fetch(
        self, request: discovery_pb2.DiscoveryRequest
    ) -> discovery_pb2.DiscoveryResponse | None:
        """The answer to a unary fetch: the names asked for (all, if none), or None when
        there is nothing to send. Raises ``StreamRejected`` for a type not served."""
        type_url = self._type_of(request)
        snapshot = self._cache.get_snapshot(request.node.id)
        if type_url is None or snapshot is None:
            return None
        names = frozenset(request.resource_names) or None
        return self._response(snapshot, type_url, names, frozenset())

    # -- shared by the sessions --------------------------------------------------------------
    def _type_of(self, request: discovery_pb2.DiscoveryRequest) -> str | None:
        """The request's type URL (the only one served, when it has none), None to ignore
        the request; raises ``StreamRejected`` for a type this server does not serve."""
        served = self._options.type_urls
        type_url = request.type_url
        if not type_url and served is not None and len(served) == 1:
            (type_url,) = served
        if not type_url:
            return None
        if served is not None and type_url not in served:
            raise StreamRejected(
                Code.INVALID_ARGUMENT,
                f"this server only serves {', '.join(sorted(served))}, not {type_url}",
            )
        return type_url

    def _response(
        self,
        snapshot: Snapshot,
        type_url: str,
        names: frozenset[str] | None,
        skip_versions: frozenset[str],
    ) -> discovery_pb2.DiscoveryResponse | None:
        """The response for a selection, or None: a type the snapshot does not have, a
        version in ``skip_versions``, or (without ``send_empty``) nothing to send."""
        options = self._options
        version = snapshot.version_of(type_url, names if options.version_per_selection else None)
        if version is None or version in skip_versions:
            return None
        packed = snapshot.packed(type_url)
        if names is None:
            resources = [packed[name] for name in sorted(packed)]
        else:
            resources = [packed[name] for name in sorted(names) if name in packed]
        if not resources and not options.send_empty:
            return None
        return discovery_pb2.DiscoveryResponse(
            version_info=version,
            type_url=type_url,
            nonce=str(next(self._nonces)),
            resources=resources,
        )


AdsServer = SotwServer  # ADS is the default configuration


class _Session:
    """The state of one open stream."""

    def __init__(
        self, stream_id: int, node_id: str, server: SotwServer, stream: SotwStream
    ) -> None:
        self._id = stream_id
        self._node_id = node_id
        self._who = node_id or f"stream {stream_id}"
        self._server = server
        self._cache = server._cache
        self._callbacks = server._callbacks
        self._wildcard_types = server._options.wildcard_types
        self._per_selection = server._options.version_per_selection
        self._stream = stream
        self._snapshot: Snapshot | None = None
        self._types: dict[str, _TypeState] = {}

    def names(self, type_url: str) -> set[str]:
        state = self._types.get(type_url)
        return set(state.names) if state is not None and state.names is not None else set()

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
        type_url = self._server._type_of(request)
        if type_url is None:
            log.warning("%s: request without type_url ignored", self._who)
            return
        state = self._types.get(type_url)
        if state is None:
            state = self._types[type_url] = _TypeState(version=request.version_info)
        elif request.response_nonce != state.nonce:
            log.debug(
                "%s: stale %s request (nonce %r, latest %r) ignored",
                self._who, types.short_name(type_url), request.response_nonce, state.nonce,
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
                self._who, types.short_name(type_url), rejected, message,
            )  # fmt: skip
        self._callbacks.on_nack(self._node_id, type_url, rejected, message)

    def _update_names(self, type_url: str, state: _TypeState, requested: Iterable[str]) -> None:
        if type_url in self._wildcard_types:
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
        # The version says it all when it is a digest of the selection; otherwise a change
        # of names is answered even with the same version.
        resend = (state.names_changed or state.rewarm) and not self._per_selection
        skip = frozenset() if resend else frozenset({state.version})
        response = self._server._response(snapshot, type_url, state.names, skip)
        if response is None:
            return
        state.version = response.version_info
        state.nonce = response.nonce
        state.names_changed = state.rewarm = False
        endpoints = self._types.get(types.ENDPOINT)
        if type_url == types.CLUSTER and endpoints is not None and endpoints.nonce:
            endpoints.rewarm = True  # sent next, in ADS order (or on Envoy's next request)
        log.debug(
            "%s: sending %s version %s nonce %s (%d resources)",
            self._who, types.short_name(type_url), response.version_info, response.nonce,
            len(response.resources),
        )  # fmt: skip
        # Optional (not part of ``Callbacks``): insights count the responses sent. Counted
        # as it is handed to the stream: the client may see it before the write returns.
        on_sent = getattr(self._callbacks, "on_response_sent", None)
        if on_sent is not None:
            on_sent(self._node_id, type_url, response.version_info, response.nonce)
        await self._stream.send(response)
