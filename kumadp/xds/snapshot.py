"""Snapshots: immutable, validated sets of Envoy resources with content-hash versions.

A snapshot is built once from protobuf messages grouped by type URL, checked for consistency
(every EDS cluster has its ClusterLoadAssignment, every RDS name used by a listener has its
RouteConfiguration), and never changed afterwards. The version of each type is a short hash
of the deterministically serialised resources sorted by name, so generating the same config
twice yields the same versions and the server pushes nothing.

Every type of ``ADS_ORDER`` is always present (possibly empty), so Envoy always gets an
answer to its first request of a type, even when there is nothing of that type to send.

Callers must treat the messages handed to (and returned by) a snapshot as read-only.
Versions hash serialised bytes, so messages packed into ``Any`` fields should be packed with
``deterministic=True`` for stable versions.

Many snapshots may hold the same resources (the control plane builds what every dataplane of
a mesh shares once): given a ``PackCache`` (or ``SharedResources`` that carry one), a shared
resource is copied, serialised and checked once per cache, not once per snapshot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message

from kumadp.xds import types

_VERSION_LENGTH = 16


class InconsistentSnapshot(ValueError):
    """The resources of a snapshot do not fit together (or are malformed)."""


_short = types.short_name


def _header(name: str, body: bytes) -> bytes:
    """What precedes a body in a version's digest: the name and both lengths."""
    raw_name = name.encode()
    return len(raw_name).to_bytes(4, "big") + raw_name + len(body).to_bytes(8, "big")


def _version(serialised: Mapping[str, bytes], names: Iterable[str] | None = None) -> str:
    """A digest of named bodies (all of them, or those of ``names`` that exist)."""
    parts: list[bytes] = []
    for name in sorted(serialised if names is None else set(names) & serialised.keys()):
        body = serialised[name]
        parts += (_header(name, body), body)
    return hashlib.sha256(b"".join(parts)).hexdigest()[:_VERSION_LENGTH]


def _framed_version(framed: Mapping[str, tuple[bytes, bytes]]) -> str:
    """``_version`` of bodies given with their ``_header``."""
    parts: list[bytes] = []
    for name in sorted(framed):
        parts += framed[name]
    return hashlib.sha256(b"".join(parts)).hexdigest()[:_VERSION_LENGTH]


def resource_version(packed: any_pb2.Any) -> str:
    """The version of one resource: a digest of its serialised content."""
    return hashlib.sha256(packed.value).hexdigest()[:_VERSION_LENGTH]


def _pack(type_url: str, message: Message) -> tuple[Message, any_pb2.Any]:
    copy = type(message)()
    copy.CopyFrom(message)
    return copy, any_pb2.Any(type_url=type_url, value=copy.SerializeToString(deterministic=True))


class _Packed:
    """One shared resource: its type URL and name, its copy, that copy serialised with its
    digest header, and what the copy refers to (on demand: the consistency check)."""

    __slots__ = ("copy", "eds", "framed", "name", "packed", "rds", "source", "type_url")

    def __init__(
        self,
        type_url: str,
        name: str,
        source: Message,
        copy: Message,
        packed: any_pb2.Any,
        framed: tuple[bytes, bytes],
    ) -> None:
        self.type_url = type_url
        self.name = name
        self.source = source  # held, so that its id names it for the cache's life
        self.copy = copy
        self.packed = packed
        self.framed = framed  # (``_header``, body)
        self.eds: tuple[str | None] | None = None
        self.rds: list[str] | None = None


class PackCache:
    """The copy and serialised form of each resource ``shared(resource)`` says many snapshots
    hold (and nobody changes any more), made once; every other resource is copied and
    serialised per snapshot. Keyed by identity: an entry keeps its resource alive."""

    def __init__(self, shared: Callable[[Message], bool]) -> None:
        # Imported here, as in ``check_consistency``: only a control plane makes a cache.
        from kumadp.xds.consistency import eds_reference, rds_references

        self._shared = shared
        self._eds_reference = eds_reference
        self._rds_references = rds_references
        self._by_source: dict[int, _Packed] = {}
        self._by_copy: dict[int, _Packed] = {}

    def __len__(self) -> int:
        return len(self._by_source)

    def _found(self, type_url: str, message: Message) -> _Packed | None:
        """The entry of ``message`` given under ``type_url``, if it has one."""
        found = self._by_source.get(id(message))
        if found is None or found.source is not message or found.type_url != type_url:
            return None
        return found

    def _keep(
        self,
        type_url: str,
        name: str,
        message: Message,
        copy: Message,
        packed: any_pb2.Any,
        framed: tuple[bytes, bytes],
    ) -> None:
        """Remember a checked resource's copy, if it is shared."""
        if self._shared(message):
            entry = _Packed(type_url, name, message, copy, packed, framed)
            self._by_source[id(message)] = entry
            self._by_copy[id(copy)] = entry

    def _entry(self, copy: Message) -> _Packed | None:
        found = self._by_copy.get(id(copy))
        return found if found is not None and found.copy is copy else None

    def eds(self, name: str, cluster: Message) -> str | None:
        """``consistency.eds_reference``, once per shared cluster."""
        entry = self._entry(cluster)
        if entry is None:
            return self._eds_reference(name, cluster)
        if entry.eds is None:
            entry.eds = (self._eds_reference(name, cluster),)
        return entry.eds[0]

    def rds(self, listener: Message) -> list[str]:
        """``consistency.rds_references``, once per shared listener."""
        entry = self._entry(listener)
        if entry is None:
            return self._rds_references(listener)
        if entry.rds is None:
            entry.rds = self._rds_references(listener)
        return entry.rds


class SharedResources(dict[str, list[Message]]):
    """Resources by type URL (``Snapshot.build``'s input) with the ``PackCache`` of those
    among them that other snapshots share: what the control plane's generation returns."""

    def __init__(self, resources: Mapping[str, list[Message]], cache: PackCache) -> None:
        super().__init__(resources)
        self.cache = cache


def _checked_name(type_url: str, message: Message) -> str:
    """The name of ``message``, given under ``type_url``; ``InconsistentSnapshot`` if it is
    of another type or has no name."""
    if types.type_url_of(message) != type_url:
        raise InconsistentSnapshot(f"{types.type_url_of(message)} given under type {type_url}")
    try:
        name = types.name_of(message)
    except ValueError as exc:
        raise InconsistentSnapshot(str(exc)) from None
    if not name:
        raise InconsistentSnapshot(f"{_short(type_url)}: resource without a name")
    return name


class Snapshot:
    """An immutable set of resources per type URL, each type with its own version.

    Build with ``Snapshot.build``; the constructor is internal.
    """

    __slots__ = ("_packed", "_resource_versions", "_resources", "_versions")

    _resources: Mapping[str, Mapping[str, Message]]
    _packed: Mapping[str, Mapping[str, any_pb2.Any]]
    _versions: Mapping[str, str]
    _resource_versions: dict[str, Mapping[str, str]]

    def __init__(
        self,
        resources: Mapping[str, Mapping[str, Message]],
        packed: Mapping[str, Mapping[str, any_pb2.Any]],
        versions: Mapping[str, str],
    ) -> None:
        # Internal: use ``Snapshot.build``, which copies, versions and checks.
        object.__setattr__(self, "_resources", resources)
        object.__setattr__(self, "_packed", packed)
        object.__setattr__(self, "_versions", versions)
        object.__setattr__(self, "_resource_versions", {})  # type URL -> name -> version

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Snapshot is immutable")

    @classmethod
    def build(
        cls, resources: Mapping[str, Iterable[Message]], cache: PackCache | None = None
    ) -> Snapshot:
        """Group, copy, version and check resources given by type URL.

        ``cache``: where resources shared with other snapshots are copied, serialised and
        checked once (by default the one ``SharedResources`` carry); the snapshot is the same
        with or without it.

        Raises ``InconsistentSnapshot`` if a message does not match its type URL, a name is
        empty or used twice within a type, or the resources do not fit together.
        """
        if cache is None and isinstance(resources, SharedResources):
            cache = resources.cache
        by_type: dict[str, dict[str, Message]] = {url: {} for url in types.ADS_ORDER}
        packed: dict[str, dict[str, any_pb2.Any]] = {url: {} for url in types.ADS_ORDER}
        framed: dict[str, dict[str, tuple[bytes, bytes]]] = {url: {} for url in types.ADS_ORDER}
        for type_url, messages in resources.items():
            found = by_type.setdefault(type_url, {})
            anys = packed.setdefault(type_url, {})
            frames = framed.setdefault(type_url, {})
            for message in messages:
                entry = None if cache is None else cache._found(type_url, message)
                if entry is not None:  # checked when it was kept
                    name = entry.name
                    if name in found:
                        raise InconsistentSnapshot(f"{_short(type_url)}: duplicate name {name!r}")
                    found[name], anys[name], frames[name] = entry.copy, entry.packed, entry.framed
                    continue
                name = _checked_name(type_url, message)
                if name in found:
                    raise InconsistentSnapshot(f"{_short(type_url)}: duplicate name {name!r}")
                copy, any_ = _pack(type_url, message)
                found[name], anys[name] = copy, any_
                frame = (_header(name, any_.value), any_.value)
                frames[name] = frame
                if cache is not None:
                    cache._keep(type_url, name, message, copy, any_, frame)
        versions = {url: _framed_version(frames) for url, frames in framed.items()}
        snapshot = cls(
            MappingProxyType({url: MappingProxyType(found) for url, found in by_type.items()}),
            MappingProxyType({url: MappingProxyType(anys) for url, anys in packed.items()}),
            MappingProxyType(versions),
        )
        snapshot._check(cache)
        return snapshot

    # -- accessors -----------------------------------------------------------------------
    @property
    def versions(self) -> dict[str, str]:
        """Version per type URL (a copy)."""
        return dict(self._versions)

    def version(self, type_url: str) -> str | None:
        return self._versions.get(type_url)

    @property
    def type_urls(self) -> tuple[str, ...]:
        """Type URLs in ADS send order: ``ADS_ORDER`` first, then any others sorted."""
        extra = sorted(url for url in self._resources if url not in types.ADS_ORDER)
        return (*types.ADS_ORDER, *extra)

    def resources(self, type_url: str) -> Mapping[str, Message]:
        """Resources of one type by name (read-only; empty for an unknown type)."""
        return self._resources.get(type_url, MappingProxyType({}))

    def packed(self, type_url: str) -> Mapping[str, any_pb2.Any]:
        """Resources of one type by name, already packed for a DiscoveryResponse."""
        return self._packed.get(type_url, MappingProxyType({}))

    def version_of(self, type_url: str, names: Iterable[str] | None) -> str | None:
        """The version of a selection: the type's version for ``None`` (everything), else a
        digest of the named resources that exist (same formula, so selecting everything
        gives the type's version). None for a type this snapshot does not have."""
        if names is None:
            return self._versions.get(type_url)
        packed = self._packed.get(type_url)
        if packed is None:
            return None
        return _version({name: a.value for name, a in packed.items()}, names)

    def resource_versions(self, type_url: str) -> Mapping[str, str]:
        """The version of each resource of a type, by name (computed once, on demand: only
        the delta server needs them)."""
        cache = self._resource_versions
        found = cache.get(type_url)
        if found is None:
            packed = self.packed(type_url)
            found = cache[type_url] = MappingProxyType(
                {name: resource_version(a) for name, a in packed.items()}
            )
        return found

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Snapshot):
            return NotImplemented
        return self._versions == other._versions

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._versions.items())))

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{_short(url)}={self._versions[url]}({len(self._resources[url])})"
            for url in self.type_urls
        )
        return f"Snapshot({parts})"

    # -- consistency ---------------------------------------------------------------------
    def check_consistency(self) -> None:
        """Raise ``InconsistentSnapshot`` naming every dangling reference."""
        self._check(None)

    def _check(self, cache: PackCache | None) -> None:
        clusters, listeners = self.resources(types.CLUSTER), self.resources(types.LISTENER)
        if not clusters and not listeners:
            return  # nothing refers to anything (the agent's secrets)
        # Imported here: Envoy's cluster and listener modules cost the agent (which builds
        # snapshots of secrets only) ~15 ms of start-up.
        from kumadp.xds.consistency import dangling_references

        endpoints, routes = self.resources(types.ENDPOINT), self.resources(types.ROUTE)
        if cache is None:
            problems = dangling_references(clusters, endpoints, listeners, routes)
        else:
            problems = dangling_references(
                clusters, endpoints, listeners, routes, eds=cache.eds, rds=cache.rds
            )
        if problems:
            raise InconsistentSnapshot("inconsistent snapshot: " + "; ".join(problems))


# -- YAML-friendly views ---------------------------------------------------------------------
def message_to_dict(message: Message) -> dict[str, Any]:
    """A message as Envoy writes config: snake_case field names, ``Any`` with ``@type``."""
    out: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return out


def snapshot_to_dict(snapshot: Snapshot) -> dict[str, list[dict[str, Any]]]:
    """Every type by its short name (``cds``, ``eds``...), resources sorted by name."""
    out: dict[str, list[dict[str, Any]]] = {}
    for url in snapshot.type_urls:
        found = snapshot.resources(url)
        out[_short(url)] = [message_to_dict(found[name]) for name in sorted(found)]
    return out
