"""Dataplane registration in the control plane: a small state machine per dataplane
(pending -> serving -> left / deregistered). Not to be confused with ``kumadp.lifecycle``
(components and their supervision).

- An agent registers its dataplane at bootstrap. Until that dataplane's Envoy has ACKed its
  first listeners it is *pending*: other sidecars do not get it as an endpoint yet, so no
  request is sent to a port nobody listens on. (Kuma adds it at once.)
- A registration whose xDS stream never comes (the agent bootstrapped, then died or never
  started Envoy) is deleted after the deregistration delay, as a dropped one is: a bootstrap
  request alone leaves nothing behind. (Kuma registers at the first stream instead; a
  stream that opens for an agent-registered dataplane that is gone re-registers it from the
  resource its bootstrap put into Envoy's node metadata, ``restore``, so the outcome is
  Kuma's either way.)
- A graceful agent stop (``Leave``) deletes the dataplane at once, so every other sidecar
  stops sending it new requests; its own Envoy keeps its last config while it drains.
- When the last xDS stream of an agent-registered dataplane closes without a Leave, the
  dataplane is deleted after the deregistration delay unless a stream came back.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from kumadp.cp.store.base import ConflictError, Store
from kumadp.resources import ValidationError, parse_dataplane
from kumadp.resources.model import DATAPLANE_TYPE

log = logging.getLogger(__name__)

LIFECYCLE_LABEL = "kumadp.io/lifecycle"
LIFECYCLE_AGENT = "agent"

NodeKey = tuple[str, str]  # (mesh, name)


def parse_node_id(node_id: str) -> NodeKey | None:
    """``<mesh>.<name>``; mesh names are DNS labels, so the first dot splits them."""
    mesh, sep, name = node_id.partition(".")
    if not sep or not mesh or not name:
        return None
    return mesh, name


class DataplaneRegistry:
    def __init__(
        self,
        store: Store,
        *,
        deregistration_delay: float = 10.0,
        on_readiness_change: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._delay = deregistration_delay
        self._on_readiness_change = on_readiness_change
        self._streams: dict[NodeKey, int] = {}
        self._pending: set[NodeKey] = set()
        self._timers: dict[NodeKey, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- queries -----------------------------------------------------------------------
    def is_pending(self, key: NodeKey) -> bool:
        return key in self._pending

    async def pending(self, mesh: str) -> set[str]:
        """The names of the mesh's dataplanes whose listeners are not up yet."""
        return {name for m, name in self._pending if m == mesh}

    def is_connected(self, key: NodeKey) -> bool:
        return self._streams.get(key, 0) > 0

    # -- events ------------------------------------------------------------------------
    async def registering(self, key: NodeKey) -> None:
        """The agent's bootstrap is about to store its dataplane (the shared registry records
        it as pending first; here ``registered`` does it)."""

    def registered(self, key: NodeKey, *, created: bool) -> None:
        """The agent bootstrapped. A new dataplane stays pending until its listeners are up;
        without an xDS stream within the deregistration delay it is removed."""
        self._cancel_timer(key)
        if created or not self.is_connected(key):
            self._pending.add(key)
        if not self.is_connected(key):
            self._arm(key, "no xDS stream came after its bootstrap")

    async def restore(self, key: NodeKey, resource_json: str) -> bool:
        """An xDS stream opened for a dataplane that is not stored (deregistered while its
        Envoy was away, or never stored): re-register it from ``resource_json``, the resource
        its bootstrap put into Envoy's node metadata, when that resource came from an agent
        (it carries the agent lifecycle label; one created through the API and deleted
        there stays deleted). True when it is stored now."""
        try:
            doc = json.loads(resource_json) if resource_json else None
            dataplane = parse_dataplane(doc) if isinstance(doc, dict) else None
        except (ValueError, ValidationError) as exc:
            log.warning("dataplane %s.%s: node metadata holds no valid resource: %s", *key, exc)
            return False
        if dataplane is None or (dataplane.mesh, dataplane.name) != key:
            return False
        if dataplane.labels.get(LIFECYCLE_LABEL) != LIFECYCLE_AGENT:
            return False
        try:
            await self._store.put(DATAPLANE_TYPE, *key, dataplane.to_dict(), 0)
        except ConflictError:
            return True  # stored meanwhile (a bootstrap)
        self._pending.add(key)
        log.info("dataplane %s.%s re-registered by its xDS stream", *key)
        return True

    def stream_opened(self, key: NodeKey) -> None:
        self._streams[key] = self._streams.get(key, 0) + 1
        self._cancel_timer(key)

    def listeners_acked(self, key: NodeKey) -> None:
        if key in self._pending:
            self._pending.discard(key)
            log.info("dataplane %s.%s is serving: adding it to the mesh's endpoints", *key)
            if self._on_readiness_change:
                self._on_readiness_change(key[0])

    def stream_closed(self, key: NodeKey) -> None:
        count = self._streams.get(key, 0) - 1
        if count > 0:
            self._streams[key] = count
            return
        self._streams.pop(key, None)
        self._arm(key, "its connection has been gone")

    async def leave(self, key: NodeKey) -> bool:
        """Graceful stop of the agent: remove the dataplane now."""
        self._cancel_timer(key)
        self._pending.discard(key)
        removed = await self._store.delete(DATAPLANE_TYPE, *key)
        log.info("dataplane %s.%s left the mesh%s", *key, "" if removed else " (was not stored)")
        return removed

    def close(self) -> None:
        for key in list(self._timers):
            self._cancel_timer(key)
        for task in self._tasks:
            task.cancel()

    # -- internals ---------------------------------------------------------------------
    def _cancel_timer(self, key: NodeKey) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _arm(self, key: NodeKey, why: str) -> None:
        """Deregister ``key`` after the delay unless a stream opens (``why``: for the log)."""
        self._cancel_timer(key)
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(self._delay, self._expire, key, why)

    def _expire(self, key: NodeKey, why: str) -> None:
        self._timers.pop(key, None)
        if self.is_connected(key):
            return
        task = asyncio.get_running_loop().create_task(self._deregister(key, why))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deregister(self, key: NodeKey, why: str) -> None:
        stored = await self._store.get(DATAPLANE_TYPE, *key)
        if stored is None or self.is_connected(key):
            return
        labels = stored.spec.get("labels") or {}
        if labels.get(LIFECYCLE_LABEL) != LIFECYCLE_AGENT:
            return  # created through the API: its owner deletes it
        self._pending.discard(key)
        await self._store.delete(DATAPLANE_TYPE, *key)
        log.info("dataplane %s.%s deregistered: %s for %gs", key[0], key[1], why, self._delay)
