"""What Envoy (1.40, BoringSSL) does with the chains of zone intermediate CAs: the facts the
design of ``kumadp.cp.intermediate_ca`` rests on, checked on a real Envoy.

- A dataplane certificate (``spiffe://`` and ``kuma://`` SANs) under a zone intermediate is
  accepted with the root as the only trusted CA.
- A URI name constraint limited to the mesh's trust domain makes Envoy refuse the same
  certificate (its ``kuma://`` SANs are outside it): hence no name constraint, and the
  trust-domain rule in the signing policies instead.
- Once a CRL is configured, a chain verifies only when every CA in it has one: the root's
  alone refuses everything; the root's plus each intermediate's refuses exactly the revoked
  intermediate. Hence every zone's own (empty) CRL in the trust bundle.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kumadp.cp.ca import ca_from_spec
from kumadp.cp.intermediate_ca import build_crl, make_request, sign_intermediate
from kumadp.cp.x509 import build_ca_certificate, private_key_pem
from testkit.mesh import MeshEnv
from testkit.procs import envoy_binary, free_port, http_ok, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(envoy_binary() is None, reason="needs an Envoy binary"),
]
NOW = datetime.now(UTC)
URIS = ["spiffe://default/web", "kuma://kuma.io/service/web", "kuma://version/v1"]


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class Pki:
    """A mesh root and two zone intermediates made by kumadp's own code."""

    def __init__(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "default")])
        cert = build_ca_certificate(
            key, subject, not_before=NOW - timedelta(minutes=1),
            not_after=NOW + timedelta(days=1), uri="spiffe://default",
        )  # fmt: skip
        self.root = ca_from_spec(
            {
                "mesh": "default",
                "name": "ca-1",
                "certPem": pem(cert).decode(),
                "keyPem": private_key_pem(key).decode(),
            }
        )
        self.zones: dict[str, tuple[Any, x509.Certificate]] = {}
        for zone in ("zone-a", "zone-b"):
            request = make_request("default", zone)
            signed = sign_intermediate(self.root, zone, request.csr_pem, request.crl_pem)
            self.zones[zone] = (request.key, x509.load_pem_x509_certificate(signed.cert_pem))

    def constrained(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """An intermediate limited to the trust domain by a URI name constraint."""
        key = ec.generate_private_key(ec.SECP256R1())
        constraint = x509.NameConstraints(
            permitted_subtrees=[x509.UniformResourceIdentifier("default")], excluded_subtrees=None
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "constrained")]))
            .issuer_name(self.root.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(minutes=1))
            .not_valid_after(NOW + timedelta(hours=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(constraint, critical=True)
            .sign(self.root.private_key, hashes.SHA256())
        )
        return key, cert

    def leaf(self, tmp: Path, name: str, ca_key: Any, ca_cert: x509.Certificate) -> list[str]:
        """curl's --cert/--key for a dataplane certificate under (ca_key, ca_cert)."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(minutes=1))
            .not_valid_after(NOW + timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in URIS]),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        (tmp / f"{name}.pem").write_bytes(pem(cert) + pem(ca_cert))
        (tmp / f"{name}.key").write_bytes(private_key_pem(key))
        return ["--cert", str(tmp / f"{name}.pem"), "--key", str(tmp / f"{name}.key")]

    def crl(self, zone: str | None, revoked: tuple[x509.Certificate, ...] = ()) -> bytes:
        if zone is None:
            key, subject = self.root.private_key, self.root.certificate.subject
        else:
            key, cert = self.zones[zone]
            subject = cert.subject
        return build_crl(
            key,
            subject,
            {c.serial_number: NOW for c in revoked},
            number=1,
            next_update=NOW + timedelta(days=1),
        )


def listener(port: int, files: dict[str, Path], crl: Path | None) -> dict[str, Any]:
    validation: dict[str, Any] = {"trusted_ca": {"filename": str(files["root"])}}
    if crl is not None:
        validation["crl"] = {"filename": str(crl)}
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": f"l{port}",
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "any",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "direct_response": {"status": 200, "body": {"inline_string": "ok"}},
                        }
                    ],
                }
            ]
        },
    }
    tls = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
        "DownstreamTlsContext",
        "require_client_certificate": True,
        "common_tls_context": {
            "tls_certificates": [
                {
                    "certificate_chain": {"filename": str(files["server"])},
                    "private_key": {"filename": str(files["server-key"])},
                }
            ],
            "validation_context": validation,
        },
    }
    return {
        "name": f"l{port}",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {
                "filters": [{"name": "hcm", "typed_config": hcm}],
                "transport_socket": {"name": "tls", "typed_config": tls},
            }
        ],
    }


def status(port: int, cert_args: list[str]) -> str:
    done = subprocess.run(
        ["curl", "-sk", "--max-time", "5", *cert_args, "-o", "/dev/null", "-w", "%{http_code}",
         f"https://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=15, check=False,
    )  # fmt: skip
    return done.stdout if done.returncode == 0 else "refused"


def test_envoy_and_zone_intermediate_chains(env: MeshEnv) -> None:
    tmp, pki = env.tmp, Pki()
    files = {"root": tmp / "root.pem", "server": tmp / "server.pem", "server-key": tmp / "s.key"}
    files["root"].write_bytes(pki.root.cert_pem)
    server_key, server_cert = pki.zones["zone-b"]
    pki.leaf(tmp, "server", server_key, server_cert)
    files["server"], files["server-key"] = tmp / "server.pem", tmp / "server.key"
    revoked_a = pki.crl(None, (pki.zones["zone-a"][1],))
    crl_files = {
        "root-only": revoked_a,
        "all": revoked_a + pki.crl("zone-a") + pki.crl("zone-b"),
    }
    for name, text in crl_files.items():
        (tmp / f"{name}.crl").write_bytes(text)
    ports = {"no-crl": free_port(), "root-only": free_port(), "all": free_port()}
    admin = free_port()
    config = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                listener(port, files, None if name == "no-crl" else tmp / f"{name}.crl")
                for name, port in ports.items()
            ]
        },
    }
    (tmp / "envoy.json").write_text(json.dumps(config))
    envoy = envoy_binary()
    assert envoy is not None
    proc = env.procs.start(
        "envoy-zone-ca", [envoy, "-c", str(tmp / "envoy.json"), "--base-id", str(admin)]
    )
    wait_until(lambda: http_ok(f"http://127.0.0.1:{admin}/ready"), what="envoy", proc=proc)

    from_a = pki.leaf(tmp, "from-a", *pki.zones["zone-a"])
    from_b = pki.leaf(tmp, "from-b", *pki.zones["zone-b"])
    constrained = pki.leaf(tmp, "constrained", *pki.constrained())
    # chains through either zone's intermediate verify against the root alone
    assert status(ports["no-crl"], from_a) == "200"
    assert status(ports["no-crl"], from_b) == "200"
    # a URI name constraint of the trust domain: the kuma:// SANs make Envoy refuse it
    assert status(ports["no-crl"], constrained) == "refused"
    # a CRL for the root alone: nothing verifies any more
    assert status(ports["root-only"], from_b) == "refused"
    # a CRL for every CA: exactly the revoked intermediate is refused
    assert status(ports["all"], from_a) == "refused"
    assert status(ports["all"], from_b) == "200"
