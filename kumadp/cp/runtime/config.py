"""The control plane's configuration (what ``kumadp cp run`` flags set)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kumadp.cp.store.postgres_settings import PostgresSettings
from kumadp.resources.errors import ValidationError
from kumadp.resources.zones import check_zone_name

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
    # multi-zone
    zone: str | None = None  # --zone (zone mode)
    kds_global_address: str | None = None  # grpcs://HOST:5685 (zone mode)
    kds_ca_file: Path | None = None  # the global CP's KDS CA (zone mode)
    kds_skip_verify: bool = False
    kds_port: int = 5685  # (global mode)
    kds_tls_cert_file: Path | None = None  # default: generated in <data dir>/kds-server
    kds_tls_key_file: Path | None = None
    zone_health_timeout: float = 20.0  # a zone silent this long is Offline (global mode)
    kds_stuck_timeout: float = 30.0  # a zone -> global stream unanswered this long: re-dial
    kds_auth: str = "cpToken"  # (global mode) zone CPs present a zone token; "none": labs
    kds_token: str | None = None  # (zone mode) the zone token, inline
    kds_token_file: Path | None = None  # (zone mode) the zone token's file
    zone_ca_validity: float = 30 * 86400.0  # (global mode) zone intermediate CAs' lifetime

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

    def check(self) -> None:
        """Raise ValueError (naming the flag) for a configuration that cannot run."""
        if self.mode not in MODES:
            raise ValueError(f"--mode: must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.mode == ZONE:
            if not self.zone:
                raise ValueError("--zone: required with --mode zone (the zone's name)")
            try:
                check_zone_name(self.zone, "--zone")
            except ValidationError as exc:
                raise ValueError(str(exc)) from None
            if not self.kds_global_address:
                raise ValueError(
                    "--kds-global-address: required with --mode zone (grpcs://HOST:5685)"
                )
            if self.kds_ca_file is not None and self.kds_skip_verify:
                raise ValueError("--kds-ca-file and --kds-skip-verify exclude each other")
            if self.kds_token and self.kds_token_file is not None:
                raise ValueError(
                    "--kds-token-file (KUMA_MULTIZONE_ZONE_KDS_AUTH_TOKEN_PATH) and --kds-token "
                    "(KUMA_MULTIZONE_ZONE_KDS_AUTH_TOKEN_INLINE) exclude each other: give one"
                )
        elif self.zone or self.kds_global_address:
            raise ValueError("--zone and --kds-global-address are for --mode zone only")
        if bool(self.kds_tls_cert_file) != bool(self.kds_tls_key_file):
            raise ValueError("--kds-tls-cert-file and --kds-tls-key-file go together")
        if self.zone_health_timeout <= 0:
            raise ValueError("--zone-health-timeout: must be longer than 0")
        if self.kds_auth not in ("cpToken", "none"):
            raise ValueError(f"--kds-auth: must be cpToken or none, not {self.kds_auth!r}")
        if self.zone_ca_validity < 60:
            raise ValueError("--zone-ca-validity: must be at least 1m")


__all__ = ["GLOBAL", "MODES", "STANDALONE", "ZONE", "ControlPlaneConfig"]
