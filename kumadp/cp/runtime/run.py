"""``run_control_plane``: prepare the private data dir, open the store (private keys sealed
when a secrets key is given), seed it, run the control plane, close the store (the last
shutdown step)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from kumadp.cp.data_dir import prepare_data_dir, restrict_store_files
from kumadp.cp.defaults import ensure_default_mesh
from kumadp.cp.election import AlwaysLeader, Election
from kumadp.cp.insights import control_plane_instance_id
from kumadp.cp.runtime.config import ZONE, ControlPlaneConfig
from kumadp.cp.runtime.control_plane import ControlPlane
from kumadp.cp.runtime.modes import check_mode, components_for
from kumadp.cp.runtime.servers import write_bootstrap_admin_token
from kumadp.cp.secrets import SealedStore, load_secrets_key
from kumadp.cp.store import SQLITE_FILE_NAME, open_store
from kumadp.cp.store.base import Store

log = logging.getLogger(__name__)


async def run_control_plane(config: ControlPlaneConfig, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set (then shut down in phases) or a component fails."""
    check_mode(config.mode)  # before anything is opened
    config.check()
    secrets_key = load_secrets_key(config.secrets_key_file)
    data_dir = Path(config.data_dir) if config.data_dir is not None else None
    if data_dir is not None:
        prepare_data_dir(data_dir, SQLITE_FILE_NAME if config.store == "sqlite" else None)
    raw_store = await open_store(config.store, data_dir, config.postgres)
    store = SealedStore(raw_store, secrets_key)
    try:
        if data_dir is not None:
            restrict_store_files(data_dir)
        await store.prepare()
        if secrets_key is None and config.store != "memory":
            log.info("private keys in the store are not encrypted (see --secrets-key-file)")
        if config.mode != ZONE:  # a zone's meshes come from the global CP
            await ensure_default_mesh(store)
        cp = ControlPlane(config, store, _election(config, raw_store))
        await cp.instance.cluster_id()  # made once per store, at start (not by a GET /)
        if cp.tls is not None:
            where = f" (also at {cp.tls.ca_path})" if cp.tls.ca_path else ""
            log.info(
                "DP server CA%s; agents can fetch it from GET /certs/dp-server-ca.pem:\n%s",
                where,
                cp.tls.ca_pem.decode().strip(),
            )
        if config.dp_auth == "none":
            log.warning("--dp-auth none: any process that can reach the CP may join a mesh")
        if config.mode != ZONE:  # a zone signs no tokens: its admins' come from global
            await write_bootstrap_admin_token(config, cp.user_tokens)
        _log_api_security(config)
        log.info(
            "control plane %s starting (%s): API :%d (HTTPS :%s), DP server :%d, "
            "diagnostics :%d, store %s",
            cp.instances.instance_id,
            config.mode,
            config.api_port,
            config.api_https_port or "off",
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
        await cp.run(components_for(cp, config.mode), stop)
    finally:
        log.info("shutdown: closing the store")
        await store.close()


def _election(config: ControlPlaneConfig, store: Store) -> Election:
    """A lease on PostgreSQL (several instances may share it); else this instance leads."""
    instance_id = config.instance_id or control_plane_instance_id()
    if config.store == "postgres":
        from kumadp.cp.store.postgres import PostgresStore
        from kumadp.cp.store.postgres_election import PostgresElection

        if not isinstance(store, PostgresStore):  # e.g. a layer over it: give it the store
            raise TypeError("the leader election needs the PostgreSQL store itself")
        config.instance_id = instance_id
        return PostgresElection(store, instance_id, lease=config.leader_lease)
    return AlwaysLeader(instance_id)


def _log_api_security(config: ControlPlaneConfig) -> None:
    log.info(
        "API access: writes, tokens and config dumps need an admin (%s); anonymous callers %s",
        "user tokens of mesh-system:admin"
        + (", loopback callers with a loopback Host" if config.localhost_is_admin else ""),
        "may read non-secret resources" if config.api_anonymous_read else "are refused",
    )


__all__ = ["run_control_plane"]
