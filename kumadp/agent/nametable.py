"""The agent's name table: ``<service>.mesh`` names and their virtual IPs.

The control plane pushes the whole table over the agent channel's ``Watch`` stream whenever it
changes (``AgentUpdate.names``); ``update`` / ``update_from_proto`` replace it atomically and
the DNS resolver reads it. Names are stored lower case without the trailing dot; lookups are
case-insensitive and accept a trailing dot.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_TTL = 30  # seconds, Kuma's


@dataclass(frozen=True, slots=True)
class Record:
    name: str  # lower case, no trailing dot
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]


def normalize_name(name: str) -> str:
    return name.rstrip(".").lower()


def _addresses(name: str, values: Iterable[str], version: int) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        try:
            address = ipaddress.ip_address(str(value).strip())
        except ValueError:
            log.warning("name table: %s: %r is not an IP address; ignored", name, value)
            continue
        if address.version != version:
            log.warning("name table: %s: %s is not an IPv%d address; ignored", name, value, version)
            continue
        text = str(address)
        if text not in out:
            out.append(text)
    return tuple(out)


class NameTable:
    """Names -> addresses, replaced as a whole on every update.

    ``generation`` increases on every update (readers cache on it); ``first_table`` is set by
    the first update; callbacks in ``changed`` are called (with the table) after each update.
    """

    def __init__(self) -> None:
        self._records: dict[str, Record] = {}
        self._parents: frozenset[str] = frozenset()
        self.version = ""
        self.ttl = DEFAULT_TTL
        self.generation = 0
        self.first_table = asyncio.Event()
        self.changed: list[Callable[[NameTable], None]] = []

    def __len__(self) -> int:
        return len(self._records)

    @property
    def names(self) -> list[str]:
        return sorted(self._records)

    def update(
        self, version: str, ttl: int, records: Mapping[str, tuple[Iterable[str], Iterable[str]]]
    ) -> None:
        """Replace the whole table. ``records``: name -> (IPv4 addresses, IPv6 addresses).
        Invalid addresses are logged and skipped; an empty name is ignored."""
        if ttl < 0:
            raise ValueError(f"ttl must be >= 0, got {ttl}")
        new: dict[str, Record] = {}
        for raw_name, (ipv4, ipv6) in records.items():
            name = normalize_name(raw_name)
            if not name:
                continue
            v4 = _addresses(name, ipv4, 4)
            v6 = _addresses(name, ipv6, 6)
            previous = new.get(name)
            if previous is not None:  # the same name twice (e.g. different case): merge
                v4 = previous.ipv4 + tuple(a for a in v4 if a not in previous.ipv4)
                v6 = previous.ipv6 + tuple(a for a in v6 if a not in previous.ipv6)
            new[name] = Record(name, v4, v6)
        parents: set[str] = set()
        for name in new:
            labels = name.split(".")
            for i in range(1, len(labels)):
                parents.add(".".join(labels[i:]))
        # one assignment each, no await in between: readers never see half a table
        self._records = new
        self._parents = frozenset(parents)
        self.version = version
        self.ttl = ttl
        self.generation += 1
        first = not self.first_table.is_set()
        self.first_table.set()
        log.log(
            logging.INFO if first else logging.DEBUG,
            "name table %s: %d names, ttl %ds",
            version,
            len(new),
            ttl,
        )
        for callback in list(self.changed):
            try:
                callback(self)
            except Exception as exc:
                log.warning("name table change callback failed: %s", exc, exc_info=exc)

    def update_from_proto(self, msg: Any) -> None:
        """From a ``kumadp.agent.v1.NameTable`` message (``ttl_seconds`` 0 = Kuma's 30 s)."""
        self.update(
            msg.version,
            int(msg.ttl_seconds) or DEFAULT_TTL,
            {r.name: (list(r.ipv4), list(r.ipv6)) for r in msg.records},
        )

    def lookup(self, name: str) -> Record | None:
        return self._records.get(normalize_name(name))

    def has_children(self, name: str) -> bool:
        """True when ``name`` is not in the table but names below it are (an "empty
        non-terminal": it exists, with no addresses, so it must not get NXDOMAIN)."""
        return normalize_name(name) in self._parents
