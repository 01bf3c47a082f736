"""The snapshot cache: the latest snapshot per node id, and a way to wait for a newer one.

The cache knows nothing about servers or streams. Readers wait with ``next_snapshot`` (no
polling: one ``asyncio.Event`` per node, replaced on every change); cancelling the waiting
task is how a watch is cancelled. Use it from the event loop's thread only.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from kumadp.xds.snapshot import Snapshot

log = logging.getLogger(__name__)


@dataclass
class _Node:
    snapshot: Snapshot | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    waiters: int = 0


class SnapshotCache:
    def __init__(self) -> None:
        self._nodes: dict[str, _Node] = {}

    def set_snapshot(self, node_id: str, snapshot: Snapshot) -> bool:
        """Make ``snapshot`` the node's current one and wake its waiters. A snapshot with the
        same versions as the current one is ignored. Returns whether anything changed."""
        node = self._nodes.setdefault(node_id, _Node())
        if node.snapshot is not None and node.snapshot.versions == snapshot.versions:
            return False
        log.debug("snapshot for %s: %r", node_id, snapshot)
        node.snapshot = snapshot
        self._wake(node)
        return True

    def get_snapshot(self, node_id: str) -> Snapshot | None:
        node = self._nodes.get(node_id)
        return node.snapshot if node is not None else None

    def clear(self, node_id: str) -> None:
        """Forget the node's snapshot. Open streams keep what they sent and wait for the next
        snapshot set for the node."""
        node = self._nodes.get(node_id)
        if node is None:
            return
        node.snapshot = None
        if node.waiters == 0:
            del self._nodes[node_id]

    def node_ids(self) -> list[str]:
        return sorted(n for n, node in self._nodes.items() if node.snapshot is not None)

    async def next_snapshot(self, node_id: str, known: object | None) -> Snapshot:
        """Return the node's current snapshot as soon as there is one that is not ``known``
        (compared by identity): at once if there already is, else when one is set."""
        node = self._nodes.setdefault(node_id, _Node())
        node.waiters += 1
        try:
            while node.snapshot is None or node.snapshot is known:
                await node.changed.wait()
            return node.snapshot
        finally:
            node.waiters -= 1
            if node.waiters == 0 and node.snapshot is None and self._nodes.get(node_id) is node:
                del self._nodes[node_id]

    @staticmethod
    def _wake(node: _Node) -> None:
        node.changed.set()
        node.changed = asyncio.Event()
