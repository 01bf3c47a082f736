"""Certificate rotation with a fake signer (a throwaway CA) and a controllable clock."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kumadp.agent import certs
from kumadp.agent.readiness import Readiness, State
from kumadp.agent.rotation import CertificateManager
from kumadp.wire import agent_pb2
from testkit.procs import until
from tests.unit.test_agent_certs import TestCa

DEADLINE = 10.0
START = 1_800_000_000.0  # whole seconds: X.509 times have no fractions


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


class FakeSigner:
    def __init__(self, ca: TestCa, clock: Callable[[], float], lifetime: float = 100.0) -> None:
        self.ca = ca
        self.clock = clock
        self.lifetime = lifetime
        self.csrs: list[bytes] = []
        self.calls: list[float] = []  # time.monotonic() of each call
        self.fail: BaseException | None = None
        self.hang = False
        self.wrong_key = False

    async def sign(self, csr_pem: bytes) -> agent_pb2.SignCertificateResponse:
        self.csrs.append(csr_pem)
        self.calls.append(time.monotonic())
        if self.hang:
            await asyncio.Event().wait()
        if self.fail is not None:
            raise self.fail
        if self.wrong_key:
            csr_pem = certs.make_csr(certs.generate_key(), "default", ["web"])
        start = float(int(self.clock()))
        cert = self.ca.sign_csr(csr_pem, not_before=start, lifetime=self.lifetime)
        return agent_pb2.SignCertificateResponse(
            certificate_pem=cert,
            ca_bundle_pem=self.ca.pem,
            backend="ca-1",
            not_before_unix=int(start),
            not_after_unix=int(start + self.lifetime),
        )


class FakeSds:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, bytes, bytes]] = []

    def set_identity(
        self, mesh: str, cert_pem: bytes, key_pem: bytes, ca_pem: bytes, crl_pem: bytes = b""
    ) -> None:
        self.calls.append((mesh, cert_pem, key_pem, ca_pem))


def cp_error(message: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details=message
    )


def identity(
    generation: str = "g1", *, mtls: bool = True, services: tuple[str, ...] = ("web",)
) -> agent_pb2.MeshIdentity:
    return agent_pb2.MeshIdentity(
        mtls_enabled=mtls,
        backend="ca-1",
        ca_fingerprint="ab" * 32,
        services=list(services),
        generation=generation,
    )


def csr_uris(csr_pem: bytes) -> list[str]:
    csr = x509.load_pem_x509_csr(csr_pem)
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class Rig:
    def __init__(self, *, clock: Callable[[], float] | None = None, **options: float) -> None:
        self.ca = TestCa("default")
        self.clock = FakeClock()
        clock = clock or self.clock
        self.signer = FakeSigner(self.ca, clock, lifetime=float(options.pop("lifetime", 100.0)))
        self.sds = FakeSds()
        self.readiness = Readiness()
        self.readiness.set_ready(True)
        options.setdefault("jitter", 0.0)
        self.manager = CertificateManager(
            "default", "web-1", self.signer, self.sds, self.readiness, clock=clock, **options
        )

    async def settle(self) -> None:
        """Have the manager re-evaluate once (it reads the clock at every evaluation)."""
        reads = self.clock.reads
        self.manager.wake()
        await until(lambda: self.clock.reads > reads, "the manager to re-evaluate")

    async def advance_to(self, when: float) -> None:
        self.clock.now = when
        await self.settle()


@contextlib.asynccontextmanager
async def running(rig: Rig) -> AsyncIterator[Rig]:
    stop = asyncio.Event()
    task = asyncio.create_task(rig.manager.run(stop))
    try:
        yield rig
    finally:
        stop.set()
        await asyncio.wait_for(task, DEADLINE)


async def test_first_certificate_is_issued_at_once_and_installed() -> None:
    async with running(Rig()) as rig:
        manager = rig.manager
        assert manager.expiration is None and manager.rotations == 0
        manager.on_identity(identity(services=("web", "api")))
        await until(lambda: manager.rotations == 1, "the first certificate")

        assert csr_uris(rig.signer.csrs[0]) == ["spiffe://default/api", "spiffe://default/web"]
        [(mesh, cert_pem, key_pem, ca_pem)] = rig.sds.calls
        assert mesh == "default" and ca_pem == rig.ca.pem
        key = serialization.load_pem_private_key(key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
        assert certs.matches_key(cert_pem, key)
        assert manager.expiration == utc(START + 100)
        assert manager.last_rotation == utc(START)
        assert manager.backend == "ca-1" and manager.generation == "g1"
        assert manager.last_error is None and manager.failures == 0 and manager.attempts == 1
        assert manager.renew_at == utc(START + 50)
        assert rig.readiness.state is State.READY


async def test_renews_at_half_life_with_a_new_key() -> None:
    async with running(Rig()) as rig:
        manager = rig.manager
        manager.on_identity(identity())
        await until(lambda: manager.rotations == 1, "the first certificate")
        await rig.advance_to(START + 49)
        assert manager.attempts == 1
        await rig.advance_to(START + 50)
        await until(lambda: manager.rotations == 2, "the renewal")
        first, second = rig.sds.calls
        assert first[2] != second[2] and first[1] != second[1]
        assert manager.expiration == utc(START + 150)
        assert manager.last_rotation == utc(START + 50)
        assert manager.renew_at == utc(START + 100)


async def test_renewal_on_the_real_clock_is_jittered_and_expiry_blocks_by_itself() -> None:
    rig = Rig(clock=time.time, lifetime=3.0, jitter=0.1, backoff_initial=30.0)
    async with running(rig):
        manager = rig.manager
        manager.on_identity(identity())
        await until(lambda: manager.rotations == 1, "the first certificate")
        assert manager.expiration is not None and manager.renew_at is not None
        assert manager.last_rotation is not None
        # Half of the life left when it arrived (+- 10 %), not counting any backdating.
        received = manager.last_rotation.timestamp()
        usable = manager.expiration.timestamp() - received
        offset = manager.renew_at.timestamp() - received
        assert 0.4 * usable - 0.01 <= offset <= 0.6 * usable + 0.01
        rig.signer.fail = cp_error("signing is down")
        await until(lambda: manager.failures == 1, "the renewal attempt")
        attempted = time.time()
        assert attempted >= manager.renew_at.timestamp()
        assert attempted - manager.renew_at.timestamp() < 1.0
        assert rig.readiness.state is State.READY  # the old certificate is still valid
        # no retry before expiry (30 s backoff); the manager wakes at expiry by itself
        await until(lambda: rig.readiness.state is State.NOT_READY, "expiry")
        assert time.time() >= manager.expiration.timestamp()
        assert manager.attempts == 2


async def test_new_generation_renews_at_once() -> None:
    async with running(Rig()) as rig:
        manager = rig.manager
        manager.on_identity(identity("g1"))
        await until(lambda: manager.rotations == 1, "the first certificate")
        manager.on_identity(identity("g1"))  # the same identity again: nothing to do
        await rig.settle()
        assert manager.attempts == 1
        manager.on_identity(identity("g2", services=("web", "db")))
        await until(lambda: manager.rotations == 2, "the renewal for g2")
        assert csr_uris(rig.signer.csrs[-1]) == ["spiffe://default/db", "spiffe://default/web"]
        assert manager.generation == "g2" and manager.last_rotation == utc(START)


async def test_mtls_off_requests_nothing_and_keeps_the_certificate() -> None:
    async with running(Rig()) as rig:
        manager = rig.manager
        manager.on_identity(identity("g0", mtls=False))
        await rig.settle()
        assert manager.attempts == 0 and rig.sds.calls == []
        manager.on_identity(identity("g1"))
        await until(lambda: manager.rotations == 1, "the first certificate")
        manager.on_identity(identity("g2", mtls=False))
        await rig.advance_to(START + 60)  # past the renewal time
        assert manager.attempts == 1 and len(rig.sds.calls) == 1
        await rig.advance_to(START + 200)  # past expiry: not needed, so not blocking
        assert rig.readiness.state is State.READY
        assert manager.expiration == utc(START + 100)
        manager.on_identity(identity("g3"))  # on again: a certificate at once
        await until(lambda: manager.rotations == 2, "a certificate after mTLS is back on")


async def test_failures_back_off_keep_the_old_cert_block_at_expiry_and_recover(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running(Rig(backoff_initial=1.0, backoff_max=4.0)) as rig:
        manager = rig.manager
        manager.on_identity(identity())
        await until(lambda: manager.rotations == 1, "the first certificate")
        rig.signer.fail = cp_error("control plane is restarting")
        await rig.advance_to(START + 55)  # renewal due at +50: half its usable life
        await until(lambda: manager.failures == 1, "the failed renewal")
        assert manager.last_error == "UNAVAILABLE: control plane is restarting"
        assert len(rig.sds.calls) == 1 and manager.expiration == utc(START + 100)
        assert rig.readiness.state is State.READY
        assert "control plane is restarting" in caplog.text
        assert "still serving the certificate valid until" in caplog.text

        # retries after 1, 2, 4, 4 s (capped), never earlier
        now = START + 55
        for attempt, backoff in enumerate((1.0, 2.0, 4.0, 4.0), start=3):
            await rig.advance_to(now + backoff - 0.5)
            assert manager.attempts == attempt - 1
            now += backoff
            await rig.advance_to(now)
            await until(lambda a=attempt: manager.attempts == a, f"attempt {attempt}")  # type: ignore[misc]
        assert manager.failures == 5 and rig.readiness.state is State.READY

        # the old certificate expires: readiness says why
        await rig.advance_to(START + 100)
        assert rig.readiness.state is State.NOT_READY
        expired = utc(START + 100).isoformat()
        assert rig.readiness.reasons == [
            f"certificate: certificate expired at {expired}; renewal keeps failing: "
            "UNAVAILABLE: control plane is restarting"
        ]

        # the control plane is back: the next retry succeeds and unblocks
        rig.signer.fail = None
        await rig.advance_to(START + 104)
        await until(lambda: manager.rotations == 2, "the renewal")
        assert rig.readiness.state is State.READY
        assert manager.last_error is None and manager.failures == 0
        assert manager.expiration == utc(START + 204)


async def test_first_failure_blocks_until_a_certificate_arrives() -> None:
    async with running(Rig()) as rig:
        manager = rig.manager
        rig.signer.fail = cp_error("dataplane default.web-1 may not claim service db")
        manager.on_identity(identity())
        await until(lambda: manager.failures == 1, "the failed attempt")
        await rig.settle()
        assert rig.readiness.reasons == [
            "certificate: no certificate yet (mTLS is on): "
            "UNAVAILABLE: dataplane default.web-1 may not claim service db"
        ]
        rig.signer.fail = None
        await rig.advance_to(START + 1)
        await until(lambda: manager.rotations == 1, "the certificate")
        assert rig.readiness.state is State.READY


async def test_a_new_generation_cuts_the_backoff_short() -> None:
    async with running(Rig(backoff_initial=30.0)) as rig:
        manager = rig.manager
        rig.signer.fail = cp_error("no CA yet")
        manager.on_identity(identity("g1"))
        await until(lambda: manager.failures == 1, "the failed attempt")
        rig.signer.fail = None
        manager.on_identity(identity("g2"))  # e.g. the CA now exists
        await until(lambda: manager.rotations == 1, "the certificate for g2")
        assert manager.generation == "g2"


async def test_an_unusable_answer_is_a_failure() -> None:
    async with running(Rig()) as rig:
        manager = rig.manager
        rig.signer.wrong_key = True
        manager.on_identity(identity())
        await until(lambda: manager.failures == 1, "the failed attempt")
        assert manager.last_error is not None and "not for the agent's key" in manager.last_error
        assert rig.sds.calls == []


async def test_stop_while_signing_returns_promptly() -> None:
    rig = Rig()
    rig.signer.hang = True
    stop = asyncio.Event()
    task = asyncio.create_task(rig.manager.run(stop))
    try:
        rig.manager.on_identity(identity())
        await until(lambda: rig.signer.csrs, "the signing call")
    finally:
        stop.set()
        await asyncio.wait_for(task, DEADLINE)
    assert rig.manager.failures == 0 and rig.sds.calls == []
