"""The control plane's configuration as Kuma's ``GET /config`` shows its own: the same key
names (``apiServer.http.port``, ``dpServer.authn.dpProxy.type``...) for what kumadp has."""

from __future__ import annotations

from typing import Any

from kumadp.cp.runtime.config import ControlPlaneConfig


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


def config_document(config: ControlPlaneConfig) -> dict[str, Any]:
    """No secret is in it: file paths only."""
    api_interface = getattr(config, "api_address", None) or config.address
    return {
        "environment": "universal",
        "mode": config.mode,
        "store": {"type": config.store},
        "general": {
            "workDir": str(config.data_dir or ""),
            "tlsCertFile": str(config.tls_cert_file or ""),
            "tlsKeyFile": str(config.tls_key_file or ""),
        },
        "apiServer": {
            "http": {"enabled": True, "interface": api_interface, "port": config.api_port}
        },
        "dpServer": {
            "interface": config.address,
            "port": config.dp_port,
            "tlsCertFile": str(config.tls_cert_file or ""),
            "tlsKeyFile": str(config.tls_key_file or ""),
            "authn": {"dpProxy": {"type": config.dp_auth}},
        },
        "bootstrapServer": {
            "params": {"xdsHost": config.xds_host or "", "xdsPort": config.dp_port}
        },
        "xdsServer": {"dataplaneDeregistrationDelay": _duration(config.deregistration_delay)},
        "diagnostics": {"serverPort": config.diagnostics_port},
        "dnsServer": {"CIDR": config.vip_cidr},
    }


__all__ = ["config_document"]
