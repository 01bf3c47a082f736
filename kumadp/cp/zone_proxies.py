"""A zone CP's own zone ingresses and egresses: who may run one, and how long one is kept.

- **Admission** (at bootstrap): the agent brings its ZoneIngress or ZoneEgress; it must be of
  the proxy type it runs as, name this zone or none (the CP sets it), not take the name of
  another zone's ingress (the copies the global CP passes on) or of a proxy of the other
  type, and come with a *zone token* for this zone and that scope (``ingress``/``egress``),
  verified with the public keys synced from the global CP. Each refusal says which part is
  wrong. The same token check guards the proxy's ADS stream and agent channel.
- **Lifetime**: an agent's proxy is stored with the label ``kumadp.io/lifecycle: agent`` and
  deleted when it leaves (``Leave``), or when its last xDS stream has been gone for the
  deregistration delay; one created through the API stays.

Envoy's node id of a zone proxy is ``.<name>`` (no mesh: it serves every mesh of the zone).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from kumadp.cp.auth import AuthError
from kumadp.cp.jwt import TokenError
from kumadp.cp.registration import LIFECYCLE_AGENT, LIFECYCLE_LABEL
from kumadp.cp.store.base import Store
from kumadp.cp.zone_tokens import ZoneTokens
from kumadp.resources import ValidationError
from kumadp.resources.errors import quoted
from kumadp.resources.safe_load import load_json
from kumadp.resources.zone_proxies import (
    ZONE_EGRESS_TYPE,
    ZONE_INGRESS_TYPE,
    ZoneProxy,
    in_zone,
    parse_zone_egress,
    parse_zone_ingress,
)
from kumadp.wire import kds as kds_wire
from kumadp.wire.names import PROXY_EGRESS, PROXY_INGRESS

log = logging.getLogger(__name__)

RESOURCE_TYPES = {PROXY_INGRESS: ZONE_INGRESS_TYPE, PROXY_EGRESS: ZONE_EGRESS_TYPE}
PROXY_TYPE_OF = {v: k for k, v in RESOURCE_TYPES.items()}
WHAT = {PROXY_INGRESS: "zone ingress", PROXY_EGRESS: "zone egress"}


def zone_proxy_name(node_id: str) -> str | None:
    """The name in a zone proxy's node id ``.<name>``; None for any other node id."""
    if node_id.startswith(".") and len(node_id) > 1:
        return node_id[1:]
    return None


class ZoneProxyRefused(Exception):
    """A zone proxy may not run here; ``unauthorized`` when its token is the problem."""

    def __init__(self, message: str, *, unauthorized: bool = False) -> None:
        super().__init__(message)
        self.unauthorized = unauthorized


class ZoneProxies:
    """The zone proxies of one zone CP (``zone`` None: not a zone CP, none may run)."""

    def __init__(
        self,
        store: Store,
        zone: str | None,
        tokens: ZoneTokens,
        *,
        auth: bool = True,
        deregistration_delay: float = 10.0,
    ) -> None:
        self._store = store
        self.zone = zone
        self._tokens = tokens
        self._auth = auth  # --dp-auth dpToken: zone proxies present zone tokens
        self._delay = deregistration_delay
        self._streams: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- authentication ------------------------------------------------------------------
    async def authenticate(self, token: str | None, proxy_type: str, name: str) -> None:
        """Raise ``AuthError`` unless ``token`` is a zone token of this zone for
        ``proxy_type``; the message names the proxy and the failed check."""
        what = f"{WHAT.get(proxy_type, proxy_type)} {name}"
        if self.zone is None:
            raise AuthError(f"{what}: zone proxies connect to a zone control plane")
        if not self._auth:
            return
        if not token:
            raise AuthError(
                f"{what}: no zone token (mint one on the global control plane: kumadp ctl "
                f"generate zone-token --zone {self.zone} --scope {proxy_type})"
            )
        try:
            await self._tokens.verify(token, zone=self.zone, scope=proxy_type)
        except TokenError as exc:
            raise AuthError(f"{what}: {exc}") from exc

    # -- admission -----------------------------------------------------------------------
    async def admit(self, proxy_type: str, resource_json: str, token: str | None) -> ZoneProxy:
        """The validated proxy an agent brings (its zone set); ``ZoneProxyRefused``
        naming what is wrong."""
        kind = RESOURCE_TYPES[proxy_type]
        if self.zone is None:
            raise ZoneProxyRefused(
                f"proxyType: {proxy_type} needs a zone control plane (kumadp cp run "
                "--mode zone): a zone proxy links its zone to the others"
            )
        if not resource_json:
            raise ZoneProxyRefused(f"dataplaneResource: the {kind} resource is required")
        try:
            doc = load_json(resource_json)
            if isinstance(doc, dict) and doc.get("type") != kind:
                raise ValidationError.single(
                    "type",
                    f'must be "{kind}" for proxyType {proxy_type}, not {quoted(doc.get("type"))}',
                )
            parse = parse_zone_ingress if proxy_type == PROXY_INGRESS else parse_zone_egress
            proxy = in_zone(parse(doc), self.zone)
        except ValidationError as exc:
            raise ZoneProxyRefused(f"dataplaneResource: {exc}") from None
        except ValueError as exc:
            raise ZoneProxyRefused(f"dataplaneResource: not valid JSON: {exc}") from None
        try:
            await self.authenticate(token, proxy_type, proxy.name)
        except AuthError as exc:
            raise ZoneProxyRefused(str(exc), unauthorized=bool(token)) from None
        await self._check_name(proxy)
        return proxy

    async def _check_name(self, proxy: ZoneProxy) -> None:
        other = ZONE_EGRESS_TYPE if proxy.type == ZONE_INGRESS_TYPE else ZONE_INGRESS_TYPE
        if await self._store.get(other, "", proxy.name) is not None:
            raise ZoneProxyRefused(
                f'name: a {other} named "{proxy.name}" runs in this zone (node ids are '
                f'".<name>": give the {proxy.type} another name)'
            )
        current = await self._store.get(proxy.type, "", proxy.name)
        labels = (current.spec.get("labels") or {}) if current is not None else {}
        if labels.get(kds_wire.ORIGIN_LABEL) == kds_wire.ORIGIN_GLOBAL:
            owner = labels.get(kds_wire.ZONE_LABEL) or "another zone"
            raise ZoneProxyRefused(
                f'name: "{proxy.name}" is the copy of an ingress of {owner}: give this '
                f"{proxy.type} another name"
            )

    async def register(self, proxy: ZoneProxy) -> None:
        """Store the proxy of an agent (labelled as the agent's); delete it unless its xDS
        stream comes within the deregistration delay."""
        doc = proxy.to_dict()
        doc["labels"] = {**proxy.labels, LIFECYCLE_LABEL: LIFECYCLE_AGENT}
        current = await self._store.get(proxy.type, "", proxy.name)
        if current is not None:  # keep what the CP maintains (availableServices)
            for key in ("availableServices",):
                if key in current.spec:
                    doc[key] = current.spec[key]
        _, created = await self._store.put(proxy.type, "", proxy.name, doc)
        log.info(
            "%s %s %s by its agent", proxy.type, proxy.name, "registered" if created else "updated"
        )
        if not self.is_connected(proxy.name):
            self._arm(proxy.name, "no xDS stream came after its bootstrap")

    async def proxy_type_of(self, name: str) -> str | None:
        """``ingress`` or ``egress`` for a stored proxy of this zone, None when none."""
        for kind, proxy_type in PROXY_TYPE_OF.items():
            stored = await self._store.get(kind, "", name)
            if stored is not None:
                labels = stored.spec.get("labels") or {}
                if labels.get(kds_wire.ORIGIN_LABEL) != kds_wire.ORIGIN_GLOBAL:
                    return proxy_type
        return None

    # -- streams and lifetime ------------------------------------------------------------
    def is_connected(self, name: str) -> bool:
        return self._streams.get(name, 0) > 0

    def stream_opened(self, name: str) -> None:
        self._streams[name] = self._streams.get(name, 0) + 1
        self._cancel(name)

    def stream_closed(self, name: str) -> None:
        count = self._streams.get(name, 0) - 1
        if count > 0:
            self._streams[name] = count
            return
        self._streams.pop(name, None)
        self._arm(name, "its connection has been gone")

    async def leave(self, name: str) -> bool:
        """The agent stops gracefully: remove its proxy now."""
        self._cancel(name)
        proxy_type = await self.proxy_type_of(name)
        if proxy_type is None:
            return False
        removed = await self._store.delete(RESOURCE_TYPES[proxy_type], "", name)
        log.info("%s %s left", WHAT[proxy_type], name)
        return removed

    def close(self) -> None:
        for name in list(self._timers):
            self._cancel(name)
        for task in self._tasks:
            task.cancel()

    def _cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _arm(self, name: str, why: str) -> None:
        self._cancel(name)
        loop = asyncio.get_running_loop()
        self._timers[name] = loop.call_later(self._delay, self._expire, name, why)

    def _expire(self, name: str, why: str) -> None:
        self._timers.pop(name, None)
        if self.is_connected(name):
            return
        task = asyncio.get_running_loop().create_task(self._deregister(name, why))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deregister(self, name: str, why: str) -> None:
        proxy_type = await self.proxy_type_of(name)
        if proxy_type is None or self.is_connected(name):
            return
        kind = RESOURCE_TYPES[proxy_type]
        stored = await self._store.get(kind, "", name)
        labels: dict[str, Any] = (stored.spec.get("labels") or {}) if stored else {}
        if labels.get(LIFECYCLE_LABEL) != LIFECYCLE_AGENT:
            return  # created through the API: its owner deletes it
        await self._store.delete(kind, "", name)
        log.info("%s %s deregistered: %s for %gs", kind, name, why, self._delay)


def resource_json(proxy: ZoneProxy) -> str:
    return json.dumps(proxy.to_dict(), separators=(",", ":"))


__all__ = [
    "PROXY_TYPE_OF",
    "RESOURCE_TYPES",
    "WHAT",
    "ZoneProxies",
    "ZoneProxyRefused",
    "resource_json",
    "zone_proxy_name",
]
