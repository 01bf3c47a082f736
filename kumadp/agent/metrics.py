"""The agent's merged Prometheus endpoint (Kuma's port 5670): ``GET /metrics``.

One page, three kinds of sources, fetched in parallel on every scrape:

1. the agent's own metrics (``kumadp_*``, ``kumadp.agent.agent_metrics``): CP connection,
   config age, certificate, DNS counters, readiness, Envoy restarts, and how the other
   sources' scrapes went;
2. Envoy's stats from its admin API, ``GET /stats/prometheus?usedonly`` (stats Envoy never
   touched are left out, which keeps the page several times smaller);
3. each ``--app-metrics-url``: the application's own Prometheus endpoints.

Every fetch has its own timeout (2 s by default) and size cap; a source that fails, hangs or
answers garbage is skipped for this scrape and reported as ``kumadp_scrape_up{target} 0`` and
``kumadp_scrape_errors_total{target}``; the page itself always answers.

The sources are merged in that order (agent, Envoy, then the apps in the order of the flags)
by ``kumadp.agent.prometheus.Page``: a family a later source shares with an earlier one gets
its samples labelled ``kumadp_source="<target>"`` (``envoy``, ``app``, ``app-2``, ...); one
of another type is dropped and counted in ``kumadp_scrape_dropped_families{target}``.

``kumadp_config_age_seconds`` comes from Envoy itself: the newest of its xDS subscriptions'
``*update_time`` gauges (the last time Envoy accepted a config update: LDS, CDS, EDS or RDS),
so it is absent until Envoy accepted one and when Envoy's stats could not be fetched.

The server (``kumadp.agent.httpserver``) listens on 127.0.0.1 by default
(``--metrics-address 0.0.0.0`` for a remote Prometheus), gzips the page when asked, and
retries binding while its port is taken instead of failing the sidecar.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kumadp.agent.agent_metrics import AgentMetrics
from kumadp.agent.http import httpx, scrape_client
from kumadp.agent.httpserver import HttpServer, Request, Response
from kumadp.agent.prometheus import CONTENT_TYPE, Family, Page, family, parse_families, sample_value
from kumadp.lifecycle import Backoff, retry

log = logging.getLogger(__name__)

DEFAULT_METRICS_PORT = 5670
DEFAULT_TIMEOUT = 2.0
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
ENVOY_TARGET = "envoy"

_ACCEPT = "text/plain;version=0.0.4;q=1.0,*/*;q=0.1"


@dataclass
class Scrape:
    """The outcome of fetching one source."""

    target: str
    url: str
    text: str | None = None
    error: str | None = None
    seconds: float = 0.0
    openmetrics: bool = False
    dropped_families: int = 0


def _labels(scrape: Scrape) -> dict[str, str]:
    return {"target": scrape.target, "url": scrape.url}


def scrape_families(scrapes: Sequence[Scrape], errors: Mapping[str, int]) -> list[Family]:
    """How fetching each source went (``kumadp_scrape_*``), the dropped families aside."""
    if not scrapes:
        return []
    labels = [_labels(s) for s in scrapes]
    return [
        family(
            "kumadp_scrape_up",
            "gauge",
            "1 when the source answered this scrape (Envoy, each application endpoint).",
            [(lab, int(s.error is None)) for lab, s in zip(labels, scrapes, strict=True)],
        ),
        family(
            "kumadp_scrape_duration_seconds",
            "gauge",
            "How long fetching the source took in this scrape.",
            [(lab, round(s.seconds, 6)) for lab, s in zip(labels, scrapes, strict=True)],
        ),
        family(
            "kumadp_scrape_errors_total",
            "counter",
            "Failed fetches of the source (errors, bad status, timeouts) since the start.",
            [(lab, errors.get(s.target, 0)) for lab, s in zip(labels, scrapes, strict=True)],
        ),
    ]


def dropped_families(scrapes: Sequence[Scrape]) -> Family:
    return family(
        "kumadp_scrape_dropped_families",
        "gauge",
        "Families of the source dropped in this scrape: same name as an earlier source's, "
        "another type.",
        [(_labels(s), s.dropped_families) for s in scrapes],
    )


def envoy_last_update_ms(families: Mapping[str, Family]) -> float | None:
    """The newest ``*update_time`` gauge (ms since the epoch) of Envoy's xDS subscriptions."""
    newest: float | None = None
    for name, fam in families.items():
        if not name.endswith("update_time"):
            continue
        for line in fam.samples:
            value = sample_value(line)
            if value is not None and math.isfinite(value) and (newest is None or value > newest):
                newest = value
    return newest


def app_target(index: int) -> str:
    """The target name of the ``index``-th ``--app-metrics-url``: app, app-2, app-3, ..."""
    return "app" if index == 0 else f"app-{index + 1}"


class MetricsServer:
    """Component: serves the merged page on ``host:port`` (port 0: any free port, see
    ``port`` once ``started`` is set)."""

    name = "metrics-server"

    def __init__(
        self,
        agent: AgentMetrics,
        *,
        admin_port: int | None,
        app_urls: Sequence[str] = (),
        port: int = DEFAULT_METRICS_PORT,
        host: str = "127.0.0.1",
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        envoy_used_only: bool = True,
        read_timeout: float = 5.0,
        bind_retry: float = 1.0,
        bind_retry_max: float = 30.0,
    ) -> None:
        self.agent = agent
        self.bind_retry = bind_retry
        self.bind_retry_max = bind_retry_max
        self.host = host
        self.port = port
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.started = asyncio.Event()
        self.errors: dict[str, int] = {}
        self._http = HttpServer(
            "metrics server",
            "/metrics",
            self._serve_page,
            host,
            port,
            read_timeout=read_timeout,
            keep_headers=("accept-encoding",),
        )
        self._targets: list[tuple[str, str]] = []
        if admin_port:
            query = "?usedonly" if envoy_used_only else ""
            url = f"http://127.0.0.1:{admin_port}/stats/prometheus{query}"
            self._targets.append((ENVOY_TARGET, url))
        self._targets += [(app_target(i), url) for i, url in enumerate(app_urls)]
        self._client: httpx.AsyncClient | None = None

    def _new_client(self) -> httpx.AsyncClient:
        # a TLS context costs ~1.3 MB; only https app endpoints need one
        tls = any(url.startswith("https:") for _, url in self._targets)
        return scrape_client(self.timeout, tls)

    # -- the page ------------------------------------------------------------------------
    async def page(self) -> str:
        """Fetch every source in parallel and merge them with the agent's own metrics."""
        if self._client is None:
            self._client = self._new_client()
        scrapes = await asyncio.gather(*(self._fetch(t, u) for t, u in self._targets))
        parsed: list[tuple[Scrape, dict[str, Family]]] = []
        envoy_update_ms: float | None = None
        for scrape in scrapes:
            if scrape.text is None:
                continue
            families = parse_families(scrape.text, openmetrics=scrape.openmetrics)
            scrape.text = None  # free it early
            if scrape.target == ENVOY_TARGET:
                envoy_update_ms = envoy_last_update_ms(families)
            parsed.append((scrape, families))
        page = Page()
        page.add(self.agent.families(envoy_update_ms))
        # Reserve the scrape families' names (and place) before the sources come in; the
        # dropped-families counts are known only once the sources are merged.
        for fam in [*scrape_families(scrapes, self.errors), dropped_families(scrapes)]:
            page.families[fam.name] = fam
        for scrape, families in parsed:
            scrape.dropped_families = page.add(families.values(), scrape.target)
        dropped = dropped_families(scrapes)
        page.families[dropped.name] = dropped  # same key: keeps its place
        return page.render()

    async def _fetch(self, target: str, url: str) -> Scrape:
        scrape = Scrape(target, url)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(self.timeout):
                scrape.text, scrape.openmetrics = await self._get(url)
        except TimeoutError:
            scrape.error = f"no answer within {self.timeout:g}s"
        except Exception as exc:  # any failure of one source only skips that source
            scrape.error = str(exc) or type(exc).__name__
        scrape.seconds = loop.time() - started
        if scrape.error is not None:
            self.errors[target] = self.errors.get(target, 0) + 1
            log.debug("metrics: %s (%s) skipped: %s", target, url, scrape.error)
        return scrape

    async def _get(self, url: str) -> tuple[str, bool]:
        assert self._client is not None
        async with self._client.stream("GET", url, headers={"Accept": _ACCEPT}) as resp:
            if resp.status_code != 200:
                raise RuntimeError(f"HTTP {resp.status_code}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise RuntimeError(f"more than {self.max_bytes} bytes")
                chunks.append(chunk)
            content_type = resp.headers.get("content-type", "")
        text = b"".join(chunks).decode("utf-8", errors="replace")
        return text, content_type.startswith("application/openmetrics-text")

    # -- HTTP ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        if not await self._listen(stop):
            return
        self.port = self._http.port
        self._client = self._client or self._new_client()
        self.started.set()
        log.info(
            "metrics on http://%s:%d/metrics (%s)",
            self.host,
            self.port,
            ", ".join(f"{t} {u}" for t, u in self._targets) or "agent only",
        )
        try:
            await self._http.serve(stop)
        finally:
            await self.aclose()

    async def _listen(self, stop: asyncio.Event) -> bool:
        """Bind, retrying with backoff while the address is taken (say, two sidecars on one
        VM, both on the default port): metrics are not worth losing the sidecar for. False
        when ``stop`` was set first."""
        failures = 0

        async def bind() -> bool:
            await self._http.listen()
            return True

        def failed(exc: Exception, _delay: float) -> None:
            nonlocal failures
            failures += 1
            log.log(
                logging.ERROR if failures == 1 else logging.DEBUG,
                "%s; retrying every %gs at most (the sidecar runs on without /metrics meanwhile)",
                getattr(exc, "strerror", None) or exc,
                self.bind_retry_max,
            )

        backoff = Backoff(self.bind_retry, self.bind_retry_max, jitter=0.0)
        return await retry(bind, backoff, retry_on=(OSError,), stop=stop, on_retry=failed) is True

    async def _serve_page(self, request: Request) -> Response:
        try:
            body = (await self.page()).encode()
        except Exception:
            log.exception("metrics: could not build the page")
            return Response(500, b"could not build the metrics page\n")
        headers: tuple[tuple[str, str], ...] = ()
        if "gzip" in request.headers.get("accept-encoding", "").lower() and len(body) > 1024:
            body = gzip.compress(body, compresslevel=1)
            headers = (("Content-Encoding", "gzip"),)
        return Response(200, body, CONTENT_TYPE, headers)

    async def aclose(self) -> None:
        """Close the HTTP client (``run`` does it; for callers of ``page`` alone)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
