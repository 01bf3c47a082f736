"""The control plane's configuration (what ``kumadp cp run`` flags set)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

STANDALONE = "standalone"
GLOBAL = "global"
ZONE = "zone"
MODES = (STANDALONE, GLOBAL, ZONE)


@dataclass
class ControlPlaneConfig:
    mode: str = STANDALONE
    store: str = "sqlite"
    data_dir: Path | None = None
    address: str = "0.0.0.0"
    api_port: int = 5681
    dp_port: int = 5678
    diagnostics_port: int = 5680
    xds_host: str | None = None  # host written into bootstraps; default: the one agents used
    deregistration_delay: float = 10.0
    debounce: float = 0.01
    dp_auth: str = "dpToken"
    tls_cert_file: Path | None = None  # the DP server's certificate; default: generated
    tls_key_file: Path | None = None
    dp_server_tls: bool = True
    vip_cidr: str = "240.0.0.0/4"
    loopback_cidr: str = "127.1.0.0/16"
    hostnames: list[str] = field(default_factory=list)
    # Bound of each shutdown phase (the DP server's own drain of open streams is 1 s).
    shutdown_phase_timeout: float = 5.0
    # API security (docs/security.md)
    api_address: str | None = None  # the HTTP API's bind address; None: ``address``
    api_https_port: int = 5682  # 0: no HTTPS API
    api_https_address: str | None = None  # None: ``api_address``
    api_tls_cert_file: Path | None = None  # the HTTPS API's certificate; default: the CP's
    api_tls_key_file: Path | None = None
    api_client_ca_file: Path | None = None  # client certificates it signed are admins
    api_require_client_cert: bool = False
    localhost_is_admin: bool = True
    api_anonymous_read: bool = True
    api_max_body_bytes: int = 1024 * 1024
    secrets_key_file: Path | None = None  # encrypts private keys in the store
    bootstrap_admin_token: bool = True  # write <data dir>/admin-user-token at start


__all__ = ["GLOBAL", "MODES", "STANDALONE", "ZONE", "ControlPlaneConfig"]
