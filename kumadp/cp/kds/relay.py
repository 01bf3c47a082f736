"""What the global CP passes on from one zone to the others: the ``relayed`` types of the
registry (ZoneIngress), so that each zone learns the other zones' ingresses and the services
they offer.

``RelaySource`` (a component on the global CP) follows the store for the copies the zones
sent (``kuma.io/origin: zone``, ``kuma.io/zone: <zone>``) and for the ``Zone`` resources,
and keeps each copy packed as it travels on (``kuma.io/origin: global``, the zone label
kept). ``ZoneView`` is the source of one zone's global -> zone stream: the global CP's own
resources (``StoreSource``) plus the relayed copies of every *other* zone that is enabled:
its own ingresses never come back to a zone, and a disabled zone's disappear from every
other zone (so traffic to it stops). Push on change, as ``StoreSource``: a change of a copy
or of a Zone wakes every stream, and each sends only what differs for its zone.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from google.protobuf import any_pb2

from kumadp.cp.kds.mapping import MappingError, labels_of, to_wire
from kumadp.cp.kds.source import KdsSnapshot, StoreSource
from kumadp.cp.store.base import Store
from kumadp.cp.store.feed import next_changes
from kumadp.resources.registry import ResourceType
from kumadp.resources.zones import ZONE_TYPE
from kumadp.wire import kds as wire

log = logging.getLogger(__name__)

# type -> key -> (owning zone, packed, version)
Copies = Mapping[str, Mapping[str, tuple[str, any_pb2.Any, str]]]


class RelayState:
    """One immutable state of the relayed copies and of which zones are disabled."""

    __slots__ = ("copies", "disabled", "generation")

    def __init__(self, copies: Copies, disabled: frozenset[str], generation: int) -> None:
        self.copies = copies
        self.disabled = disabled
        self.generation = generation


class RelaySource:
    """Component: the zones' copies of the relayed types, ready to go on to other zones."""

    name = "kds-relay"

    def __init__(self, store: Store, types: Sequence[ResourceType]) -> None:
        self._store = store
        self.type_urls = tuple(t.name for t in types)
        self._state = RelayState(MappingProxyType({}), frozenset(), 0)
        self._changed = asyncio.Event()
        self.ready = asyncio.Event()

    @property
    def state(self) -> RelayState:
        return self._state

    async def changed_since(self, state: RelayState) -> RelayState:
        while self._state is state:
            await self._changed.wait()
        return self._state

    async def run(self, stop: asyncio.Event) -> None:
        with self._store.changes((*self.type_urls, ZONE_TYPE)) as changes:
            await self._load()
            stop_task = asyncio.ensure_future(stop.wait())
            try:
                while not stop.is_set():
                    if await next_changes(changes, stop_task) is None:
                        break
                    await self._load()  # a few relayed resources: re-read them all
            finally:
                stop_task.cancel()

    async def _load(self) -> None:
        copies: dict[str, Mapping[str, tuple[str, any_pb2.Any, str]]] = {}
        for type_url in self.type_urls:
            found: dict[str, tuple[str, any_pb2.Any, str]] = {}
            for stored in await self._store.list(type_url):
                labels = labels_of(stored.spec)
                zone = labels.get(wire.ZONE_LABEL)
                if labels.get(wire.ORIGIN_LABEL) != wire.ORIGIN_ZONE or not zone:
                    continue  # only what a zone sent goes on
                try:
                    out = to_wire(stored.spec, wire.ORIGIN_GLOBAL)
                except MappingError as exc:
                    log.error("KDS relay: %s", exc)
                    continue
                found[out.key] = (zone, out.packed, out.version)
            copies[type_url] = MappingProxyType(found)
        disabled = frozenset(
            z.name for z in await self._store.list(ZONE_TYPE) if z.spec.get("enabled") is False
        )
        before = self._state
        same = disabled == before.disabled and all(
            {k: v[2] for k, v in copies[t].items()}
            == {k: v[2] for k, v in before.copies.get(t, {}).items()}
            for t in self.type_urls
        )
        if not same or not self.ready.is_set():
            self._state = RelayState(MappingProxyType(copies), disabled, before.generation + 1)
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()
        self.ready.set()


class ZoneSnapshot:
    """What one zone is sent: the global CP's own types, then the relayed copies of the
    other enabled zones (``VersionedResources``)."""

    def __init__(self, base: KdsSnapshot, relay: RelayState, zone: str, relayed: tuple[str, ...]):
        self.base, self.relay = base, relay
        self.type_urls = (*base.type_urls, *relayed)
        self._relayed = relayed
        self._packed: dict[str, Mapping[str, any_pb2.Any]] = {}
        self._versions: dict[str, Mapping[str, str]] = {}
        self._type_versions: dict[str, str] = {}
        for type_url in relayed:
            visible = {
                key: item
                for key, item in relay.copies.get(type_url, {}).items()
                if item[0] != zone and item[0] not in relay.disabled
            }
            self._packed[type_url] = {k: v[1] for k, v in visible.items()}
            self._versions[type_url] = versions = {k: v[2] for k, v in visible.items()}
            digest = hashlib.sha256(repr(sorted(versions.items())).encode()).hexdigest()
            self._type_versions[type_url] = digest[:16]

    def version(self, type_url: str) -> str | None:
        if type_url in self._relayed:
            return self._type_versions[type_url]
        return self.base.version(type_url)

    def packed(self, type_url: str) -> Mapping[str, any_pb2.Any]:
        if type_url in self._relayed:
            return self._packed[type_url]
        return self.base.packed(type_url)

    def resource_versions(self, type_url: str) -> Mapping[str, str]:
        if type_url in self._relayed:
            return self._versions[type_url]
        return self.base.resource_versions(type_url)


class ZoneView:
    """The ``DeltaSource`` of one zone's global -> zone stream (the zone as the stream's
    metadata says, never the node id the payload claims)."""

    def __init__(self, base: StoreSource, relay: RelaySource, zone: str) -> None:
        self._base, self._relay, self._zone = base, relay, zone
        self._last: ZoneSnapshot | None = None

    def get_snapshot(self, node_id: str) -> ZoneSnapshot | None:
        base = self._base.get_snapshot(node_id)
        if base is None or not self._relay.ready.is_set():
            return None
        last = self._last
        if last is None or last.base is not base or last.relay is not self._relay.state:
            last = self._last = ZoneSnapshot(
                base, self._relay.state, self._zone, self._relay.type_urls
            )
        return last

    async def next_snapshot(self, node_id: str, known: object | None) -> ZoneSnapshot:
        while True:
            found = self.get_snapshot(node_id)
            if found is not None and found is not known:
                return found
            if not self._relay.ready.is_set():
                await self._relay.ready.wait()
                continue
            current = self._base.get_snapshot(node_id)
            waits: set[asyncio.Future[object]] = {
                asyncio.ensure_future(self._base.next_snapshot(node_id, current))
            }
            if found is not None:
                waits.add(asyncio.ensure_future(self._relay.changed_since(found.relay)))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waits:
                    task.cancel()
                await asyncio.gather(*waits, return_exceptions=True)


__all__ = ["RelaySource", "RelayState", "ZoneSnapshot", "ZoneView"]
