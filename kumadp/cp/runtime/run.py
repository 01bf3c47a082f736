"""``run_control_plane``: open the store, seed it, run the control plane, close the store
(the last shutdown step)."""

from __future__ import annotations

import asyncio
import logging

from kumadp.cp.defaults import ensure_default_mesh
from kumadp.cp.runtime.config import ZONE, ControlPlaneConfig
from kumadp.cp.runtime.control_plane import ControlPlane
from kumadp.cp.store import open_store

log = logging.getLogger(__name__)


async def run_control_plane(config: ControlPlaneConfig, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set (then shut down in phases) or a component fails."""
    ControlPlane.check_mode(config.mode)  # before anything is opened
    config.check()
    store = open_store(config.store, config.data_dir)
    try:
        if config.mode != ZONE:  # a zone's meshes come from the global CP
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
        log.info(
            "control plane starting (%s): API :%d, DP server :%d, diagnostics :%d, store %s",
            config.mode,
            config.api_port,
            config.dp_port,
            config.diagnostics_port,
            config.store,
        )
        if cp.global_kds is not None:
            log.info(
                "global control plane: zones connect to KDS on :%d (TLS); its CA%s:\n%s",
                config.kds_port,
                f" (also at {cp.global_kds.tls.ca_path})" if cp.global_kds.tls.ca_path else "",
                cp.global_kds.tls.ca_pem.decode().strip(),
            )
        if config.mode == ZONE:
            log.info(
                "zone control plane %s: syncing with the global control plane at %s",
                config.zone,
                config.kds_global_address,
            )
        await cp.run(stop)
    finally:
        log.info("shutdown: closing the store")
        await store.close()


__all__ = ["run_control_plane"]
