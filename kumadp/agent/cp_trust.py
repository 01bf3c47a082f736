"""Which control planes the agent asks, and how the DP server is trusted.

- The CP addresses are tried in order for the bootstrap (``--cp-address`` repeated, or one);
  each must be an http:// or https:// URL: Kuma's form, the DP server port
  (``https://HOST:5678``, kuma-dp's default ``https://localhost:5678``), or the API port
  (``http://HOST:5681``). Both serve ``POST /bootstrap``.
- The bootstrap client verifies https CPs as kuma-dp 2.14 does: with ``--ca-cert-file``
  (or the PEM in ``KUMA_CONTROL_PLANE_CA_CERT``) when given, else with the system trust
  store; ``--skip-verify`` turns verification off (insecure; warned).
- The bootstrap request carries the CA Envoy is to trust for the DP server (``caCert``): the
  given CA; without it, the system bundle for a verified https CP (Envoy verifies the DP
  server as the agent did), and nothing for a plain-http CP or under ``--skip-verify``,
  whose bootstrap then carries the DP server's CA. That is the channel's own trust: fine on
  loopback; anywhere else it is logged as a warning, since anyone on the path could swap it.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from kumadp.agent.errors import ConfigError

log = logging.getLogger(__name__)


def cp_addresses(addresses: Sequence[str], default: str) -> list[str]:
    """The CP addresses in the order to try them (``addresses``, else ``default``)."""
    return list(addresses) or [default]


DEFAULT_CP_ADDRESS = "https://localhost:5678"  # kuma-dp's: the DP server port

CA_HINT = (
    "pass --ca-cert-file with the control plane's CA (its API serves it: GET "
    "/certs/dp-server-ca.pem; on the CP's host it is <data-dir>/dp-server/ca.pem) or "
    "KUMA_CONTROL_PLANE_CA_CERT_FILE, or --skip-verify (KUMA_CONTROL_PLANE_TLS_SKIP_VERIFY) "
    "not to verify it (insecure)"
)


def check_cp_addresses(addresses: Sequence[str]) -> None:
    for address in addresses:
        url = urlsplit(address)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(
                f"--cp-address: {address!r} is not an http:// or https:// URL (the control "
                "plane's DP server, e.g. https://cp:5678, or its API, e.g. http://cp:5681)"
            )


def cp_verify(ca_cert: str, skip_verify: bool = False) -> bool | ssl.SSLContext:
    """How the bootstrap client verifies an https CP: ``ca_cert`` (PEM) when given, else
    the system trust store; nothing under ``skip_verify``."""
    if skip_verify:
        log.warning("--skip-verify is set: the control plane's certificate is not verified")
        return False
    if ca_cert:
        try:
            return ssl.create_default_context(cadata=ca_cert)
        except ssl.SSLError as exc:
            raise ConfigError(f"--ca-cert-file: not a PEM CA certificate ({exc})") from exc
    return True


def dp_server_ca(cp_address: str, ca_cert: str, skip_verify: bool = False) -> str:
    """The CA Envoy is to trust for the DP server, sent in the bootstrap request to
    ``cp_address``: ``ca_cert`` when given; else the trust of that channel is explained in
    the log and the system bundle is sent for a verified https CP."""
    if ca_cert:
        return ca_cert
    explain_cp_trust(cp_address, skip_verify)
    if cp_address.startswith("https:") and not skip_verify:
        return system_trust_bundle()
    return ""


def system_trust_bundle() -> str:
    """The system's CA bundle as PEM, so Envoy verifies the DP server like the agent did."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_text(encoding="utf-8", errors="replace")
    return ""


def explain_cp_trust(cp_address: str, skip_verify: bool = False) -> None:
    url = urlsplit(cp_address)
    if url.scheme == "https" and not skip_verify:
        log.info("verifying the DP server with the system trust store (no --ca-cert-file)")
        return
    how = "an unverified https connection" if url.scheme == "https" else "plain http"
    host = url.hostname or ""
    loopback = host == "localhost" or host.startswith("127.") or host == "::1"
    if loopback:
        log.info(
            "trusting the DP server CA carried by the bootstrap: it came over %s on "
            "loopback, the same trust as that channel itself (--ca-cert-file to pin one)",
            how,
        )
    else:
        log.warning(
            "trusting the DP server CA carried by a bootstrap that came over %s from "
            "%s: anyone on the path could swap it; use --ca-cert-file",
            how,
            host,
        )
