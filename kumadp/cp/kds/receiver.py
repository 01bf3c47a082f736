"""The receiving end of a KDS direction: validate each resource, write its copy, NACK alone
what is rejected (a ``DeltaHandler`` for ``kumadp.xds.delta_client``).

- Each resource of an update is checked on its own (shape, the registry's parser, its mesh
  exists, the side's own rules): one that fails is reported back by name with its reason
  and logged, the others are written. A resource whose mesh does not exist yet is kept
  and written as soon as that mesh arrives (or, at global, is found at the next update).
- A copy whose stored version already is the incoming one is not written again; the store
  itself also ignores an identical write. So a reconnect rewrites nothing unchanged.
- The copies of a direction are found by their labels (``owns``); their versions are this
  side's ``initial_resource_versions`` on every new stream, and on the first response of a
  stream any copy upstream no longer has is deleted.

``ZoneReceiver`` and ``GlobalReceiver`` (their own modules) say whose copies they keep and
what else they check.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2

from kumadp.cp.kds.catalog import check_document
from kumadp.cp.kds.mapping import (
    Incoming,
    MappingError,
    copy_key,
    copy_name,
    copy_version,
    from_wire,
    labels_of,
    local_copy,
    split_key,
)
from kumadp.cp.store.base import ConflictError, Store, StoredResource
from kumadp.resources import ValidationError
from kumadp.resources.model import MESH_TYPE
from kumadp.resources.registry import ResourceType
from kumadp.wire import kds as wire
from kumadp.xds.delta_client import Update

log = logging.getLogger(__name__)


class Rejected(Exception):
    """A resource this side will not store; the message says why (it goes in the NACK)."""


@dataclass
class ReceiverStats:
    writes: int = 0  # copies created or changed
    unchanged: int = 0  # received with the version already stored: not written
    deletes: int = 0
    rejected: int = 0


class Receiver:
    """Keeps this side's copies of the peer's resources of ``types`` in step."""

    peer = "peer"  # how logs name the other side

    def __init__(
        self, store: Store, types: Sequence[ResourceType], *, origin: str, zone: str | None
    ) -> None:
        self._store = store
        self._types = {t.name: t for t in types}
        self._origin = origin  # the kuma.io/origin label of the copies
        self._zone = zone  # the kuma.io/zone label of the copies (at global), else None
        self._waiting: dict[str, dict[tuple[str, str], Incoming]] = {}  # mesh -> parked
        self.stats = ReceiverStats()

    # -- what is ours --------------------------------------------------------------------
    def owns(self, doc: Mapping[str, Any]) -> bool:
        """Whether a stored document is a copy this receiver keeps."""
        labels = labels_of(doc)
        if labels.get(wire.ORIGIN_LABEL) != self._origin:
            return False
        return self._zone is None or labels.get(wire.ZONE_LABEL) == self._zone

    async def copies(self, type_name: str) -> dict[str, StoredResource]:
        """This receiver's stored copies of a type, by key."""
        return {
            copy_key(stored.spec): stored
            for stored in await self._store.list(type_name)
            if self.owns(stored.spec)
        }

    async def initial_versions(self) -> dict[str, dict[str, str]]:
        """The version of every copy, by type URL and key (for a new stream)."""
        out: dict[str, dict[str, str]] = {}
        for type_name in self._types:
            found = await self.copies(type_name)
            out[type_name] = {
                key: version
                for key, stored in found.items()
                if (version := copy_version(stored.spec)) is not None
            }
        return out

    # -- DeltaHandler ----------------------------------------------------------------------
    async def apply(self, update: Update) -> Mapping[str, str]:
        resource_type = self._types.get(update.type_url)
        if resource_type is None:
            raise Rejected(f"{update.type_url} is not synced in this direction")
        for mesh in list(self._waiting):  # a mesh made meanwhile (by hand, at global)
            if await self._store.get(MESH_TYPE, "", mesh) is not None:
                await self._release(mesh)
        for key in update.removed:
            await self._delete(resource_type, key)
        if update.complete is not None:
            for key in (await self.copies(resource_type.name)).keys() - update.complete:
                await self._delete(resource_type, key)  # gone upstream while disconnected
        failed: dict[str, str] = {}
        for key, resource in update.changed.items():
            reason = await self._receive(resource_type, key, resource)
            if reason is not None:
                failed[key] = reason
        return failed

    async def _receive(
        self, resource_type: ResourceType, key: str, resource: discovery_pb2.Resource
    ) -> str | None:
        """Store one resource; the reason it was rejected, None when it was not."""
        try:
            incoming = from_wire(resource_type.name, resource_type.mesh_scoped, resource)
            await self._store_copy(resource_type, incoming)
        except (MappingError, Rejected) as exc:
            reason = str(exc)
        except ValidationError as exc:
            reason = f"invalid: {exc}"
        else:
            return None
        self.stats.rejected += 1
        log.warning("KDS: %s %s from %s rejected: %s", resource_type.name, key, self.peer, reason)
        return reason

    async def _store_copy(self, resource_type: ResourceType, incoming: Incoming) -> None:
        doc = local_copy(
            incoming, mesh_scoped=resource_type.mesh_scoped, origin=self._origin, zone=self._zone
        )
        mesh, name = str(doc.get("mesh") or ""), str(doc["name"])
        if resource_type.mesh_scoped and await self._store.get(MESH_TYPE, "", mesh) is None:
            parked = self._waiting.setdefault(mesh, {})
            parked[(resource_type.name, incoming.key)] = incoming
            raise Rejected(f'mesh "{mesh}" does not exist: kept, stored once the mesh exists')
        check_document(resource_type, doc)
        self.check(resource_type, incoming, doc)
        current = await self._store.get(resource_type.name, mesh, name)
        if current is not None and copy_version(current.spec) == incoming.version:
            if self.owns(current.spec):
                self.stats.unchanged += 1
                return
        if current is not None and not self.owns(current.spec):
            self.take_over(resource_type, current)
        try:
            _, created = await self._store.put(resource_type.name, mesh, name, doc)
        except ConflictError as exc:  # pragma: no cover - puts here are unconditional
            raise Rejected(str(exc)) from None
        self.stats.writes += 1
        log.debug(
            "KDS: %s %s from %s %s", resource_type.name, incoming.key, self.peer,
            "stored" if created else "updated",
        )  # fmt: skip
        if resource_type.name == MESH_TYPE:
            await self._release(incoming.name)

    async def _release(self, mesh: str) -> None:
        """A mesh arrived: store what was waiting for it."""
        for (type_name, key), incoming in list(self._waiting.pop(mesh, {}).items()):
            resource_type = self._types.get(type_name)
            if resource_type is None:
                continue
            try:
                await self._store_copy(resource_type, incoming)
            except (Rejected, ValidationError) as exc:
                log.warning("KDS: %s %s from %s still rejected: %s", type_name, key, self.peer, exc)
            else:
                log.info("KDS: %s %s stored now that mesh %s exists", type_name, key, mesh)

    async def _delete(self, resource_type: ResourceType, key: str) -> None:
        mesh, name = split_key(key)
        for waiting in self._waiting.values():
            waiting.pop((resource_type.name, key), None)
        local = copy_name(resource_type.mesh_scoped, name, mesh, self._zone)
        current = await self._store.get(resource_type.name, mesh, local)
        if current is None or not self.owns(current.spec):
            return
        if await self._store.delete(resource_type.name, mesh, local):
            self.stats.deletes += 1
            log.info("KDS: %s %s deleted (gone from %s)", resource_type.name, key, self.peer)
            await self.deleted(resource_type, mesh, local)

    # -- what each side adds ---------------------------------------------------------------
    def check(self, resource_type: ResourceType, incoming: Incoming, doc: dict[str, Any]) -> None:
        """Side-specific checks of a copy about to be stored; raise Rejected."""

    def take_over(self, resource_type: ResourceType, current: StoredResource) -> None:
        """A resource of the copy's name exists and is not a copy of ours: allow replacing
        it, or raise Rejected."""
        raise Rejected(f'a {resource_type.name} named "{current.name}" already exists here')

    async def deleted(self, resource_type: ResourceType, mesh: str, name: str) -> None:
        """After a copy was deleted (cascades)."""


__all__ = ["Receiver", "ReceiverStats", "Rejected"]
