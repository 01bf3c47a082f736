"""The agent's long-lived side of the agent channel: ``Watch`` (identity and name table
pushed by the CP) and ``SignCertificate`` for the certificate manager.

The watch reconnects forever (``kumadp.lifecycle.Resilient``, capped jittered backoff):
losing the CP is not an outage; the sidecar keeps serving with what it has. With several CP
instances (the bootstrap's ADS cluster lists each DP server), a failed stream moves the link
to the next instance, and a stream that had delivered updates starts the backoff over, so a
dead instance is replaced within a fraction of a second, Envoy untouched.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from kumadp.agent.cp_channel import DpServer
from kumadp.lifecycle import Backoff, Resilient
from kumadp.wire.names import AUTHORIZATION_METADATA

log = logging.getLogger(__name__)


def open_channel(server: DpServer) -> Any:
    """A grpc.aio channel to the CP's DP server (TLS when the bootstrap says so)."""
    import grpc

    if server.tls:
        options = [("grpc.ssl_target_name_override", server.sni)] if server.sni else None
        credentials = grpc.ssl_channel_credentials(root_certificates=server.root_ca)
        return grpc.aio.secure_channel(server.address, credentials, options=options)
    return grpc.aio.insecure_channel(server.address)


class CpLink:
    """One channel to the CP shared by the watch and the signer; ``failover()`` moves it to
    the next DP server the bootstrap listed."""

    def __init__(self, server: DpServer, mesh: str, name: str, token: str) -> None:
        self.server = server
        self.mesh = mesh
        self.name = name
        self.metadata = ((AUTHORIZATION_METADATA, token),) if token else ()
        self._channel: Any = None
        self._index = 0
        self.failovers = 0

    @property
    def address(self) -> str:
        """The DP server in use."""
        return self.server.addresses[self._index]

    def stub(self) -> Any:
        import dataclasses

        from kumadp.wire import agent_pb2_grpc

        if self._channel is None:
            target = dataclasses.replace(self.server, address=self.address, others=())
            self._channel = open_channel(target)
        return agent_pb2_grpc.AgentChannelStub(self._channel)  # type: ignore[no-untyped-call]

    async def failover(self) -> None:
        """Drop the channel; the next call goes to the next DP server (if there are
        several; else the same one, on a fresh channel)."""
        await self.close()
        if len(self.server.addresses) > 1:
            self._index = (self._index + 1) % len(self.server.addresses)
            self.failovers += 1
            log.info("switching to the control plane's DP server at %s", self.address)

    async def close(self) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close()


class CpSigner:
    """``SignCertificate`` over the agent channel (the certificate manager's signer)."""

    def __init__(self, link: CpLink, timeout: float = 10.0) -> None:
        self._link = link
        self._timeout = timeout

    async def sign(self, csr_pem: bytes) -> Any:
        import grpc

        from kumadp.wire import agent_pb2

        request = agent_pb2.SignCertificateRequest(
            mesh=self._link.mesh, name=self._link.name, csr_pem=csr_pem
        )
        try:
            return await self._link.stub().SignCertificate(
                request, timeout=self._timeout, metadata=self._link.metadata
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                await self._link.failover()  # the next attempt asks another instance
            raise RuntimeError(f"{exc.code().name}: {exc.details()}") from exc


class CpWatch:
    """Component: keeps a ``Watch`` stream open and dispatches what the CP pushes."""

    name = "cp-watch"

    def __init__(
        self,
        link: CpLink,
        *,
        features: list[str],
        on_identity: Callable[[Any], None],
        on_names: Callable[[Any], None],
        on_admin: Callable[[Any], None] | None = None,
        initial_backoff: float = 0.2,
        max_backoff: float = 10.0,
    ) -> None:
        self._link = link
        self._features = features
        self._on_identity = on_identity
        self._on_names = on_names
        self._on_admin = on_admin
        self._backoff = Backoff(initial_backoff, max_backoff)
        self.connected = False
        self.reconnects = 0
        self.last_error: str | None = None
        self.updates = 0
        self._delivered = False  # the current stream delivered updates
        self._failed = False  # the last stream failed: move to the next DP server first

    async def run(self, stop: asyncio.Event) -> None:
        streams = Resilient(
            _WatchStream(self._attempt, self._backoff, lambda: self._delivered),
            backoff=self._backoff,
            on_retry=self._lost,
        )
        try:
            await streams.run(stop)
        finally:
            self.connected = False
            await self._link.close()

    def _lost(self, error: BaseException | None, delay: float) -> None:
        self.connected = False
        self._failed = True
        self.last_error = str(error) if error else "stream ended"
        self.reconnects += 1
        log.warning(
            "lost the control plane's watch stream (%s); reconnecting in %.1fs "
            "(Envoy keeps serving its last config)",
            self.last_error,
            delay,
        )

    async def _attempt(self) -> bool:
        if self._failed:
            self._failed = False
            await self._link.failover()
        self._delivered = False
        return await self.watch_once()

    async def watch_once(self) -> bool:
        """One ``Watch`` stream, until it ends (True: it delivered updates) or fails."""
        import grpc

        from kumadp.wire import agent_pb2

        request = agent_pb2.WatchRequest(
            mesh=self._link.mesh, name=self._link.name, features=self._features
        )
        got = False
        try:
            stream = self._link.stub().Watch(request, metadata=self._link.metadata)
            async for update in stream:
                if not self.connected:
                    log.info("watching the control plane for identity and name updates")
                self.connected = True
                self._delivered = got = True
                self.updates += 1
                if update.HasField("identity"):
                    self._on_identity(update.identity)
                if update.HasField("names"):
                    self._on_names(update.names)
                if update.HasField("admin_request") and self._on_admin is not None:
                    self._on_admin(update.admin_request)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                log.error("the control plane refused the agent channel: %s", exc.details())
            raise RuntimeError(f"{exc.code().name}: {exc.details()}") from exc
        return got


class _WatchStream:
    """One stream as a component for ``Resilient``: returns when the stream ends (or at
    ``stop``), raises its failure. A stream that delivered updates starts the backoff over,
    however it ended (a CP that died after serving us is not a reason to wait long); one
    that never delivered anything keeps the backoff growing."""

    name = "cp-watch"

    def __init__(
        self,
        watch_once: Callable[[], Awaitable[bool]],
        backoff: Backoff,
        delivered: Callable[[], bool] = lambda: False,
    ) -> None:
        self._watch_once = watch_once
        self._backoff = backoff
        self._delivered = delivered

    async def run(self, stop: asyncio.Event) -> None:
        stream = asyncio.ensure_future(self._watch_once())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({stream, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not stream.done():
                stream.cancel()
                await asyncio.gather(stream, return_exceptions=True)
        if stream.cancelled():
            return
        if self._delivered() or (stream.exception() is None and stream.result()):
            self._backoff.reset()
        stream.result()  # a failure raises here
