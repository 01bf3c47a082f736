"""Certificate rotation: the agent's mesh identity, kept valid for as long as it runs.

``CertificateManager`` makes a new EC key and CSR for every issuance, has the control plane
sign it (``Signer``), and hands key + certificate + CA to the SDS server, which pushes them to
Envoy without dropping a connection. It renews

- at once when the control plane pushes a ``MeshIdentity`` whose ``generation`` differs from
  the one the current certificate was made for (services, backend or CA changed; mTLS on);
- on schedule at ``not_before + renew_fraction * lifetime`` +- ``jitter * lifetime``.

When renewal fails it keeps serving the old certificate and retries with capped exponential
backoff and jitter, logging the control plane's error. Readiness is blocked (key
``certificate``) while mTLS is on and there is no valid certificate: when the first signing
attempt failed, and once the current one has expired while renewal keeps failing; a successful
renewal (or mTLS being turned off) unblocks it. With mTLS off nothing is requested and any
existing certificate is kept (Envoy simply stops asking for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import grpc

from kumadp.lifecycle import Backoff
from kumadp.wire import agent_pb2

if TYPE_CHECKING:
    from types import ModuleType

    from kumadp.agent import certs


def _certs() -> ModuleType:
    """``kumadp.agent.certs``, imported on first use: it loads ``cryptography`` (~50 ms and
    ~16 MB), which only a mesh with mTLS needs, and not before Envoy has started."""
    from kumadp.agent import certs as module

    return module


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


log = logging.getLogger(__name__)

READINESS_KEY = "certificate"


class Signer(Protocol):
    async def sign(self, csr_pem: bytes) -> agent_pb2.SignCertificateResponse: ...


class SecretSink(Protocol):
    """What the manager needs of ``SdsServer``."""

    def set_identity(
        self, mesh: str, cert_pem: bytes, key_pem: bytes, ca_pem: bytes, crl_pem: bytes = b""
    ) -> None: ...


class ReadinessGate(Protocol):
    def block(self, key: str, reason: str) -> None: ...

    def unblock(self, key: str) -> None: ...


class CertificateError(Exception):
    """The control plane answered with something the agent cannot use."""


def describe_error(exc: BaseException) -> str:
    """One line for logs and readiness: the CP's own message for gRPC errors."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    if isinstance(exc, TimeoutError):
        return "timed out waiting for the control plane to sign"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class CertificateManager:
    name = "certificate-manager"

    def __init__(
        self,
        mesh: str,
        name: str,
        signer: Signer,
        sds: SecretSink,
        readiness: ReadinessGate,
        *,
        renew_fraction: float = 0.5,
        jitter: float = 0.1,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        sign_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < renew_fraction < 1:
            raise ValueError("renew_fraction: must be between 0 and 1")
        if not 0 <= jitter < min(renew_fraction, 1 - renew_fraction):
            raise ValueError("jitter: must be >= 0 and keep the renewal inside the lifetime")
        if not 0 < backoff_initial <= backoff_max:
            raise ValueError("backoff: need 0 < backoff_initial <= backoff_max")
        self.mesh = mesh
        self.dataplane = name
        self._signer = signer
        self._sds = sds
        self._readiness = readiness
        self._fraction = renew_fraction
        self._jitter = jitter
        self._sign_timeout = sign_timeout
        self._clock = clock
        # public state, for insights and metrics
        self.expiration: datetime | None = None  # not_after of the certificate served
        self.last_rotation: datetime | None = None  # when the last one was installed
        self.rotations = 0  # certificates installed, the first one included (as Kuma counts)
        self.last_error: str | None = None  # of the last failed attempt; None after a success
        self.backend: str | None = None  # the mTLS backend that signed the current one
        self.generation: str | None = None  # the identity generation it was made for
        self.failures = 0  # consecutive failed attempts
        self.attempts = 0  # signing attempts, successful or not
        # internal
        self._identity: agent_pb2.MeshIdentity | None = None
        self._not_after: float | None = None
        self._renew_at: float | None = None
        self._retry_at: float | None = None
        self._backoff = Backoff(backoff_initial, backoff_max, jitter=jitter)
        self._wake = asyncio.Event()

    # -- inputs ---------------------------------------------------------------------------
    def on_identity(self, identity: agent_pb2.MeshIdentity) -> None:
        """The control plane pushed this dataplane's identity (called by the watch client)."""
        previous = self._identity
        self._identity = agent_pb2.MeshIdentity()
        self._identity.CopyFrom(identity)
        if not identity.mtls_enabled:
            self._readiness.unblock(READINESS_KEY)
            self._retry_at = None
        elif previous is None or previous.generation != identity.generation:
            # something the certificate states changed: renew now, even while backing off
            self._retry_at = None
            self._backoff.reset()
        self._wake.set()

    def wake(self) -> None:
        """Re-evaluate now (e.g. after the clock jumped)."""
        self._wake.set()

    @property
    def renew_at(self) -> datetime | None:
        return _utc(self._renew_at) if self._renew_at is not None else None

    @property
    def mtls_enabled(self) -> bool:
        return self._identity is not None and self._identity.mtls_enabled

    # -- the component ----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        waker = asyncio.create_task(self._wake_on(stop))
        try:
            while not stop.is_set():
                self._wake.clear()
                now = self._clock()
                self._check_validity(now)
                due = self._due()
                if due is not None and due <= now:
                    await self._renew(stop)
                    continue
                wake_at = [t for t in (due, self._expiry_watch()) if t is not None]
                timeout = max(0.0, min(wake_at) - now) if wake_at else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            waker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waker

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    def _due(self) -> float | None:
        """When the next signing attempt is due (clock time), None: nothing to do."""
        identity = self._identity
        if identity is None or not identity.mtls_enabled:
            return None
        if self._retry_at is not None:
            return self._retry_at
        if self.generation != identity.generation or self._renew_at is None:
            return float("-inf")
        return self._renew_at

    def _expiry_watch(self) -> float | None:
        """Wake at expiry to block readiness, unless that already happened."""
        if self._not_after is None or not self.mtls_enabled:
            return None
        return self._not_after if self._clock() < self._not_after else None

    def _check_validity(self, now: float) -> None:
        if not self.mtls_enabled:
            return
        if self._not_after is None:
            if self.last_error is not None:  # the first attempt is quick: block once it failed
                self._readiness.block(
                    READINESS_KEY, f"no certificate yet (mTLS is on): {self.last_error}"
                )
        elif now >= self._not_after:
            expired = _utc(self._not_after).isoformat()
            self._readiness.block(
                READINESS_KEY,
                f"certificate expired at {expired}; renewal keeps failing: "
                f"{self.last_error or 'no renewal has succeeded yet'}",
            )

    # -- signing ----------------------------------------------------------------------------
    async def _renew(self, stop: asyncio.Event) -> None:
        identity = self._identity
        assert identity is not None
        self.attempts += 1
        key = _certs().generate_key()
        try:
            csr = _certs().make_csr(key, self.mesh, list(identity.services))
            response = await self._sign(csr, stop)
            if response is None:
                return  # stopping
            cert_pem = bytes(response.certificate_pem)
            ca_pem = bytes(response.ca_bundle_pem)
            info = self._check_response(cert_pem, ca_pem, key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(exc)
            return
        self._sds.set_identity(
            self.mesh, cert_pem, _certs().key_pem(key), ca_pem, bytes(response.crl_pem)
        )
        now = self._clock()
        # The CP backdates not-before by 10 s for clock skew: count the lifetime from when the
        # certificate arrived, so "renew at half its life" means half of what we can use.
        start, end = max(info.not_before.timestamp(), now), info.not_after.timestamp()
        self._not_after = end
        self._renew_at = self._schedule(start, end, now)
        self._retry_at = None
        self._backoff.reset()
        self.failures = 0
        self.expiration = info.not_after
        self.last_rotation = _utc(now)
        self.rotations += 1
        self.last_error = None
        self.backend = response.backend or identity.backend or None
        self.generation = identity.generation
        self._readiness.unblock(READINESS_KEY)
        log.info(
            "new certificate for %s.%s (%s) valid until %s; next renewal at %s",
            self.mesh,
            self.dataplane,
            ", ".join(info.uris) or "no URI SANs",
            info.not_after.isoformat(),
            _utc(self._renew_at).isoformat(),
        )

    async def _sign(
        self, csr: bytes, stop: asyncio.Event
    ) -> agent_pb2.SignCertificateResponse | None:
        """Sign, unless ``stop`` comes first (then None)."""
        sign = asyncio.ensure_future(asyncio.wait_for(self._signer.sign(csr), self._sign_timeout))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({sign, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not sign.done():
                sign.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sign
        if sign.cancelled():
            return None
        return sign.result()

    def _check_response(
        self, cert_pem: bytes, ca_pem: bytes, key: certs.PrivateKey
    ) -> certs.CertInfo:
        try:
            info = _certs().cert_info(cert_pem)
        except ValueError as exc:
            raise CertificateError(f"the control plane sent no valid certificate: {exc}") from exc
        if not _certs().matches_key(cert_pem, key):
            raise CertificateError("the control plane's certificate is not for the agent's key")
        if not ca_pem.strip():
            raise CertificateError("the control plane sent no CA bundle")
        if info.not_after.timestamp() <= self._clock():
            raise CertificateError(
                f"the control plane's certificate expired at {info.not_after.isoformat()}"
            )
        return info

    def _schedule(self, start: float, end: float, now: float) -> float:
        lifetime = end - start
        fraction = self._fraction + random.uniform(-self._jitter, self._jitter)
        renew_at = start + fraction * lifetime
        if renew_at <= now:  # issued late in its life (clock skew, a slow CP)
            renew_at = now + self._fraction * (end - now)
        return renew_at

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.last_error = describe_error(exc)
        delay = self._backoff.next()
        self._retry_at = self._clock() + delay
        if self.expiration is not None:
            serving = f"still serving the certificate valid until {self.expiration.isoformat()}"
        else:
            serving = "no certificate yet"
        log.warning(
            "certificate for %s.%s: signing failed (attempt %d): %s; retrying in %.1fs; %s",
            self.mesh,
            self.dataplane,
            self.failures,
            self.last_error,
            delay,
            serving,
        )
