"""The certificates of the control plane's TLS servers: the DP server's (given, else generated
in the data dir on first start) and the HTTPS API's (its own files, else the DP server's)."""

from __future__ import annotations

import ssl

from kumadp.cp.http_server import server_tls_context
from kumadp.cp.runtime.config import ControlPlaneConfig
from kumadp.cp.server_tls import (
    ServerCertificate,
    ensure_server_certificate,
    load_server_certificate,
)


def _generated_certificate(config: ControlPlaneConfig) -> ServerCertificate:
    hosts = [h for h in [config.xds_host, config.address, *config.hostnames] if h]
    return ensure_server_certificate(config.data_dir, [h for h in hosts if h != "0.0.0.0"])


def server_certificate(config: ControlPlaneConfig) -> ServerCertificate | None:
    """The DP server's certificate: given, else generated in the data dir."""
    if not config.dp_server_tls:
        return None
    if config.tls_cert_file or config.tls_key_file:
        if not (config.tls_cert_file and config.tls_key_file):
            raise ValueError("--tls-cert-file and --tls-key-file go together")
        return load_server_certificate(config.tls_cert_file, config.tls_key_file)
    return _generated_certificate(config)


def api_tls_context(
    config: ControlPlaneConfig, cp_certificate: ServerCertificate | None
) -> ssl.SSLContext:
    """The HTTPS API's TLS: its own certificate files, else the CP's (the DP server's)."""
    if config.api_tls_cert_file or config.api_tls_key_file:
        if not (config.api_tls_cert_file and config.api_tls_key_file):
            raise ValueError("--api-https-tls-cert-file and --api-https-tls-key-file go together")
        cert = load_server_certificate(config.api_tls_cert_file, config.api_tls_key_file)
    else:
        cert = cp_certificate or _generated_certificate(config)
    return server_tls_context(
        cert.cert_pem,
        cert.key_pem,
        client_ca=config.api_client_ca_file,
        require_client_cert=config.api_require_client_cert,
    )


__all__ = ["api_tls_context", "server_certificate"]
