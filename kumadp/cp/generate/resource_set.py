"""Collecting generated resources by type URL, with names checked for clashes."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TypeVar, cast

from google.protobuf.message import Message

from kumadp.xds import types
from kumadp.xds.types import name_of, type_url_of

M = TypeVar("M", bound=Message)

__all__ = ["ResourceSet", "name_of", "type_url_of"]  # the helpers live in kumadp.xds.types


class ResourceSet:
    """Resources by type URL and name. Adding an identical resource twice is a no-op (two
    outbounds of one service share a cluster); adding a different one under a taken name
    is an error.

    Generators may add resources they share with other proxies of the view
    (``MeshView.memoized``): whoever changes a resource after it was added (a policy
    plug-in) gets it through ``edit``, which swaps in a private copy first."""

    def __init__(self) -> None:
        self._by_type: dict[str, dict[str, Message]] = {url: {} for url in types.ADS_ORDER}
        self._private: set[tuple[str, str]] = set()  # copies made by ``edit``
        # Facts derived from the set that plug-ins share within one run (e.g. which listener
        # routes to which cluster); dropped whenever a resource is added.
        self.derived: dict[str, object] = {}

    def add(self, resource: Message) -> None:
        url = type_url_of(resource)
        found = self._by_type.get(url)
        if found is None:
            raise ValueError(f"unsupported resource type {url}")
        name = name_of(resource)
        if not name:
            raise ValueError(f"{url} without a name")
        existing = found.get(name)
        if existing is resource:
            return  # a shared resource two generators yield (e.g. a service's cluster)
        if existing is not None and existing != resource:
            raise ValueError(f"two different {url.rsplit('.', 1)[-1]} resources named {name!r}")
        found[name] = resource
        self.derived.clear()

    def names(self, kind: type[Message]) -> list[str]:
        """Names of the resources of ``kind`` (e.g. ``Listener``), sorted."""
        return sorted(self._by_type.get(type_url_of(kind), {}))

    def table(self, kind: type[M]) -> Mapping[str, M]:
        """The resources of ``kind`` by name, to read only (they may be shared); a live view,
        in the order they were added."""
        return cast(Mapping[str, M], MappingProxyType(self._by_type.get(type_url_of(kind), {})))

    def get(self, kind: type[M], name: str) -> M | None:
        """The resource of ``kind`` named ``name``, to read only (it may be shared)."""
        found = self._by_type.get(type_url_of(kind), {}).get(name)
        return found if isinstance(found, kind) else None

    def edit(self, kind: type[M], name: str) -> M | None:
        """The resource of ``kind`` named ``name``, safe to change in place: the first call
        replaces it in this set with a private copy, so a resource shared with other proxies
        never changes under them. None: there is no such resource."""
        url = type_url_of(kind)
        found = self._by_type.get(url, {}).get(name)
        if not isinstance(found, kind):
            return None
        if (url, name) in self._private:
            return found
        copy = kind()
        copy.CopyFrom(found)
        self._by_type[url][name] = copy
        self._private.add((url, name))
        return copy

    def replace(self, resource: Message, name: str | None = None) -> None:
        """Put ``resource`` (a shared one: see ``MeshView.memoized``) in place of the
        resource of its type and name (``name``, when the caller knows it), which must exist;
        a later ``edit`` copies it."""
        url = type_url_of(resource)
        if name is None:
            name = name_of(resource)
        found = self._by_type.get(url)
        if found is None or name not in found:
            raise ValueError(f"no {url.rsplit('.', 1)[-1]} {name!r} to replace")
        found[name] = resource
        if self._private:
            self._private.discard((url, name))

    def replace_all(self, kind: type[M], resources: Mapping[str, M]) -> None:
        """``replace`` for each name -> resource of ``kind`` (every name must exist)."""
        if not resources:
            return
        found = self._by_type[type_url_of(kind)]
        if not found.keys() >= resources.keys():
            missing = sorted(resources.keys() - found.keys())[0]
            raise ValueError(f"no {kind.__name__} {missing!r} to replace")
        found.update(resources)
        if self._private:
            url = type_url_of(kind)
            self._private.difference_update((url, name) for name in resources)

    def to_dict(self) -> dict[str, list[Message]]:
        """Every type URL of ``ADS_ORDER`` (possibly empty), resources sorted by name."""
        return {
            url: [found[name] for name in sorted(found)] for url, found in self._by_type.items()
        }
