"""What a CP sends over KDS, built from its store: a ``DeltaSource`` for ``kumadp.xds.delta``.

``StoreSource`` follows the store's change feed for the types of one direction (global ->
zone on the global CP, zone -> global on a zone CP), keeps every resource it owns packed
with its content version, and publishes an immutable ``KdsSnapshot`` after each batch of
changes: push on change, no rebuild tick. A change re-packs only the resources it touches,
and a snapshot shares the maps of the types that did not change with the one before, so
the delta server sends only what changed.

A CP sends only what it owns: what carries no ``kuma.io/origin`` label or its own origin;
copies it received from the other side are never sent back. Anything that looks like a
private key is refused by ``mapping.to_wire`` and logged.

A ``NodeFilter`` (the global CP's ``DisabledZones``) hides resources from some receivers:
each node gets a view of the snapshot without them, rebuilt when the filter changes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Protocol

from google.protobuf import any_pb2

from kumadp.cp.kds.mapping import MappingError, labels_of, resource_key, to_wire
from kumadp.cp.store.base import ChangeEvent, Store
from kumadp.cp.store.feed import next_changes
from kumadp.resources.registry import ResourceType
from kumadp.wire import kds as wire

log = logging.getLogger(__name__)


class NodeFilter(Protocol):
    """Which resources a receiving node must not get."""

    watched: tuple[str, ...]  # the store types whose changes change the filter

    async def reload(self) -> None: ...

    def hides(self, node_id: str, labels: Mapping[str, str]) -> bool: ...


class KdsSnapshot:
    """One immutable state of every type a CP sends (``VersionedResources``)."""

    __slots__ = ("_labels", "_packed", "_type_versions", "_versions", "type_urls")

    def __init__(
        self,
        type_urls: tuple[str, ...],
        packed: Mapping[str, Mapping[str, any_pb2.Any]],
        versions: Mapping[str, Mapping[str, str]],
        type_versions: Mapping[str, str],
        labels: Mapping[str, Mapping[str, Mapping[str, str]]] | None = None,
    ) -> None:
        self.type_urls = type_urls
        self._packed = packed
        self._versions = versions
        self._type_versions = type_versions
        self._labels = labels or {}

    def view(self, node_id: str, node_filter: NodeFilter) -> KdsSnapshot:
        """This snapshot without what ``node_filter`` hides from ``node_id`` (itself when
        nothing is hidden); a type's version names what was left out."""
        packed = dict(self._packed)
        versions = dict(self._versions)
        type_versions = dict(self._type_versions)
        hid = False
        for type_url, labels in self._labels.items():
            hidden = sorted(k for k, lb in labels.items() if lb and node_filter.hides(node_id, lb))
            if not hidden:
                continue
            hid = True
            gone = set(hidden)
            packed[type_url] = {k: v for k, v in self._packed[type_url].items() if k not in gone}
            versions[type_url] = {
                k: v for k, v in self._versions[type_url].items() if k not in gone
            }
            digest = hashlib.sha256("\n".join(hidden).encode()).hexdigest()[:12]
            type_versions[type_url] = f"{self._type_versions[type_url]}-{digest}"
        if not hid:
            return self
        return KdsSnapshot(self.type_urls, packed, versions, type_versions, self._labels)

    def version(self, type_url: str) -> str | None:
        return self._type_versions.get(type_url)

    def packed(self, type_url: str) -> Mapping[str, any_pb2.Any]:
        return self._packed.get(type_url, {})

    def resource_versions(self, type_url: str) -> Mapping[str, str]:
        return self._versions.get(type_url, {})

    def labels(self, type_url: str) -> Mapping[str, Mapping[str, str]]:
        return self._labels.get(type_url, {})

    def __len__(self) -> int:
        return sum(len(p) for p in self._packed.values())


class StoreSource:
    """Component: the resources of ``types`` this CP owns, as KDS snapshots."""

    def __init__(
        self,
        store: Store,
        types: Sequence[ResourceType],
        origin: str,
        *,
        node_filter: NodeFilter | None = None,
    ) -> None:
        self.name = f"kds-source-{origin}"
        self._filter = node_filter
        self._views: dict[str, tuple[KdsSnapshot, KdsSnapshot]] = {}  # node -> (base, view)
        self._store = store
        self._types = {t.name: t for t in types}
        self._order = tuple(t.name for t in types)  # a type's URL is its name
        self._origin = origin
        self._packed: dict[str, dict[str, any_pb2.Any]] = {t: {} for t in self._order}
        self._versions: dict[str, dict[str, str]] = {t: {} for t in self._order}
        self._labels: dict[str, dict[str, Mapping[str, str]]] = {t: {} for t in self._order}
        self._generation = {t: 0 for t in self._order}
        self._snapshot: KdsSnapshot | None = None
        self._changed = asyncio.Event()
        self.refused = 0  # resources never sent (a private key in them)

    # -- DeltaSource ---------------------------------------------------------------------
    def get_snapshot(self, node_id: str) -> KdsSnapshot | None:
        base = self._snapshot
        return None if base is None else self._view(base, node_id)

    async def next_snapshot(self, node_id: str, known: object | None) -> KdsSnapshot:
        while True:
            base = self._snapshot
            if base is not None:
                view = self._view(base, node_id)
                if view is not known:
                    return view
            changed = self._changed
            await changed.wait()

    def _view(self, base: KdsSnapshot, node_id: str) -> KdsSnapshot:
        if self._filter is None:
            return base
        cached = self._views.get(node_id)
        if cached is not None and cached[0] is base:
            return cached[1]
        view = base.view(node_id, self._filter)
        self._views[node_id] = (base, view)
        return view

    # -- the component ---------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        watched = (*self._order, *(self._filter.watched if self._filter else ()))
        with self._store.changes(watched) as changes:
            if self._filter is not None:
                await self._filter.reload()
            await self._load_all()
            stop_task = asyncio.ensure_future(stop.wait())
            try:
                while not stop.is_set():
                    events = await next_changes(changes, stop_task)
                    if events is None:
                        break
                    refilter = self._filter is not None and any(
                        e.is_resync or e.type in self._filter.watched for e in events
                    )
                    if refilter and self._filter is not None:
                        await self._filter.reload()
                    if any(e.is_resync for e in events):
                        await self._load_all()
                    else:
                        touched = {t for e in events if (t := self._apply(e)) is not None}
                        self._publish(touched, force=refilter)
            finally:
                stop_task.cancel()

    async def _load_all(self) -> None:
        """(Re)read every type from the store; unchanged resources keep their version."""
        touched: set[str] = set()
        for type_name in self._order:
            before = self._versions[type_name]
            packed: dict[str, any_pb2.Any] = {}
            versions: dict[str, str] = {}
            labels: dict[str, Mapping[str, str]] = {}
            for stored in await self._store.list(type_name):
                item = self._pack(stored.spec)
                if item is not None:
                    packed[item[0]], versions[item[0]] = item[1], item[2]
                    labels[item[0]] = dict(labels_of(stored.spec))
            if versions != before or self._snapshot is None:
                self._packed[type_name], self._versions[type_name] = packed, versions
                self._labels[type_name] = labels
                touched.add(type_name)
        self._publish(touched, force=self._snapshot is None)

    def _apply(self, event: ChangeEvent) -> str | None:
        """Apply one event to the working maps; the type it changed, None if nothing did."""
        type_name = event.type
        if type_name not in self._types:
            return None
        key = resource_key(event.mesh if self._types[type_name].mesh_scoped else "", event.name)
        packed, versions = self._packed[type_name], self._versions[type_name]
        item = None
        if event.op != "delete" and event.resource is not None:
            item = self._pack(event.resource.spec)
        if item is None:  # deleted, or no longer ours to send
            if key not in versions:
                return None
            del packed[key], versions[key]
            self._labels[type_name].pop(key, None)
            return type_name
        if versions.get(item[0]) == item[2]:
            return None
        packed[item[0]], versions[item[0]] = item[1], item[2]
        assert event.resource is not None
        self._labels[type_name][item[0]] = dict(labels_of(event.resource.spec))
        return type_name

    def _pack(self, doc: Mapping[str, object]) -> tuple[str, any_pb2.Any, str] | None:
        origin = labels_of(doc).get(wire.ORIGIN_LABEL)
        if origin is not None and origin != self._origin:
            return None  # a copy received from the other side: never sent back
        try:
            out = to_wire(doc, self._origin)
        except MappingError as exc:
            self.refused += 1
            log.error("KDS: %s", exc)
            return None
        return out.key, out.packed, out.version

    def _publish(self, touched: set[str], *, force: bool = False) -> None:
        """A new snapshot: copies of the touched types' maps, the others shared with the
        previous snapshot."""
        if not touched and not force:
            return
        previous = self._snapshot
        packed: dict[str, Mapping[str, any_pb2.Any]] = {}
        versions: dict[str, Mapping[str, str]] = {}
        labels: dict[str, Mapping[str, Mapping[str, str]]] = {}
        for type_name in self._order:
            if previous is None or type_name in touched:
                self._generation[type_name] += 1
                packed[type_name] = MappingProxyType(dict(self._packed[type_name]))
                versions[type_name] = MappingProxyType(dict(self._versions[type_name]))
                labels[type_name] = MappingProxyType(dict(self._labels[type_name]))
            else:
                packed[type_name] = previous.packed(type_name)
                versions[type_name] = previous.resource_versions(type_name)
                labels[type_name] = previous.labels(type_name)
        self._snapshot = KdsSnapshot(
            self._order,
            packed,
            versions,
            {t: str(self._generation[t]) for t in self._order},
            labels,
        )
        log.debug(
            "KDS %s snapshot: %d resources (%s changed)",
            self._origin,
            len(self._snapshot),
            ", ".join(sorted(touched)) or "none",
        )
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


__all__ = ["KdsSnapshot", "NodeFilter", "StoreSource"]
