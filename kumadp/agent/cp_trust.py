"""Which control planes the agent asks, and how the DP server is trusted.

- The CP addresses are tried in order for the bootstrap (``--cp-address`` repeated, or one);
  each must be an http:// or https:// URL.
- The bootstrap client verifies https CPs with ``--ca-cert-file`` when given, else with the
  system trust store.
- The bootstrap request carries the CA Envoy is to trust for the DP server (``caCert``):
  ``--ca-cert-file``'s content when given; without it, the system bundle for an https CP
  (Envoy verifies the DP server as the agent did), and nothing for a plain-http CP, whose
  bootstrap then carries the DP server's CA. That is the http channel's own trust on
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


def check_cp_addresses(addresses: Sequence[str]) -> None:
    for address in addresses:
        url = urlsplit(address)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(
                f"--cp-address: {address!r} is not an http:// or https:// URL "
                "(the control plane's API, e.g. http://127.0.0.1:5681)"
            )


def cp_verify(ca_cert_file: str | None) -> bool | ssl.SSLContext:
    """How the bootstrap client verifies an https CP."""
    if ca_cert_file:
        return ssl.create_default_context(cafile=ca_cert_file)
    return True


def dp_server_ca(cp_address: str, ca_cert: str) -> str:
    """The CA Envoy is to trust for the DP server, sent in the bootstrap request to
    ``cp_address``: ``ca_cert`` (``--ca-cert-file``'s content) when given; else the trust
    of that channel is explained in the log and the system bundle is sent for https."""
    if ca_cert:
        return ca_cert
    explain_cp_trust(cp_address)
    if cp_address.startswith("https:"):
        return system_trust_bundle()
    return ""


def system_trust_bundle() -> str:
    """The system's CA bundle as PEM, so Envoy verifies the DP server like the agent did."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_text(encoding="utf-8", errors="replace")
    return ""


def explain_cp_trust(cp_address: str) -> None:
    url = urlsplit(cp_address)
    if url.scheme == "https":
        log.info("verifying the DP server with the system trust store (no --ca-cert-file)")
        return
    host = url.hostname or ""
    loopback = host == "localhost" or host.startswith("127.") or host == "::1"
    if loopback:
        log.info(
            "trusting the DP server CA carried by the bootstrap: it came over plain http on "
            "loopback, the same trust as the http channel itself (--ca-cert-file to pin one)"
        )
    else:
        log.warning(
            "trusting the DP server CA carried by a bootstrap that came over plain http from "
            "%s: anyone on the path could swap it; use https or --ca-cert-file",
            host,
        )
