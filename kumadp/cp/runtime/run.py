"""``run_control_plane``: prepare the private data dir, open the store (private keys sealed
when a secrets key is given), seed it, run the control plane, close the store (the last
shutdown step)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from kumadp.cp.data_dir import prepare_data_dir, restrict_store_files
from kumadp.cp.defaults import ensure_default_mesh
from kumadp.cp.runtime.config import ControlPlaneConfig
from kumadp.cp.runtime.control_plane import ControlPlane
from kumadp.cp.secrets import SealedStore, load_secrets_key
from kumadp.cp.store import SQLITE_FILE_NAME, open_store

log = logging.getLogger(__name__)


async def run_control_plane(config: ControlPlaneConfig, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set (then shut down in phases) or a component fails."""
    ControlPlane.check_mode(config.mode)  # before anything is opened
    secrets_key = load_secrets_key(config.secrets_key_file)
    data_dir = Path(config.data_dir) if config.data_dir is not None else None
    if data_dir is not None:
        prepare_data_dir(data_dir, SQLITE_FILE_NAME if config.store == "sqlite" else None)
    store = SealedStore(open_store(config.store, data_dir), secrets_key)
    try:
        if data_dir is not None:
            restrict_store_files(data_dir)
        await store.prepare()
        if secrets_key is None and config.store != "memory":
            log.info("private keys in the store are not encrypted (see --secrets-key-file)")
        await ensure_default_mesh(store)
        cp = ControlPlane(config, store)
        if cp.tls is not None:
            where = f" (also at {cp.tls.ca_path})" if cp.tls.ca_path else ""
            log.info(
                "DP server CA%s; agents can fetch it from GET /certs/dp-server-ca.pem:\n%s",
                where,
                cp.tls.ca_pem.decode().strip(),
            )
        if config.dp_auth == "none":
            log.warning("--dp-auth none: any process that can reach the CP may join a mesh")
        await cp.write_bootstrap_admin_token()
        _log_api_security(config)
        log.info(
            "control plane starting (%s): API :%d (HTTPS :%s), DP server :%d, diagnostics :%d, "
            "store %s",
            config.mode,
            config.api_port,
            config.api_https_port or "off",
            config.dp_port,
            config.diagnostics_port,
            config.store,
        )
        await cp.run(stop)
    finally:
        log.info("shutdown: closing the store")
        await store.close()


def _log_api_security(config: ControlPlaneConfig) -> None:
    log.info(
        "API access: writes, tokens and config dumps need an admin (%s); anonymous callers %s",
        "user tokens of mesh-system:admin"
        + (", loopback callers with a loopback Host" if config.localhost_is_admin else ""),
        "may read non-secret resources" if config.api_anonymous_read else "are refused",
    )


__all__ = ["run_control_plane"]
