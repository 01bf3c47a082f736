"""Drain until idle: after SIGTERM, wait until the application has no connections left
through its sidecar's outbound listeners (or the drain time runs out).

The application usually gets its own SIGTERM at the same moment as the agent and may still
be finishing requests that call other services through the sidecar. With
``--drain-until-idle`` the shutdown sequence keeps Envoy (and its outbound listeners) running
and polls Envoy's admin API every ~100 ms:

- ``GET /listeners?format=json``: the listeners, by name; the outbound ones are Kuma's
  ``outbound:<ip>:<port>`` (and the transparent proxy's ``outbound:passthrough:ipv4``);
- ``GET /stats?format=json&filter=...downstream_cx_active``: the active downstream
  connections of each listener (``listener.<ip>_<port>.downstream_cx_active``).

Idle means no active connection on any outbound listener for ``quiet`` seconds (one poll
that sees zero between two short requests is not the end of the traffic). The inbound
listeners are not counted: they are draining, and peers stopped sending new requests after
the agent's Leave.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from typing import Any, Protocol

from kumadp.agent.admin import AdminError, EnvoyAdmin

log = logging.getLogger(__name__)

OUTBOUND_PREFIX = "outbound:"
_ACTIVE = "downstream_cx_active"
_STATS_FILTER = rf"^listener\..*\.{_ACTIVE}$"


class ConnectionSource(Protocol):
    async def outbound_connections(self) -> dict[str, int]:
        """Active downstream connections per outbound listener name."""
        ...


def listener_stat_prefix(address: str, port: int) -> str:
    """Envoy's stat prefix of a listener without ``stat_prefix``: ``listener.<address>.``
    with the address as ``ip:port`` (``[ip]:port`` for IPv6), ':' turned into '_'."""
    where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    return f"listener.{where.replace(':', '_')}."


def outbound_listeners(listeners_json: Mapping[str, Any]) -> dict[str, str]:
    """Outbound listener name -> its stat prefix, from ``GET /listeners?format=json``."""
    out: dict[str, str] = {}
    for status in listeners_json.get("listener_statuses") or []:
        if not isinstance(status, dict):
            continue
        name = str(status.get("name", ""))
        if not name.startswith(OUTBOUND_PREFIX):
            continue
        try:
            socket = status["local_address"]["socket_address"]
            out[name] = listener_stat_prefix(str(socket["address"]), int(socket["port_value"]))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def active_connections(
    stats_json: Mapping[str, Any], listeners: Mapping[str, str]
) -> dict[str, int]:
    """Active downstream connections of each listener in ``listeners`` (name -> stat
    prefix), from ``GET /stats?format=json``; a listener without the stat counts 0."""
    values: dict[str, int] = {}
    for stat in stats_json.get("stats") or []:
        if isinstance(stat, dict) and isinstance(stat.get("name"), str):
            try:
                values[stat["name"]] = int(stat.get("value", 0))
            except (TypeError, ValueError):
                continue
    return {name: values.get(prefix + _ACTIVE, 0) for name, prefix in listeners.items()}


class AdminConnections:
    """``ConnectionSource`` over the agent's Envoy admin client."""

    def __init__(self, admin: EnvoyAdmin) -> None:
        self._admin = admin

    async def outbound_connections(self) -> dict[str, int]:
        listeners = await self._admin.get_json("/listeners", format="json")
        outbound = outbound_listeners(listeners)
        if not outbound:
            return {}
        stats = await self._admin.get_json("/stats", format="json", filter=_STATS_FILTER)
        return active_connections(stats, outbound)


def describe(connections: Mapping[str, int]) -> str:
    busy = {name: n for name, n in sorted(connections.items()) if n > 0}
    total = sum(busy.values())
    detail = ", ".join(f"{name} ({n})" for name, n in busy.items())
    return f"{total} connection{'s' if total != 1 else ''} on {detail}"


async def wait_until_idle(
    source: ConnectionSource,
    *,
    interval: float = 0.1,
    quiet: float = 1.0,
    report_every: float = 5.0,
) -> None:
    """Return once no outbound listener has had an active connection for ``quiet`` seconds.
    Runs until cancelled otherwise (the caller bounds it with the drain time). Admin API
    errors are logged at debug level and polled again: Envoy exiting ends the shutdown
    sequence by itself."""
    loop = asyncio.get_running_loop()
    idle_since: float | None = None
    last_busy: list[str] = []
    last_report = 0.0
    while True:
        now = loop.time()
        try:
            connections = await source.outbound_connections()
        except AdminError as exc:
            log.debug("drain-until-idle: cannot read Envoy's listener stats: %s", exc)
            idle_since = None
        else:
            busy = sorted(name for name, n in connections.items() if n > 0)
            if busy:
                idle_since = None
                # Counts change with every short request: log when other listeners get busy,
                # else every report_every seconds.
                if busy != last_busy or now - last_report >= report_every:
                    log.info(
                        "drain-until-idle: waiting for the application's %s "
                        "(outbound keeps working)",
                        describe(connections),
                    )
                    last_busy, last_report = busy, now
            else:
                if idle_since is None:
                    idle_since = now
                if now - idle_since >= quiet:
                    log.info(
                        "drain-until-idle: the application has had no connection through the "
                        "sidecar for %gs: stopping",
                        quiet,
                    )
                    return
        await asyncio.sleep(interval)


async def drain_inbound(admin: EnvoyAdmin) -> None:
    """Drain Envoy's inbound listeners gracefully (the outbound ones keep working)."""
    try:
        await admin.drain_listeners(inbound_only=True, graceful=True)
    except AdminError as exc:
        log.warning("could not drain Envoy's listeners: %s", exc)


async def wait_drain_time(
    admin: EnvoyAdmin,
    seconds: float,
    *,
    until_idle: bool,
    skip: Coroutine[Any, Any, object],
    ended: asyncio.Future[Any],
) -> None:
    """The shutdown sequence's drain wait: ``seconds`` at most, cut short by ``skip`` (the
    second signal) or ``ended`` (Envoy is gone); with ``until_idle``, also once the
    application has no connection left through the outbound listeners."""
    second = asyncio.create_task(skip, name="second-signal")
    waits: set[asyncio.Future[Any]] = {second, ended}
    idle: asyncio.Task[None] | None = None
    if until_idle:
        log.info(
            "draining until the application has no connection left through the "
            "outbound listeners, at most %gs (signal again to skip the wait)",
            seconds,
        )
        idle = asyncio.create_task(wait_until_idle(AdminConnections(admin)), name="drain-idle")
        waits.add(idle)
    else:
        log.info("draining for %gs (signal again to skip the wait)", seconds)
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        if second.done():
            log.info("second signal: skipping the rest of the drain time")
        elif idle is not None and not idle.done() and not ended.done():
            log.info("drain time (%gs) over with outbound connections still open", seconds)
    finally:
        second.cancel()
        if idle is not None:
            idle.cancel()
            await asyncio.gather(idle, return_exceptions=True)
