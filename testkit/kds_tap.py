"""A KDS tap for end-to-end tests: a TLS-terminating gRPC relay between zone CPs and a real
global CP that keeps every message of every call (both ways), as bytes on the wire.

    with KdsTap(global_cp.kds_port, kds_ca_pem, tmp) as tap:
        zone = start_zone(env, "zone-a", global_cp, kds_address=tap.address,
                          kds_ca_file=tap.ca_file)
        ...
        assert not [m for m in tap.messages() if b"PRIVATE KEY" in m.data]

Zones trust the tap's own CA (``ca_file``); the tap trusts the global CP's KDS CA. It runs
its own event loop in a thread, so synchronous tests can use it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from kumadp.cp.server_tls import ensure_server_certificate
from kumadp.wire import kds as wire
from kumadp.wire.names import AUTHORIZATION_METADATA

FORWARDED = (
    wire.ZONE_METADATA,
    wire.INSTANCE_METADATA,
    wire.SESSION_METADATA,
    wire.VERSION_METADATA,
    AUTHORIZATION_METADATA,
)
STREAMS = (wire.GLOBAL_TO_ZONE_METHOD, wire.ZONE_TO_GLOBAL_METHOD)
UNARY = (wire.HEALTH_CHECK_METHOD, wire.SIGN_INTERMEDIATE_METHOD)


@dataclass(frozen=True)
class Message:
    method: str
    upstream: bool  # from the zone to the global CP
    zone: str
    data: bytes


class KdsTap:
    def __init__(self, upstream_port: int, upstream_ca_pem: bytes, tmp: Path) -> None:
        self._upstream = f"127.0.0.1:{upstream_port}"
        self._upstream_ca = upstream_ca_pem
        self._tls = ensure_server_certificate(None, ["127.0.0.1"], what="KDS tap")
        self.ca_file = tmp / f"kds-tap-ca-{upstream_port}.pem"
        self.ca_file.write_bytes(self._tls.ca_pem)
        self._messages: list[Message] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: grpc.aio.Server | None = None
        self._channel: grpc.aio.Channel | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def messages(self) -> list[Message]:
        with self._lock:
            return list(self._messages)

    def _record(self, method: str, upstream: bool, zone: str, data: bytes) -> None:
        with self._lock:
            self._messages.append(Message(method, upstream, zone, data))

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> KdsTap:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()  # its self-pipe (a Unix socket pair) would leak otherwise

    async def _start(self) -> None:
        credentials = grpc.ssl_channel_credentials(root_certificates=self._upstream_ca)
        self._channel = grpc.aio.secure_channel(self._upstream, credentials)
        server = grpc.aio.server()
        handlers: dict[str, grpc.RpcMethodHandler] = {}
        for method in STREAMS:
            handlers[method] = grpc.stream_stream_rpc_method_handler(self._relay_stream(method))
        for method in UNARY:
            handlers[method] = grpc.unary_unary_rpc_method_handler(self._relay_unary(method))
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(wire.SERVICE, handlers),)
        )
        chain = self._tls.cert_pem.rstrip(b"\n") + b"\n" + self._tls.ca_pem
        credentials_in = grpc.ssl_server_credentials([(self._tls.key_pem, chain)])
        self.port = server.add_secure_port("127.0.0.1:0", credentials_in)
        await server.start()
        self._server = server

    async def _stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=0.5)
        if self._channel is not None:
            await self._channel.close()

    # -- relays ----------------------------------------------------------------------------
    @staticmethod
    def _metadata(context: grpc.aio.ServicerContext[Any, Any]) -> list[tuple[str, str]]:
        return [
            (k, v)
            for k, v in (context.invocation_metadata() or ())
            if k in FORWARDED and isinstance(v, str)
        ]

    def _relay_stream(self, method: str) -> Any:
        async def relay(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
            assert self._channel is not None
            metadata = self._metadata(context)
            zone = dict(metadata).get(wire.ZONE_METADATA, "")
            call = self._channel.stream_stream(wire.method_path(method))(metadata=metadata)

            async def pump() -> None:
                async for message in requests:
                    self._record(method, True, zone, message)
                    await call.write(message)
                await call.done_writing()

            task = asyncio.ensure_future(pump())
            try:
                async for response in call:
                    self._record(method, False, zone, response)
                    yield response
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or "")
            finally:
                task.cancel()
                call.cancel()

        return relay

    def _relay_unary(self, method: str) -> Any:
        async def relay(request: bytes, context: Any) -> bytes:
            assert self._channel is not None
            metadata = self._metadata(context)
            zone = dict(metadata).get(wire.ZONE_METADATA, "")
            self._record(method, True, zone, request)
            try:
                response: bytes = await self._channel.unary_unary(wire.method_path(method))(
                    request, metadata=metadata, timeout=10
                )
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or "")
                raise
            self._record(method, False, zone, response)
            return response

        return relay


__all__ = ["KdsTap", "Message"]
