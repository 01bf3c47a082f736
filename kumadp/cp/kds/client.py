"""The zone CP's side of KDS: one TLS connection to the global CP, dialled by the zone.

On it, three calls (``kumadp/wire/kds.proto``), each carrying the zone's identity:

- global -> zone: a delta client subscribes to every global-owned type and a
  ``ZoneReceiver`` stores the copies;
- zone -> global: roles inverted, a delta server answers the global CP's subscription from
  this zone's ``StoreSource`` (its dataplanes and their insights);
- ``HealthCheck`` every interval the global CP asks for.

If any of them ends, the connection is closed and dialled again with capped, jittered
backoff (``kumadp.lifecycle.Resilient``); a refusal (another zone CP holds the zone name)
is logged and retried the same way. A zone -> global stream whose responses go unanswered
for ``stuck_timeout`` is taken for stuck and the connection re-opened. While disconnected
the zone keeps serving its dataplanes from its own store.

Trust: ``--kds-ca-file`` (the global CP's CA), else the system roots; ``--kds-skip-verify``
trusts whatever chain the global CP presents (logged as a warning). Authentication: the
zone token (``--kds-token-file``, scope ``cp``) on every call, as ``authorization: Bearer``.
The live connection also carries ``sign_intermediate`` (the zone's intermediate CAs).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from kumadp.cp.kds.source import StoreSource
from kumadp.cp.kds.trust import channel_credentials
from kumadp.cp.kds.zone_receiver import ZoneReceiver
from kumadp.cp.store.base import Store
from kumadp.lifecycle import Backoff, Resilient, cancel_point
from kumadp.resources.registry import ResourceType
from kumadp.wire import kds as wire
from kumadp.wire.kds_pb2 import (
    IntermediateCARequest,
    IntermediateCAResponse,
    ZoneHealthCheckRequest,
    ZoneHealthCheckResponse,
)
from kumadp.wire.names import AUTHORIZATION_METADATA
from kumadp.xds.delta import DeltaServer, Nack, NoopDeltaCallbacks
from kumadp.xds.delta_client import DeltaClient, Update
from kumadp.xds.grpc_adapter import CallServerStream, GrpcClientStream

log = logging.getLogger(__name__)

DeltaRequest: TypeAlias = discovery_pb2.DeltaDiscoveryRequest
DeltaResponse: TypeAlias = discovery_pb2.DeltaDiscoveryResponse
DEFAULT_HEALTH_INTERVAL = 5.0
SIGN_TIMEOUT = 10.0


class KdsConnectionError(Exception):
    """The connection to the global CP ended or cannot be made; the message says why."""


def parse_global_address(address: str) -> tuple[str, int]:
    """(host, port) of ``grpcs://HOST:PORT``; ValueError with the reason otherwise."""
    url = urlsplit(address)
    if url.scheme != wire.ADDRESS_SCHEME or not url.hostname:
        raise ValueError(
            f"--kds-global-address: {address!r} is not a grpcs://HOST:PORT address "
            f"(the global control plane's KDS port, {wire.DEFAULT_PORT} by default)"
        )
    try:
        port = url.port or wire.DEFAULT_PORT
    except ValueError:
        raise ValueError(f"--kds-global-address: bad port in {address!r}") from None
    return url.hostname, port


@dataclass
class KdsClientConfig:
    zone: str
    global_address: str
    instance_id: str
    version: str
    ca_file: Path | None = None
    skip_verify: bool = False
    stuck_timeout: float = 30.0
    backoff: Backoff = field(default_factory=lambda: Backoff(0.2, 10.0, stable_after=30.0))
    # the zone token (scope cp) the global CP checks: inline, or a file read at each dial
    token: str | None = None
    token_file: Path | None = None

    def read_token(self) -> str | None:
        """The token to present, or None; OSError/ValueError naming the file otherwise."""
        if self.token_file is None:
            return (self.token or "").strip() or None
        try:
            text = self.token_file.read_text()[: 64 * 1024].strip()
        except OSError as exc:
            raise ValueError(f"--kds-token-file: cannot read {self.token_file}: {exc}") from None
        if not text:
            raise ValueError(f"--kds-token-file: {self.token_file} is empty")
        return text


class ZoneKdsClient:
    """Component: keeps the zone connected to the global CP (``Resilient``)."""

    name = "kds-zone-client"

    def __init__(
        self,
        config: KdsClientConfig,
        store: Store,
        source: StoreSource,
        *,
        down: list[ResourceType],
        up: list[ResourceType],
    ) -> None:
        self.config = config
        self._connection = _Connection(config, store, source, down, up)
        self._resilient = Resilient(
            self._connection, backoff=config.backoff, on_retry=self._on_retry
        )
        self.connects = 0
        self.failures = 0

    @property
    def connected(self) -> bool:
        return self._connection.connected

    async def sign_intermediate(self, request: IntermediateCARequest) -> IntermediateCAResponse:
        """Have the global CP sign this zone's intermediate CA, over the live connection.
        Raises KdsConnectionError when not connected, grpc.aio.AioRpcError when refused."""
        return await self._connection.sign_intermediate(request)

    def _on_retry(self, error: BaseException | None, delay: float) -> None:
        self.failures += 1
        reason = describe(error) if error is not None else "the connection ended"
        code = error.code() if isinstance(error, grpc.aio.AioRpcError) else None
        refused = (
            grpc.StatusCode.ALREADY_EXISTS,
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.PERMISSION_DENIED,
        )
        if code in refused:
            log.error(
                "KDS: the global control plane refused zone %s: %s; retrying in %.1fs",
                self.config.zone, reason, delay,
            )  # fmt: skip
            return
        if "CERTIFICATE_VERIFY_FAILED" in reason:
            reason += " (trust the global CP's CA with --kds-ca-file, or --kds-skip-verify)"
        was = "lost" if self._connection.was_connected else "failed"
        log.warning(
            "KDS: connection to the global control plane %s: %s; retrying in %.1fs",
            was,
            reason,
            delay,
        )

    async def run(self, stop: asyncio.Event) -> None:
        await self._resilient.run(stop)


STOP_TIMEOUT = 5.0  # a connection's tasks have this long to end once cancelled


async def _settle(tasks: set[asyncio.Future[Any]]) -> None:
    """Wait for cancelled tasks to end, but not forever: one that missed its cancellation
    (see ``lifecycle.cancel_point``) must not keep the zone from reconnecting or from
    stopping (it is named in the log)."""
    _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
    for task in pending:
        log.warning("KDS: a task did not end %.0fs after its cancellation: %r", STOP_TIMEOUT, task)
    for task in tasks - pending:
        if not task.cancelled():
            task.exception()  # retrieved: an ended task's error is not "never retrieved"


def describe(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details() or 'no details'}"
    return str(error) or type(error).__name__


class _StuckWatch(NoopDeltaCallbacks):
    """Responses of the zone -> global stream not yet answered, oldest first, per type."""

    def __init__(self) -> None:
        self.pending: dict[str, collections.deque[float]] = {}

    def on_response_sent(self, node_id: str, response: DeltaResponse) -> None:
        now = asyncio.get_running_loop().time()
        self.pending.setdefault(response.type_url, collections.deque()).append(now)

    def on_ack(self, node_id: str, type_url: str, version: str) -> None:
        self._answered(type_url)

    def on_nack(self, node_id: str, rejected: Nack) -> None:
        self._answered(rejected.type_url)

    def _answered(self, type_url: str) -> None:
        queue = self.pending.get(type_url)
        if queue:
            queue.popleft()

    def oldest(self) -> float | None:
        heads = [q[0] for q in self.pending.values() if q]
        return min(heads) if heads else None


class _FirstUpdate:
    """A ``DeltaHandler`` that notes the first update (the global CP accepted the stream)."""

    def __init__(self, inner: ZoneReceiver) -> None:
        self.inner = inner
        self.arrived = asyncio.Event()

    async def apply(self, update: Update) -> Mapping[str, str]:
        self.arrived.set()
        return await self.inner.apply(update)


class _Connection:
    """One connection to the global CP: runs until something ends it (then raises)."""

    name = "kds-zone-client"

    def __init__(
        self,
        config: KdsClientConfig,
        store: Store,
        source: StoreSource,
        down: list[ResourceType],
        up: list[ResourceType],
    ) -> None:
        self._config = config
        self._host, self._port = parse_global_address(config.global_address)
        self._store, self._source = store, source
        self._down, self._up = down, up
        self.connected = False
        self.was_connected = False  # the last attempt got as far as a heartbeat
        self._sign: grpc.aio.UnaryUnaryMultiCallable[Any, Any] | None = None
        self._metadata: tuple[tuple[str, str], ...] = ()

    async def sign_intermediate(self, request: IntermediateCARequest) -> IntermediateCAResponse:
        if not self.connected or self._sign is None:
            raise KdsConnectionError("not connected to the global control plane")
        response: IntermediateCAResponse = await self._sign(
            request, metadata=self._metadata, timeout=SIGN_TIMEOUT
        )
        return response

    async def run(self, stop: asyncio.Event) -> None:
        config = self._config
        self.was_connected = False
        token = config.read_token()
        credentials, options = await self._credentials()
        session = str(uuid.uuid4())
        metadata: tuple[tuple[str, str], ...] = (
            (wire.ZONE_METADATA, config.zone),
            (wire.INSTANCE_METADATA, config.instance_id),
            (wire.SESSION_METADATA, session),
            (wire.VERSION_METADATA, config.version),
        )
        if token:
            metadata += ((AUTHORIZATION_METADATA, f"Bearer {token}"),)
        target = f"{self._host}:{self._port}"
        options += [
            ("grpc.max_receive_message_length", wire.MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", wire.MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 15_000),
            ("grpc.keepalive_timeout_ms", 10_000),
        ]
        async with grpc.aio.secure_channel(target, credentials, options=options) as channel:
            receiver = _FirstUpdate(ZoneReceiver(self._store, self._down, zone=config.zone))
            node = base_pb2.Node(id=config.zone)
            down_call = channel.stream_stream(
                wire.method_path(wire.GLOBAL_TO_ZONE_METHOD),
                request_serializer=DeltaRequest.SerializeToString,
                response_deserializer=DeltaResponse.FromString,
            )(metadata=metadata)
            client = DeltaClient(
                node,
                [t.name for t in self._down],
                receiver,
                initial_versions=await receiver.inner.initial_versions(),
            )
            up_call = channel.stream_stream(
                wire.method_path(wire.ZONE_TO_GLOBAL_METHOD),
                request_serializer=DeltaResponse.SerializeToString,
                response_deserializer=DeltaRequest.FromString,
            )(metadata=metadata)
            watch = _StuckWatch()
            server = DeltaServer(self._source, watch, type_urls=[t.name for t in self._up])
            health = channel.unary_unary(
                wire.method_path(wire.HEALTH_CHECK_METHOD),
                request_serializer=ZoneHealthCheckRequest.SerializeToString,
                response_deserializer=ZoneHealthCheckResponse.FromString,
            )
            self._metadata = metadata
            self._sign = channel.unary_unary(
                wire.method_path(wire.SIGN_INTERMEDIATE_METHOD),
                request_serializer=IntermediateCARequest.SerializeToString,
                response_deserializer=IntermediateCAResponse.FromString,
            )
            tasks = {
                asyncio.ensure_future(
                    self._ended(client.run(GrpcClientStream(down_call)), "global-to-zone")
                ),
                asyncio.ensure_future(
                    self._ended(server.handle_stream(CallServerStream(up_call)), "zone-to-global")
                ),
                asyncio.ensure_future(self._heartbeats(health, metadata, receiver.arrived)),
                asyncio.ensure_future(self._stuck(watch)),
            }
            stopping = asyncio.ensure_future(stop.wait())
            try:
                done, _ = await asyncio.wait({*tasks, stopping}, return_when="FIRST_COMPLETED")
            finally:
                self.connected = False
                self._sign = None
                for task in (*tasks, stopping):
                    task.cancel()
                down_call.cancel()
                up_call.cancel()
                await _settle({*tasks, stopping})
            for task in done:
                if task is not stopping:
                    task.result()  # raises why the connection ended

    @staticmethod
    async def _ended(stream: object, what: str) -> None:
        await stream  # type: ignore[misc]
        raise KdsConnectionError(f"the {what} stream ended")

    async def _heartbeats(
        self,
        health: grpc.aio.UnaryUnaryMultiCallable[ZoneHealthCheckRequest, ZoneHealthCheckResponse],
        metadata: tuple[tuple[str, str], ...],
        accepted: asyncio.Event,
    ) -> None:
        """Heartbeats, once the global CP accepted this connection (its first response)."""
        try:
            await asyncio.wait_for(accepted.wait(), self._config.stuck_timeout)
        except TimeoutError:
            raise KdsConnectionError(
                f"no answer from the global control plane in {self._config.stuck_timeout:g}s"
            ) from None
        interval = DEFAULT_HEALTH_INTERVAL
        while True:
            response = await health(
                ZoneHealthCheckRequest(), metadata=metadata, timeout=max(interval, 2.0)
            )
            cancel_point()  # grpc.aio may have swallowed a cancel during the call
            if response.HasField("interval"):
                interval = max(0.05, response.interval.ToTimedelta().total_seconds())
            if not self.connected:
                self.connected = self.was_connected = True
                log.info(
                    "KDS: zone %s connected to the global control plane at %s:%d",
                    self._config.zone, self._host, self._port,
                )  # fmt: skip
            await asyncio.sleep(interval)

    async def _stuck(self, watch: _StuckWatch) -> None:
        timeout = self._config.stuck_timeout
        loop = asyncio.get_running_loop()
        while True:
            oldest = watch.oldest()
            if oldest is not None and loop.time() - oldest > timeout:
                raise KdsConnectionError(
                    f"the zone-to-global stream is stuck (no answer for {timeout:g}s)"
                )
            await asyncio.sleep(timeout / 4)

    async def _credentials(self) -> tuple[grpc.ChannelCredentials, list[tuple[str, str | int]]]:
        config = self._config
        return await channel_credentials(self._host, self._port, config.ca_file, config.skip_verify)


__all__ = [
    "KdsClientConfig",
    "KdsConnectionError",
    "ZoneKdsClient",
    "parse_global_address",
]
