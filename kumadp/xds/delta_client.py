"""A delta xDS client, protocol only (no gRPC): the receiving end of a KDS direction.

``DeltaClient`` subscribes to ``*`` for each of its types, hands every response to a
``DeltaHandler`` and answers it by nonce: an ACK, or a NACK naming the resources the handler
rejected (``kumadp.xds.nack``), so one bad resource never holds up the others. It remembers
the version of every resource it accepted, across streams: on a new stream (a reconnect) it
sends them as ``initial_resource_versions`` and the server sends only what changed.

Flow: the receive side reads and applies one response after the other and queues its reply;
a sender task of its own writes the replies (a bounded queue, ``MAX_PENDING_REPLIES``), so a
peer slow to read replies never stops this side from reading.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from kumadp.xds import nack, types

log = logging.getLogger(__name__)

MAX_PENDING_REPLIES = 256  # replies queued for the sender before reading waits for it
ReplyObserver = Callable[[str, bool], None]  # (type URL, accepted whole) after each reply


class DeltaClientStream(Protocol):
    """The client's side of one stream (``grpc_adapter.GrpcClientStream`` wraps a call)."""

    async def send(self, request: discovery_pb2.DeltaDiscoveryRequest) -> None: ...

    def responses(self) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]: ...


@dataclass(frozen=True)
class Update:
    """One response, as the handler sees it."""

    type_url: str
    version: str  # the server's system_version_info
    changed: Mapping[str, discovery_pb2.Resource]  # new or changed resources, by name
    removed: tuple[str, ...]
    # On the first response of a stream: every name the server has for the type (anything
    # else held locally is gone upstream); None on later responses, which carry only changes.
    complete: frozenset[str] | None


class DeltaHandler(Protocol):
    async def apply(self, update: Update) -> Mapping[str, str]:
        """Apply an update; return the resources rejected (name -> reason), empty if none.
        Raising rejects the whole update (its message goes into the NACK)."""
        ...


class DeltaClient:
    def __init__(
        self,
        node: base_pb2.Node,
        type_urls: Sequence[str],
        handler: DeltaHandler,
        *,
        initial_versions: Mapping[str, Mapping[str, str]] | None = None,
        on_reply: ReplyObserver | None = None,
    ) -> None:
        """``on_reply(type_url, accepted)`` is told of every reply (an ACK: True; a NACK of
        some or all of the response: False), e.g. to count them."""
        self._node = node
        self._on_reply = on_reply
        self._type_urls = tuple(type_urls)
        self._handler = handler
        self._versions: dict[str, dict[str, str]] = {
            url: dict((initial_versions or {}).get(url, {})) for url in self._type_urls
        }
        self.acks = 0
        self.nacks = 0

    def versions(self, type_url: str) -> dict[str, str]:
        """The version of every resource of ``type_url`` accepted so far (a copy)."""
        return dict(self._versions.get(type_url, {}))

    async def run(self, stream: DeltaClientStream) -> None:
        """Subscribe on ``stream`` and apply its responses until the server ends it."""
        for index, type_url in enumerate(self._type_urls):
            request = discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url,
                resource_names_subscribe=["*"],
                initial_resource_versions=self._versions[type_url],
            )
            if index == 0:
                request.node.CopyFrom(self._node)
            await stream.send(request)
        replies: asyncio.Queue[discovery_pb2.DeltaDiscoveryRequest] = asyncio.Queue(
            MAX_PENDING_REPLIES
        )
        sender = asyncio.ensure_future(_send_all(stream, replies))
        try:
            answered: set[str] = set()
            async for response in stream.responses():
                if sender.done():
                    sender.result()  # the stream broke while sending: end with its error
                if response.type_url not in self._versions:
                    log.warning("response for unsubscribed type %s ignored", response.type_url)
                    continue
                first = response.type_url not in answered
                answered.add(response.type_url)
                reply = await self._on_response(response, first)
                await replies.put(reply)
                if self._on_reply is not None:
                    self._on_reply(response.type_url, not reply.HasField("error_detail"))
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _on_response(
        self, response: discovery_pb2.DeltaDiscoveryResponse, first: bool
    ) -> discovery_pb2.DeltaDiscoveryRequest:
        type_url = response.type_url
        have = self._versions[type_url]
        changed = {r.name: r for r in response.resources}
        removed = tuple(response.removed_resources)
        complete = None
        if first:
            complete = frozenset((have.keys() - set(removed)) | changed.keys())
        update = Update(type_url, response.system_version_info, changed, removed, complete)
        reply = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url, response_nonce=response.nonce
        )
        try:
            failed = dict(await self._handler.apply(update))
        except Exception as exc:  # the whole update is rejected, the stream goes on
            message = str(exc) or type(exc).__name__
            log.warning("rejected %s update: %s", types.short_name(type_url), message)
            reply.error_detail.CopyFrom(nack.nack_status(message))
            self.nacks += 1
            return reply
        for name in removed:
            have.pop(name, None)
        for name, resource in changed.items():
            if name not in failed:
                have[name] = resource.version
        if failed:
            message = f"{len(failed)} of {len(changed)} {types.short_name(type_url)} rejected"
            reply.error_detail.CopyFrom(nack.nack_status(message, failed))
            log.warning("%s", nack.describe(reply.error_detail))
            self.nacks += 1
        else:
            self.acks += 1
        return reply


async def _send_all(
    stream: DeltaClientStream, replies: asyncio.Queue[discovery_pb2.DeltaDiscoveryRequest]
) -> None:
    while True:
        reply = await replies.get()
        try:
            await stream.send(reply)
        finally:
            replies.task_done()
