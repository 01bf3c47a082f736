"""The control plane's own TLS certificate for its gRPC DP server (5678).

Unless the user gives a certificate (``load_server_certificate``), the CP makes a small CA of
its own on first start (EC P-256, CN "kumadp control plane CA", 10 years) and a server
certificate signed by it (1 year) for ``localhost``, ``127.0.0.1``, ``::1``, this host's name
and any extra names the CP is reached by. Agents trust that CA (``--ca-cert-file``, or the
copy the bootstrap carries).

Files, under ``<data dir>/dp-server/`` (directory 0700, keys 0600, written atomically):
``ca.pem``, ``ca.key``, ``tls.crt``, ``tls.key``. Keeping ``ca.key`` lets a later start issue
a new server certificate under the same CA, so agents keep trusting it, when the old one
nears its end (less than a third of its life left) or does not cover a newly requested
name. A directory holding only ``ca.pem``, ``tls.crt`` and ``tls.key`` (no ``ca.key``) is
used as it is.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kumadp.cp.ca import (
    BACKDATE,
    PrivateKey,
    build_ca_certificate,
    build_leaf_certificate,
    fingerprint,
    new_private_key,
    private_key_pem,
    spki,
)

log = logging.getLogger(__name__)

SUBDIR = "dp-server"
CA_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE = "ca.pem", "ca.key", "tls.crt", "tls.key"
CA_COMMON_NAME = "kumadp control plane CA"
SERVER_COMMON_NAME = "kumadp control plane"
CA_VALIDITY = timedelta(days=3650)
SERVER_VALIDITY = timedelta(days=365)
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")


class ServerTLSError(Exception):
    """The CP's TLS certificate or key cannot be read, made or used."""


@dataclass(frozen=True)
class ServerCertificate:
    cert_pem: bytes  # the server certificate (and chain, if given), PEM
    key_pem: bytes = field(repr=False)
    ca_pem: bytes  # what agents should trust; empty when unknown (user-given, no CA file)
    ca_path: Path | None = None

    @property
    def ca_fingerprint(self) -> str:
        """SHA-256 (hex) of the first CA certificate, "" when there is none."""
        if not self.ca_pem:
            return ""
        return fingerprint(x509.load_pem_x509_certificates(self.ca_pem)[0])


def ensure_server_certificate(
    data_dir: Path | None, hostnames: list[str], subdir: str = SUBDIR, what: str = "DP server"
) -> ServerCertificate:
    """Load the CP's server certificate from ``data_dir`` or make (and store) one covering
    the default names plus ``hostnames``. ``data_dir=None`` keeps everything in memory.
    ``subdir`` and ``what``: another server of the CP with a CA of its own (KDS)."""
    names = server_names(hostnames)
    now = datetime.now(UTC)
    if data_dir is None:
        ca_key, ca_cert = _new_ca(now)
        key, cert = _new_server_cert(ca_key, ca_cert, names, now)
        return _result(cert, key, ca_cert, None)

    directory = Path(data_dir) / subdir
    paths = {f: directory / f for f in (CA_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE)}
    ca_path, ca_key_path = paths[CA_FILE], paths[CA_KEY_FILE]
    cert_path, key_path = paths[CERT_FILE], paths[KEY_FILE]
    have = {f for f, p in paths.items() if p.exists()}

    if have >= {CA_FILE, CERT_FILE, KEY_FILE} and CA_KEY_FILE not in have:
        # a CA we cannot sign with: use the pair as it is
        loaded = load_server_certificate(cert_path, key_path, ca_path)
        _warn_if_lacking(loaded, names, now, cert_path, what)
        return loaded

    ca: tuple[PrivateKey, x509.Certificate] | None = None
    if {CA_FILE, CA_KEY_FILE} <= have:
        ca_key_loaded = _read_key(ca_key_path)
        ca_cert_loaded = _read_certs(ca_path)[0]
        if spki(ca_key_loaded.public_key()) != spki(ca_cert_loaded.public_key()):
            raise ServerTLSError(f"key {ca_key_path} does not match certificate {ca_path}")
        if ca_cert_loaded.not_valid_after_utc - now < SERVER_VALIDITY:
            log.warning("the %s CA in %s expires soon: making a new CA", what, ca_path)
        else:
            ca = (ca_key_loaded, ca_cert_loaded)
    elif have:
        log.warning(
            "incomplete %s certificate files in %s (missing %s): making new ones",
            what,
            directory,
            ", ".join(sorted(set(paths) - have)),
        )

    if ca is not None and {CERT_FILE, KEY_FILE} <= have:
        try:
            loaded = load_server_certificate(cert_path, key_path, ca_path)
        except ServerTLSError as e:
            log.warning("%s: making a new server certificate", e)
        else:
            leaf = x509.load_pem_x509_certificates(loaded.cert_pem)[0]
            problem = _lacks(leaf, names, now) or _not_issued_by(leaf, ca[1])
            if problem is None:
                return loaded
            log.info("%s certificate %s %s: issuing a new one", what, cert_path, problem)

    if ca is None:
        ca = _new_ca(now)
        _write(ca_key_path, private_key_pem(ca[0]), secret=True)
        _write(ca_path, ca[1].public_bytes(serialization.Encoding.PEM), secret=False)
        log.info("created the %s CA %s", what, ca_path)
    key, cert = _new_server_cert(ca[0], ca[1], names, now)
    _write(key_path, private_key_pem(key), secret=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), secret=False)
    log.info("created the %s certificate %s for %s", what, cert_path, ", ".join(names))
    return _result(cert, key, ca[1], ca_path)


def load_server_certificate(
    cert_file: Path | str, key_file: Path | str, ca_file: Path | str | None = None
) -> ServerCertificate:
    """A user-given certificate (PEM, leaf first, chain may follow) and its key. The CA agents
    should trust is ``ca_file`` when given, else the last certificate of the chain, else the
    leaf itself when self-signed, else unknown (empty ``ca_pem``)."""
    cert_path, key_path = Path(cert_file), Path(key_file)
    certs = _read_certs(cert_path)
    key = _read_key(key_path)
    if spki(key.public_key()) != spki(certs[0].public_key()):
        raise ServerTLSError(f"key {key_path} does not match certificate {cert_path}")
    ca_path = Path(ca_file) if ca_file is not None else None
    if ca_path is not None:
        ca_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in _read_certs(ca_path))
    elif len(certs) > 1 or certs[0].issuer == certs[0].subject:
        ca_pem = certs[-1].public_bytes(serialization.Encoding.PEM)
    else:
        ca_pem = b""
    return ServerCertificate(
        cert_pem=b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs),
        key_pem=private_key_pem(key),
        ca_pem=ca_pem,
        ca_path=ca_path,
    )


def server_names(hostnames: list[str]) -> list[str]:
    """Default names, this host's name and ``hostnames``: stripped, distinct, in order."""
    out: dict[str, None] = {}
    for raw in [*DEFAULT_NAMES, socket.gethostname(), *hostnames]:
        name = raw.strip().strip("[]").lower()  # "[::1]" as written in URLs
        if name and name.isascii():
            out.setdefault(name, None)
    return list(out)


# --- helpers ------------------------------------------------------------------------------


def _general_names(names: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def _new_ca(now: datetime) -> tuple[PrivateKey, x509.Certificate]:
    key = new_private_key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kumadp"),
        ]
    )
    cert = build_ca_certificate(
        key, subject, not_before=now - BACKDATE, not_after=now + CA_VALIDITY, path_length=0
    )
    return key, cert


def _new_server_cert(
    ca_key: PrivateKey, ca_cert: x509.Certificate, names: list[str], now: datetime
) -> tuple[PrivateKey, x509.Certificate]:
    key = new_private_key()
    public_key = key.public_key()
    cert = build_leaf_certificate(
        ca_key,
        ca_cert,
        public_key,
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_COMMON_NAME)]),
        names=_general_names(names),
        not_before=now - BACKDATE,
        not_after=min(now + SERVER_VALIDITY, ca_cert.not_valid_after_utc),
        usages=[ExtendedKeyUsageOID.SERVER_AUTH],
    )
    return key, cert


def _result(
    cert: x509.Certificate, key: PrivateKey, ca_cert: x509.Certificate, ca_path: Path | None
) -> ServerCertificate:
    return ServerCertificate(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=private_key_pem(key),
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        ca_path=ca_path,
    )


def _lacks(cert: x509.Certificate, names: list[str], now: datetime) -> str | None:
    """Why ``cert`` will not do for ``names`` (None when it will)."""
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    if cert.not_valid_after_utc - now < life / 3:
        return f"expires at {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "has no subject alternative names"
    have = set(san.get_values_for_type(x509.DNSName))
    have |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    missing = [n for n in names if str(_normal(n)) not in have]
    if missing:
        return f"does not cover {', '.join(missing)}"
    return None


def _normal(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def _not_issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> str | None:
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (InvalidSignature, ValueError, TypeError) as e:
        return f"is not signed by the CA ({type(e).__name__})"
    return None


def _warn_if_lacking(
    loaded: ServerCertificate, names: list[str], now: datetime, path: Path, what: str
) -> None:
    leaf = x509.load_pem_x509_certificates(loaded.cert_pem)[0]
    problem = _lacks(leaf, names, now)
    if problem is not None:
        log.warning("%s certificate %s %s (no ca.key to issue a new one)", what, path, problem)


def _read_certs(path: Path) -> list[x509.Certificate]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ServerTLSError(f"cannot read TLS certificate file {path}: {e.strerror}") from e
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise ServerTLSError(f"{path}: not a PEM certificate") from e
    return certs


def _read_key(path: Path) -> PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ServerTLSError(f"cannot read TLS key file {path}: {e.strerror}") from e
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise ServerTLSError(f"{path}: not an unencrypted PEM private key") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ServerTLSError(f"{path}: unsupported key type {type(key).__name__}")
    return key


def _write(path: Path, data: bytes, *, secret: bool) -> None:
    """Write ``data`` to ``path`` atomically (0600 for secrets, else 0644)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600 if secret else 0o644)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as e:
        raise ServerTLSError(f"cannot write {path}: {e.strerror or e}") from e


__all__ = [
    "ServerCertificate",
    "ServerTLSError",
    "ensure_server_certificate",
    "load_server_certificate",
    "server_names",
]
