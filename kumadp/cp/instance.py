"""Who this control plane is, as Kuma's API says it (``GET /``): ``instanceId``, this
process (the id its dataplane insights name, ``<hostname>-<pid>``), and ``clusterId``, the
control plane cluster (every instance sharing one store): a UUID made once and kept in the
store (Kuma's ``Config`` resource ``kuma-cluster-id``)."""

from __future__ import annotations

import asyncio
import logging
import uuid

from kumadp.cp.insights import control_plane_instance_id
from kumadp.cp.store.base import ConflictError, Store
from kumadp.resources.registry import CONFIG_TYPE

log = logging.getLogger(__name__)

CLUSTER_ID_NAME = "kuma-cluster-id"


class CpInstance:
    """This instance's id and (read or made once, then cached) its cluster's id."""

    def __init__(
        self,
        store: Store,
        instance_id: str | None = None,
        *,
        mode: str = "standalone",
        zone: str | None = None,
    ) -> None:
        self._store = store
        self.instance_id = instance_id or control_plane_instance_id()
        self.mode = mode  # standalone, global or zone
        self.zone = zone  # a zone CP's zone
        self._cluster_id: str | None = None
        self._lock = asyncio.Lock()

    async def cluster_id(self) -> str:
        if self._cluster_id is not None:
            return self._cluster_id
        async with self._lock:
            if self._cluster_id is None:
                self._cluster_id = await _ensure_cluster_id(self._store)
        return self._cluster_id


async def _ensure_cluster_id(store: Store) -> str:
    for _ in range(3):
        stored = await store.get(CONFIG_TYPE, "", CLUSTER_ID_NAME)
        if stored is not None and isinstance(stored.spec.get("config"), str):
            return str(stored.spec["config"])
        made = str(uuid.uuid4())
        spec = {"type": CONFIG_TYPE, "name": CLUSTER_ID_NAME, "config": made}
        try:
            await store.put(CONFIG_TYPE, "", CLUSTER_ID_NAME, spec, 0)
        except ConflictError:
            continue  # another instance made it first: read theirs
        log.info("control plane cluster id %s", made)
        return made
    raise RuntimeError("could not read or store the control plane's cluster id")


__all__ = ["CLUSTER_ID_NAME", "CpInstance"]
