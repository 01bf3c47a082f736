"""The control plane's configuration (what ``kumadp cp run`` flags set)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kumadp.cp.store.postgres_settings import PostgresSettings

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
    # PostgreSQL and several instances
    postgres: PostgresSettings | None = None  # --store postgres: how to connect
    leader_lease: float = 3.0  # a leader silent this long loses the lease
    instance_id: str | None = None  # default: <hostname>-<pid>


__all__ = ["GLOBAL", "MODES", "STANDALONE", "ZONE", "ControlPlaneConfig"]
