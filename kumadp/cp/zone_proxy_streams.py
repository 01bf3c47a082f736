"""The ADS streams of a zone CP's ingresses and egresses (node id ``.<name>``): the DP
server's xDS callbacks hand them here.

A stream is accepted when the proxy is stored in this zone (its agent bootstrapped) and its
zone token holds (``ZoneProxies.authenticate``: this zone, the proxy's scope); then the
reconciler generates its config, and its insight (``ZoneIngressInsight`` /
``ZoneEgressInsight``, Kuma's subscriptions) records the stream and its ACKs and NACKs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from kumadp.cp.auth import AuthError, token_from_metadata
from kumadp.cp.insights import InsightStore
from kumadp.cp.zone_proxies import WHAT, ZoneProxies
from kumadp.xds.stream import Code, StreamRejected

log = logging.getLogger(__name__)


class ZoneProxyReconciler(Protocol):
    async def zone_proxy_connected(self, name: str, proxy_type: str) -> bool: ...

    def zone_proxy_disconnected(self, name: str) -> None: ...


class ZoneProxyStreams:
    def __init__(
        self,
        proxies: ZoneProxies,
        reconciler: ZoneProxyReconciler,
        insights: Mapping[str, InsightStore] | None = None,
    ) -> None:
        self._proxies = proxies
        self._reconciler = reconciler
        self._insights = dict(insights or {})  # proxy type -> its insight store
        self._types: dict[str, str] = {}  # name -> proxy type, while a stream is open
        self._streams: dict[int, str] = {}  # stream id -> name

    async def on_stream_open(
        self,
        stream_id: int,
        name: str,
        metadata: Mapping[str, str],
        version: Mapping[str, Any] | None = None,
    ) -> None:
        proxy_type = await self._proxies.proxy_type_of(name)
        if proxy_type is None:
            raise StreamRejected(
                Code.NOT_FOUND,
                f'zone proxy ".{name}" is not known to this control plane (bootstrap first)',
            )
        try:
            await self._proxies.authenticate(token_from_metadata(metadata), proxy_type, name)
        except AuthError as exc:
            log.warning("xDS stream of .%s refused: %s", name, exc)
            raise StreamRejected(Code.UNAUTHENTICATED, str(exc)) from exc
        self._proxies.stream_opened(name)
        self._types[name] = proxy_type
        self._streams[stream_id] = name
        if not await self._reconciler.zone_proxy_connected(name, proxy_type):
            await self.on_stream_closed(stream_id, name)
            raise StreamRejected(Code.NOT_FOUND, f"{WHAT[proxy_type]} {name} is not stored")
        insights = self._insights.get(proxy_type)
        if insights is not None:
            insights.stream_opened(stream_id, ("", name), version)
        log.info("xDS stream %d opened by %s %s", stream_id, WHAT[proxy_type], name)

    async def on_stream_closed(self, stream_id: int, name: str) -> None:
        if self._streams.pop(stream_id, None) is None:
            return
        proxy_type = self._types.get(name)
        insights = self._insights.get(proxy_type or "")
        if insights is not None:
            insights.stream_closed(stream_id)
        self._proxies.stream_closed(name)
        if not self._proxies.is_connected(name):
            self._types.pop(name, None)
            self._reconciler.zone_proxy_disconnected(name)
        log.info("xDS stream %d of .%s closed", stream_id, name)

    def _insight(self, name: str) -> InsightStore | None:
        return self._insights.get(self._types.get(name, ""))

    def on_ack(self, name: str, type_url: str) -> None:
        insights = self._insight(name)
        if insights is not None:
            insights.acked(("", name), type_url)

    def on_nack(self, name: str, type_url: str, version: str, error: str) -> None:
        insights = self._insight(name)
        if insights is not None:
            insights.nacked(("", name), type_url, version, error)

    def on_response_sent(self, name: str, type_url: str) -> None:
        insights = self._insight(name)
        if insights is not None:
            insights.response_sent(("", name), type_url)


__all__ = ["ZoneProxyReconciler", "ZoneProxyStreams"]
