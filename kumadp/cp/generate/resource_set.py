"""Collecting generated resources by type URL, with names checked for clashes."""

from __future__ import annotations

from google.protobuf.message import Message

from kumadp.xds import types
from kumadp.xds.types import name_of, type_url_of

__all__ = ["ResourceSet", "name_of", "type_url_of"]  # the helpers live in kumadp.xds.types


class ResourceSet:
    """Resources by type URL and name. Adding an identical resource twice is a no-op (two
    outbounds of one service share a cluster); adding a different one under a taken name
    is an error."""

    def __init__(self) -> None:
        self._by_type: dict[str, dict[str, Message]] = {url: {} for url in types.ADS_ORDER}

    def add(self, resource: Message) -> None:
        url = type_url_of(resource)
        if url not in self._by_type:
            raise ValueError(f"unsupported resource type {url}")
        name = name_of(resource)
        if not name:
            raise ValueError(f"{url} without a name")
        existing = self._by_type[url].get(name)
        if existing is not None and existing != resource:
            raise ValueError(f"two different {url.rsplit('.', 1)[-1]} resources named {name!r}")
        self._by_type[url][name] = resource

    def to_dict(self) -> dict[str, list[Message]]:
        """Every type URL of ``ADS_ORDER`` (possibly empty), resources sorted by name."""
        return {
            url: [found[name] for name in sorted(found)] for url, found in self._by_type.items()
        }
