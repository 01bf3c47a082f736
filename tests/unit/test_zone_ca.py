"""Zone intermediate CAs: the signing policy (kumadp.cp.intermediate_ca), the global CP's book
(kumadp.cp.zone_cas), the trust bundles (kumadp.cp.trust_bundles) and a zone's manager
(kumadp.cp.zone_intermediates), on a memory store, with the zone's signer calling the
global CP's book directly (the gRPC hop is covered by tests/e2e/test_multizone_ca.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kumadp.cp.ca import CA, MeshCAs, ca_from_spec
from kumadp.cp.certs import sign_dataplane_csr
from kumadp.cp.intermediate_ca import (
    IntermediateRefused,
    build_crl,
    check_signed,
    intermediate_subject,
    make_request,
    sign_intermediate,
)
from kumadp.cp.store import MemoryStore
from kumadp.cp.trust_bundles import TrustBundlePublisher
from kumadp.cp.zone_cas import ZoneCAs
from kumadp.cp.zone_intermediates import ZoneIntermediates, trust_crls
from kumadp.lifecycle import Backoff
from kumadp.resources import parse_dataplane, parse_mesh
from kumadp.resources.registry import (
    MESH_CA_TYPE,
    MESH_TRUST_BUNDLE_TYPE,
    ZONE_INTERMEDIATE_CA_TYPE,
)
from kumadp.wire.kds_pb2 import IntermediateCARequest, IntermediateCAResponse
from kumadp.xds.stream import StreamRejected

MESH_DOC = {
    "type": "Mesh",
    "name": "default",
    "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]},
}


async def root_ca(store: MemoryStore) -> CA:
    await store.put("Mesh", "", "default", MESH_DOC)
    ca = await MeshCAs(store).ca_for(parse_mesh(MESH_DOC))
    assert ca is not None
    return ca


# -- the signing policy --------------------------------------------------------------------


async def test_the_global_cp_signs_a_path_length_0_ca_of_the_mesh_trust_domain() -> None:
    root = await root_ca(MemoryStore())
    request = make_request("default", "zone-a")
    signed = sign_intermediate(root, "zone-a", request.csr_pem, request.crl_pem, lifetime=3600)
    cert = check_signed(signed.cert_pem, request.key, root.cert_pem)
    cert.verify_directly_issued_by(root.certificate)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://default"]
    assert cert.subject == intermediate_subject("default", "zone-a", request.key.public_key())
    assert (
        timedelta(minutes=59)
        < signed.not_after - signed.not_before
        <= timedelta(hours=1, seconds=10)
    )

    # the zone signs its dataplanes with it: leaf + intermediate, the root as the bundle
    spec = {
        "mesh": "default",
        "name": "ca-1",
        "certPem": signed.cert_pem.decode(),
        "keyPem": request.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        "rootPem": root.cert_pem.decode(),
        "trustCrlsPem": "crls",
    }
    intermediate = ca_from_spec(spec)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    dataplane = parse_dataplane(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": "web-1",
            "networking": {
                "address": "127.0.0.1",
                "inbound": [{"port": 1, "servicePort": 2, "tags": {"kuma.io/service": "web"}}],
            },
        }
    )
    leaf = sign_dataplane_csr(intermediate, parse_mesh(MESH_DOC), dataplane, csr)
    chain = x509.load_pem_x509_certificates(leaf.certificate_pem)
    assert len(chain) == 2 and chain[1].serial_number == signed.serial
    chain[0].verify_directly_issued_by(chain[1])
    assert leaf.ca_bundle_pem == root.cert_pem and leaf.crl_pem == b"crls"
    assert intermediate.generation != intermediate.fingerprint  # the CRLs count


async def test_the_signing_policy_refuses_what_is_not_a_zone_intermediate() -> None:
    root = await root_ca(MemoryStore())
    good = make_request("default", "zone-a")
    other = make_request("default", "zone-a")

    def refused(csr: bytes, crl: bytes, zone: str = "zone-a") -> str:
        with pytest.raises(IntermediateRefused) as caught:
            sign_intermediate(root, zone, csr, crl)
        return str(caught.value)

    assert "subject must be" in refused(good.csr_pem, good.crl_pem, zone="zone-b")
    assert "not signed with the requested key" in refused(good.csr_pem, _crl_with(other, good))
    assert "its issuer must be" in refused(good.csr_pem, other.crl_pem)
    assert "not a PEM certificate revocation list" in refused(good.csr_pem, b"nope")
    assert "not a PEM certificate signing request" in refused(b"nope", good.crl_pem)

    # a CSR asking for anything but the mesh's trust domain
    for name in (
        x509.UniformResourceIdentifier("spiffe://other"),
        x509.UniformResourceIdentifier("spiffe://default/web"),
        x509.DNSName("example.com"),
    ):
        key = good.key
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(intermediate_subject("default", "zone-a", key.public_key()))
            .add_extension(x509.SubjectAlternativeName([name]), critical=False)
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )
        assert "may only name spiffe://default" in refused(csr, good.crl_pem)


def _crl_with(signer: Any, named: Any) -> bytes:
    """A CRL naming ``named``'s subject but signed with ``signer``'s key."""
    issuer = intermediate_subject("default", "zone-a", named.key.public_key())
    return build_crl(signer.key, issuer, {}, number=1, next_update=datetime.now(UTC) + timedelta(1))


# -- the global CP's book, the bundles, a zone's manager ------------------------------------


class Zone:
    """A zone's manager whose signer is the global CP's ``ZoneCAs.handle``."""

    def __init__(self, book: ZoneCAs, name: str, clock: list[datetime]) -> None:
        self.store = MemoryStore()
        self.calls = 0

        async def signer(request: IntermediateCARequest) -> IntermediateCAResponse:
            self.calls += 1
            return await book.handle(name, request)

        self.manager = ZoneIntermediates(
            self.store, name, signer, clock=lambda: clock[0], backoff=lambda: Backoff(0.01, 0.02)
        )

    async def sync_from(self, global_store: MemoryStore) -> None:
        """What KDS does: the mesh and its trust bundle (names kept, labels as copies)."""
        for type_name in ("Mesh", MESH_TRUST_BUNDLE_TYPE):
            for stored in await global_store.list(type_name):
                await self.store.put(type_name, stored.mesh, stored.name, dict(stored.spec))

    async def ca(self) -> dict[str, Any]:
        found = await self.store.get(MESH_CA_TYPE, "default", "ca-1")
        assert found is not None
        return dict(found.spec)


async def test_zones_get_intermediates_renew_them_and_lose_them_when_revoked() -> None:
    global_store = MemoryStore()
    root = await root_ca(global_store)
    now = [datetime.now(UTC)]
    book = ZoneCAs(
        global_store, MeshCAs(global_store, create=False), lifetime=3600, clock=lambda: now[0]
    )
    bundles = TrustBundlePublisher(
        global_store, MeshCAs(global_store, create=False), clock=lambda: now[0]
    )
    zone_a, zone_b = Zone(book, "zone-a", now), Zone(book, "zone-b", now)

    async def converge() -> None:
        for _ in range(2):
            await bundles.process("default")
            for zone in (zone_a, zone_b):
                await zone.sync_from(global_store)
                await zone.manager.process("default")

    await converge()
    first = await zone_a.ca()
    assert first["zone"] == "zone-a" and first["rootPem"] == root.cert_pem.decode()
    bundle = (await global_store.get(MESH_TRUST_BUNDLE_TYPE, "default", "ca-1")).spec  # type: ignore[union-attr]
    assert sorted(i["zone"] for i in bundle["intermediates"]) == ["zone-a", "zone-b"]
    assert "PRIVATE" not in str(bundle)
    # every zone checks the root's CRL and every intermediate's
    trust = (await zone_b.ca())["trustCrlsPem"]
    assert trust.count("BEGIN X509 CRL") == 3
    unchanged = (await global_store.get(MESH_TRUST_BUNDLE_TYPE, "default", "ca-1")).version  # type: ignore[union-attr]
    await converge()
    assert (await global_store.get(MESH_TRUST_BUNDLE_TYPE, "default", "ca-1")).version == unchanged  # type: ignore[union-attr]
    assert zone_a.calls == 1  # nothing asked again

    # half its life: a new one is signed, used once the bundle lists it
    now[0] += timedelta(minutes=31)
    await bundles.process("default")
    await zone_a.sync_from(global_store)
    await zone_a.manager.process("default")
    assert zone_a.calls == 2 and (await zone_a.ca())["serial"] == first["serial"]
    await converge()
    second = await zone_a.ca()
    assert second["serial"] != first["serial"]

    # revoked: the root's CRL lists it, zone-a is refused a new one until allowed
    revoked = await book.revoke("zone-a")
    assert {r["serial"] for r in revoked} >= {second["serial"]}
    await converge()
    bundle = (await global_store.get(MESH_TRUST_BUNDLE_TYPE, "default", "ca-1")).spec  # type: ignore[union-attr]
    assert second["serial"] in bundle["revokedSerials"]
    assert {i["zone"] for i in bundle["intermediates"]} == {"zone-b"}
    root_crl = x509.load_pem_x509_crl(bundle["rootCrlPem"].encode())
    assert root_crl.is_signature_valid(root.certificate.public_key())  # type: ignore[arg-type]
    assert root_crl.get_revoked_certificate_by_serial_number(int(second["serial"], 16))
    assert bundle["rootCrlPem"].strip() in (await zone_b.ca())["trustCrlsPem"]
    with pytest.raises(StreamRejected, match="revoked by an admin"):
        await book.handle("zone-a", IntermediateCARequest(mesh="default", backend="ca-1"))
    assert (await zone_a.ca())["serial"] == second["serial"]  # kept, asked again meanwhile

    assert await book.allow("zone-a")
    await converge()
    third = await zone_a.ca()
    assert third["serial"] not in (first["serial"], second["serial"])
    overview = await book.overview("zone-a")
    assert not overview["refused"]
    states = {i["serial"]: (i["revoked"], i["live"]) for i in overview["intermediates"]}
    assert states[second["serial"]] == (True, False) and states[third["serial"]] == (False, True)


async def test_a_deleted_mesh_takes_its_records_and_bundle_along() -> None:
    store = MemoryStore()
    await root_ca(store)
    book = ZoneCAs(store, MeshCAs(store, create=False))
    request = make_request("default", "zone-a")
    await book.sign("zone-a", "default", "ca-1", request.csr_pem, request.crl_pem)
    bundles = TrustBundlePublisher(store, MeshCAs(store, create=False))
    await bundles.process("default")
    assert await store.list(MESH_TRUST_BUNDLE_TYPE) and await store.list(ZONE_INTERMEDIATE_CA_TYPE)
    await store.delete("Mesh", "", "default")
    await bundles.process("default")
    assert not await store.list(MESH_TRUST_BUNDLE_TYPE)
    assert not await store.list(ZONE_INTERMEDIATE_CA_TYPE)
    with pytest.raises(IntermediateRefused, match="does not exist") as caught:
        await book.sign("zone-a", "default", "ca-1", request.csr_pem, request.crl_pem)
    assert caught.value.transient


def test_no_crl_at_all_until_the_bundle_of_this_root_is_here() -> None:
    """Half a CRL set would make Envoy refuse every chain whose CA has none."""
    assert trust_crls(None, "root", "own") == ""
    assert trust_crls({"caCertPem": "other", "rootCrlPem": "r"}, "root", "own") == ""
    bundle = {"caCertPem": "root", "rootCrlPem": "r", "intermediates": [{"crlPem": "own"}]}
    assert trust_crls(bundle, "root", "own") == "r\nown\n"


async def test_a_root_left_from_a_standalone_run_is_replaced_by_the_zone_intermediate() -> None:
    global_store = MemoryStore()
    root = await root_ca(global_store)
    book = ZoneCAs(global_store, MeshCAs(global_store, create=False))
    zone = Zone(book, "zone-a", [datetime.now(UTC)])
    await zone.sync_from(global_store)
    await root_ca(zone.store)  # this store ran standalone once: a root CA, key included
    await zone.manager.process("default")
    spec = await zone.ca()
    assert spec["zone"] == "zone-a" and spec["rootPem"] == root.cert_pem.decode()
    cert = x509.load_pem_x509_certificate(spec["certPem"].encode())
    cert.verify_directly_issued_by(root.certificate)
    assert len(await zone.store.list(MESH_CA_TYPE)) == 1
