"""How a zone CP trusts the global CP's KDS certificate.

``--kds-ca-file``: that CA; else the system roots; ``--kds-skip-verify``: whatever chain the
global CP presents, fetched just before dialling (logged as a warning: anyone on the path
could stand in for the global CP).
"""

from __future__ import annotations

import _ssl
import asyncio
import logging
import socket
import ssl
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

log = logging.getLogger(__name__)


class TrustError(Exception):
    """The global CP's certificate cannot be trusted or fetched; the message says why."""


async def channel_credentials(
    host: str, port: int, ca_file: Path | None, skip_verify: bool
) -> tuple[grpc.ChannelCredentials, list[tuple[str, str | int]]]:
    """Credentials (and channel options) to dial the global CP at ``host:port``."""
    if ca_file is not None:
        try:
            roots = await asyncio.to_thread(ca_file.read_bytes)
        except OSError as exc:
            raise TrustError(f"--kds-ca-file {ca_file}: {exc.strerror}") from exc
        return grpc.ssl_channel_credentials(root_certificates=roots), []
    if skip_verify:
        roots, name = await asyncio.to_thread(presented_chain, host, port)
        log.warning(
            "KDS: --kds-skip-verify: trusting the certificate the global control plane "
            "presents at %s:%d without checking it",
            host, port,
        )  # fmt: skip
        return grpc.ssl_channel_credentials(root_certificates=roots), [
            ("grpc.ssl_target_name_override", name)
        ]
    return grpc.ssl_channel_credentials(), []


def presented_chain(host: str, port: int, timeout: float = 5.0) -> tuple[bytes, str]:
    """The certificate chain a TLS server presents (PEM) and a name its certificate is
    valid for: what ``--kds-skip-verify`` trusts for one connection."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                ders = _unverified_chain(tls)
    except OSError as exc:
        raise TrustError(f"cannot reach the global control plane at {host}:{port}: {exc}") from exc
    certs = [x509.load_der_x509_certificate(der) for der in ders]
    if not certs:
        raise TrustError(f"{host}:{port} presented no certificate")
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    return pem, _a_name(certs[0]) or host


def _unverified_chain(tls: ssl.SSLSocket) -> list[bytes]:
    """DER of every certificate the peer sent (public API from Python 3.13; before, the
    same method on the private ``_sslobj``); the leaf alone where neither exists."""
    getter = getattr(tls, "get_unverified_chain", None) or getattr(
        getattr(tls, "_sslobj", None), "get_unverified_chain", None
    )
    if getter is None:
        der = tls.getpeercert(binary_form=True)
        return [der] if der else []
    return [c if isinstance(c, bytes) else c.public_bytes(_ssl.ENCODING_DER) for c in getter()]


def _a_name(cert: x509.Certificate) -> str | None:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for value in [
        *san.get_values_for_type(x509.DNSName),
        *map(str, san.get_values_for_type(x509.IPAddress)),
    ]:
        return str(value)
    return None


__all__ = ["TrustError", "channel_credentials", "presented_chain"]
