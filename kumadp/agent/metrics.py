"""The agent's merged Prometheus endpoint (Kuma's port 5670): ``GET /metrics``.

One page, three kinds of sources, fetched in parallel on every scrape:

1. the agent's own metrics (``kumadp_*``): CP connection, config age, certificate,
   DNS counters, readiness, Envoy restarts, and how the other sources' scrapes went;
2. Envoy's stats from its admin API, ``GET /stats/prometheus?usedonly`` (stats Envoy never
   touched are left out, which keeps the page several times smaller);
3. each ``--app-metrics-url``: the application's own Prometheus endpoints.

Every fetch has its own timeout (2 s by default) and size cap; a source that fails, hangs or
answers garbage is skipped for this scrape and reported as ``kumadp_scrape_up{target} 0`` and
``kumadp_scrape_errors_total{target}``; the page itself always answers.

Merging, so that the page parses and Prometheus accepts it:

- each source is parsed into metric families (``# HELP``/``# TYPE`` plus the sample lines that
  belong to them by name: ``x`` for counters, gauges and untyped, ``x_bucket``/``x_sum``/
  ``x_count`` for histograms, ``x``/``x_sum``/``x_count`` for summaries; a sample outside the
  family announced before it starts an untyped family of its own name);
- families are written once each, in the order first seen (agent, Envoy, then the apps in
  the order of the flags), with one ``# HELP`` (the first source's) and one ``# TYPE``;
- a family name a later source shares with an earlier one, with the same type, is merged:
  the later source's samples are appended with an extra label ``kumadp_source="<target>"``
  (``envoy``, ``app``, ``app-2``, ...) so no two series are identical; a sample that
  already has that label is kept as is;
- with a different type the later source's family is dropped (counted in
  ``kumadp_scrape_dropped_families{target}``): mixing types under one name would break
  parsers;
- sample lines are otherwise copied verbatim (labels, values, timestamps). Lines that are not
  comments or samples are dropped. Apps answering OpenMetrics get their exemplars stripped.

``kumadp_config_age_seconds`` comes from Envoy itself: the newest of its xDS subscriptions'
``*update_time`` gauges (the last time Envoy accepted a config update: LDS, CDS, EDS or RDS),
so it is absent until Envoy accepted one and when Envoy's stats could not be fetched.

The server listens on 127.0.0.1 by default (``--metrics-address 0.0.0.0`` for a remote
Prometheus), gzips the page when asked, and retries binding while its port is taken instead
of failing the sidecar. Plain string handling, no Prometheus library: the product does not
depend on one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from kumadp.agent.errors import ConfigError

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_METRICS_PORT = 5670
DEFAULT_TIMEOUT = 2.0
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
SOURCE_LABEL = "kumadp_source"
ENVOY_TARGET = "envoy"

_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?=[{\s])")
_ACCEPT = "text/plain;version=0.0.4;q=1.0,*/*;q=0.1"


# -- parsing and merging ---------------------------------------------------------------------


class Family:
    """One metric family: its name, type, help and sample lines (verbatim)."""

    __slots__ = ("help", "name", "samples", "type", "typed")

    def __init__(self, name: str, type_: str = "untyped", help_: str | None = None) -> None:
        self.name = name
        self.type = type_
        self.help = help_
        self.typed = False  # a # TYPE line was seen for it
        self.samples: list[str] = []

    def allowed(self) -> tuple[str, ...]:
        name = self.name
        if self.type == "histogram":
            return (name + "_bucket", name + "_sum", name + "_count")
        if self.type == "summary":
            return (name, name + "_sum", name + "_count")
        return (name,)


def parse_families(text: str, *, openmetrics: bool = False) -> dict[str, Family]:
    """The families in a Prometheus text page, by name, in the order first seen."""
    families: dict[str, Family] = {}
    current: Family | None = None
    allowed: tuple[str, ...] = ()
    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            continue
        if line[0] == "#":
            parts = line.split(None, 3)
            if len(parts) < 3 or parts[1] not in ("HELP", "TYPE") or not _NAME.match(parts[2]):
                continue  # a plain comment (or # EOF, # UNIT)
            name = parts[2]
            family = families.get(name)
            if family is None:
                family = families[name] = Family(name)
            if parts[1] == "HELP":
                if family.help is None:
                    family.help = parts[3] if len(parts) > 3 else ""
            elif not family.typed:
                kind = parts[3].strip().lower() if len(parts) > 3 else "untyped"
                family.type = kind if kind in _TYPES else "untyped"
                family.typed = True
            current, allowed = family, family.allowed()
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name = match.group(1)
        if current is None or name not in allowed:
            family = families.get(name)
            if family is None:
                family = families[name] = Family(name)
            elif name not in family.allowed():
                continue  # e.g. a bare "x" after histogram "x": cannot be placed
            current, allowed = family, family.allowed()
        if openmetrics and " # " in line:
            line = line.split(" # ", 1)[0].rstrip()  # an exemplar
        current.samples.append(line)
    return families


def _label_set_end(line: str, start: int) -> int:
    """Index just past the ``}`` closing the label set opened at ``line[start]``."""
    quoted = False
    i = start + 1
    while i < len(line):
        ch = line[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "}":
            return i + 1
        i += 1
    return len(line)


def sample_value(line: str) -> float | None:
    """The value of a sample line (None when it cannot be read)."""
    match = _SAMPLE.match(line)
    if match is None:
        return None
    rest_at = match.end()
    if rest_at < len(line) and line[rest_at] == "{":
        rest_at = _label_set_end(line, rest_at)
    fields = line[rest_at:].split()
    if not fields:
        return None
    try:
        return float(fields[0])
    except ValueError:
        return None


def add_label(line: str, name: str, value: str) -> str:
    """The sample line with ``name="value"`` added first in its label set (unchanged when
    the sample already has a label of that name)."""
    match = _SAMPLE.match(line)
    if match is None:
        return line
    at = match.end()
    pair = f'{name}="{escape_label_value(value)}"'
    if at < len(line) and line[at] == "{":
        end = _label_set_end(line, at)
        labels = line[at + 1 : end - 1]
        if re.search(rf'(?:^|[,\s]){re.escape(name)}\s*=\s*"', labels):
            return line
        sep = "," if labels.strip() else ""
        return f"{line[: at + 1]}{pair}{sep}{line[at + 1 :]}"
    return f"{line[:at]}{{{pair}}}{line[at:]}"


class Page:
    """Families merged from several sources (see the module docstring for the rules)."""

    def __init__(self) -> None:
        self.families: dict[str, Family] = {}

    def add(self, families: Iterable[Family], source: str | None = None) -> int:
        """Merge one source's families; returns how many were dropped for a type conflict."""
        dropped = 0
        for family in families:
            if not family.samples:
                continue
            have = self.families.get(family.name)
            if have is None:
                self.families[family.name] = family
            elif have.type != family.type:
                dropped += 1
                log.debug(
                    "metrics: dropped %s family %s from %s (already a %s)",
                    family.type,
                    family.name,
                    source,
                    have.type,
                )
            elif source is None:
                have.samples.extend(family.samples)
            else:
                have.samples.extend(add_label(s, SOURCE_LABEL, source) for s in family.samples)
        return dropped

    def render(self) -> str:
        out: list[str] = []
        for family in self.families.values():
            if not family.samples:
                continue
            if family.help is not None:
                out.append(f"# HELP {family.name} {family.help}".rstrip())
            out.append(f"# TYPE {family.name} {family.type}")
            out.extend(family.samples)
        return "\n".join(out) + "\n" if out else ""


# -- writing our own families ----------------------------------------------------------------


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


Labels = Mapping[str, str]


def family(
    name: str,
    type_: str,
    help_: str,
    samples: Iterable[tuple[Labels, float]] | float,
) -> Family:
    """A family of our own: ``samples`` is one value (no labels) or (labels, value) pairs."""
    fam = Family(name, type_, help_)
    fam.typed = True
    pairs: Iterable[tuple[Labels, float]] = (
        [({}, samples)] if isinstance(samples, int | float) else samples
    )
    for labels, value in pairs:
        text = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items())
        fam.samples.append(
            f"{name}{{{text}}} {format_value(value)}" if text else f"{name} {format_value(value)}"
        )
    return fam


# -- the agent's own metrics -----------------------------------------------------------------


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


@dataclass
class AgentMetrics:
    """The agent's own state, read at scrape time. Every source is optional and read by
    duck typing, so a missing component simply leaves its metrics out:

    - ``watch``: ``connected`` (bool), ``reconnects``, ``updates`` (the CP watch stream);
    - ``certificates``: ``expiration`` (datetime | None), ``rotations``;
    - ``dns``: ``stats.snapshot()`` (the resolver's counters);
    - ``readiness``: ``state`` (a ``State``);
    - ``envoy``: ``restarts`` (0 when it has no such attribute: Envoy exiting ends the agent).
    """

    version: str
    envoy_version: str = ""
    mesh: str = ""
    dataplane: str = ""
    watch: Any = None
    certificates: Any = None
    dns: Any = None
    readiness: Any = None
    envoy: Any = None
    started: float = field(default_factory=time.time)
    # When set, watch/certificates/dns/envoy are read from this object's attributes at
    # scrape time (the agent's composition root), so components made later are seen.
    live: Any = None

    def _source(self, name: str) -> Any:
        if self.live is not None:
            found = getattr(self.live, name, None)
            if found is not None:
                return found
        return getattr(self, name)

    def families(self, envoy_update_ms: float | None, now: float | None = None) -> list[Family]:
        now = time.time() if now is None else now
        out = [
            family(
                "kumadp_info",
                "gauge",
                "The agent's version, its Envoy's version, its dataplane.",
                [
                    (
                        {
                            "version": self.version,
                            "envoy_version": self.envoy_version,
                            "mesh": self.mesh,
                            "dataplane": self.dataplane,
                        },
                        1,
                    )
                ],
            ),
            family(
                "kumadp_start_time_seconds",
                "gauge",
                "When the agent started (unix time).",
                self.started,
            ),
        ]
        watch = self._source("watch")
        out.append(
            family(
                "kumadp_cp_connected",
                "gauge",
                "1 while the agent's watch stream to the control plane is open.",
                int(bool(getattr(watch, "connected", False))),
            )
        )
        out.append(
            family(
                "kumadp_cp_reconnects_total",
                "counter",
                "Times the watch stream to the control plane was lost and reopened.",
                int(getattr(watch, "reconnects", 0) or 0),
            )
        )
        out.append(
            family(
                "kumadp_cp_updates_total",
                "counter",
                "Updates (identity, name table) received from the control plane.",
                int(getattr(watch, "updates", 0) or 0),
            )
        )
        if envoy_update_ms is not None and envoy_update_ms > 0:
            out.append(
                family(
                    "kumadp_config_age_seconds",
                    "gauge",
                    "Seconds since Envoy last accepted a config update (its xDS update_time).",
                    max(0.0, round(now - envoy_update_ms / 1000.0, 3)),
                )
            )
        certs = self._source("certificates")
        if certs is not None:
            expiration = getattr(certs, "expiration", None)
            if expiration is not None:
                out.append(
                    family(
                        "kumadp_certificate_expiration_seconds",
                        "gauge",
                        "When the mesh certificate Envoy serves expires (unix time).",
                        expiration.timestamp(),
                    )
                )
            out.append(
                family(
                    "kumadp_certificate_rotations_total",
                    "counter",
                    "Mesh certificates installed, the first one included.",
                    int(getattr(certs, "rotations", 0) or 0),
                )
            )
        out += self._dns_families()
        out.append(
            family(
                "kumadp_envoy_restarts_total",
                "counter",
                "Times Envoy was restarted by the agent.",
                int(getattr(self._source("envoy"), "restarts", 0) or 0),
            )
        )
        readiness = self.readiness
        if readiness is not None:
            state = str(getattr(readiness.state, "value", readiness.state))
            out.append(
                family(
                    "kumadp_readiness_state",
                    "gauge",
                    "The agent's readiness (/ready): 1 for the current state.",
                    [
                        ({"state": s}, int(s == state))
                        for s in ("READY", "NOT_READY", "TERMINATING")
                    ],
                )
            )
        return out

    def _dns_families(self) -> list[Family]:
        dns = self._source("dns")
        if dns is None or not hasattr(dns, "stats"):
            return []
        snap: Mapping[str, Any] = dns.stats.snapshot()
        out = [
            family(
                "kumadp_dns_queries_total",
                "counter",
                "DNS queries received by the resolver, by transport.",
                [({"transport": t}, n) for t, n in sorted(snap.get("queries", {}).items())],
            ),
            family(
                "kumadp_dns_answers_total",
                "counter",
                "DNS answers sent by the resolver, by response code.",
                [({"rcode": rc}, n) for rc, n in sorted(snap.get("answers", {}).items())],
            ),
        ]
        helps = {
            "mesh_answers": "Queries answered from the mesh name table.",
            "nxdomain": "Unknown names under the mesh domain.",
            "cache_hits": "Local answers served already packed.",
            "forwards": "Queries relayed to an upstream resolver.",
            "forward_failures": "Relayed queries no upstream answered well (SERVFAIL sent).",
            "forward_tcp_retries": "Truncated upstream UDP answers retried over TCP.",
            "truncated": "UDP answers sent truncated.",
            "malformed": "Malformed DNS packets received.",
            "dropped": "DNS packets not answered at all.",
        }
        for key, value in snap.items():
            if key in ("queries", "answers") or not isinstance(value, int):
                continue
            help_ = helps.get(key, f"DNS resolver counter {key}.")
            out.append(family(f"kumadp_dns_{key}_total", "counter", help_, value))
        return out


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


# -- configuration ---------------------------------------------------------------------------


def check_app_metrics_urls(urls: Sequence[str]) -> list[str]:
    """The ``--app-metrics-url`` values, checked (http:// or https:// with a host)."""
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"--app-metrics-url: {url!r} is not an http:// or https:// URL "
                "(the application's Prometheus endpoint, e.g. http://127.0.0.1:8080/metrics)"
            )
    return list(urls)


def check_metrics_config(port: int | None, app_urls: Sequence[str]) -> None:
    if port is not None and not 0 <= port <= 65535:
        raise ConfigError("--metrics-port: must be 0-65535")
    check_app_metrics_urls(app_urls)


def metrics_components(agent: Any, readiness: Any, admin_port: int | None) -> list[MetricsServer]:
    """The metrics server for the agent's composition root (``kumadp.agent.run._Agent``):
    none when ``config.metrics_port`` is None. Reads ``config``, ``identity``, ``version``
    and, at scrape time, ``watch``, ``certificates``, ``dns`` and ``envoy`` from ``agent``."""
    import kumadp

    config = agent.config
    if getattr(config, "metrics_port", None) is None:
        return []
    metrics = AgentMetrics(
        version=kumadp.__version__,
        envoy_version=str(getattr(agent.version, "version", "")),
        mesh=agent.identity.mesh,
        dataplane=agent.identity.name,
        readiness=readiness,
        live=agent,
    )
    return [
        MetricsServer(
            metrics,
            admin_port=admin_port,
            app_urls=config.app_metrics,
            port=config.metrics_port,
            host=config.metrics_address,
        )
    ]


def app_target(index: int) -> str:
    """The target name of the ``index``-th ``--app-metrics-url``: app, app-2, app-3, ..."""
    return "app" if index == 0 else f"app-{index + 1}"


# -- the server ------------------------------------------------------------------------------


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
}


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
        self._read_timeout = read_timeout
        self._targets: list[tuple[str, str]] = []
        if admin_port:
            query = "?usedonly" if envoy_used_only else ""
            url = f"http://127.0.0.1:{admin_port}/stats/prometheus{query}"
            self._targets.append((ENVOY_TARGET, url))
        self._targets += [(app_target(i), url) for i, url in enumerate(app_urls)]
        self._client: Any = None

    def _needs_tls(self) -> bool:
        return any(url.startswith("https:") for _, url in self._targets)

    # -- the page ------------------------------------------------------------------------
    async def page(self) -> str:
        """Fetch every source in parallel and merge them with the agent's own metrics."""
        if self._client is None:
            self._client = _new_client(self.timeout, self._needs_tls())
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
        server = await self._listen(stop)
        if server is None:
            return
        self.port = server.sockets[0].getsockname()[1]
        self._client = self._client or _new_client(self.timeout, self._needs_tls())
        self.started.set()
        log.info(
            "metrics on http://%s:%d/metrics (%s)",
            self.host,
            self.port,
            ", ".join(f"{t} {u}" for t, u in self._targets) or "agent only",
        )
        try:
            async with server:
                await stop.wait()
                server.close()
        finally:
            await self.aclose()

    async def _listen(self, stop: asyncio.Event) -> asyncio.Server | None:
        """Bind, retrying with backoff while the address is taken (say, two sidecars on one
        VM, both on the default port): metrics are not worth losing the sidecar for. None
        when ``stop`` was set first."""
        delay = self.bind_retry
        failures = 0
        while True:
            try:
                return await asyncio.start_server(self._handle, self.host, self.port)
            except OSError as exc:
                failures += 1
                log.log(
                    logging.ERROR if failures == 1 else logging.DEBUG,
                    "metrics server cannot listen on %s:%d: %s; retrying every %gs at most "
                    "(the sidecar runs on without /metrics meanwhile)",
                    self.host,
                    self.port,
                    exc.strerror or exc,
                    self.bind_retry_max,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
                return None
            delay = min(delay * 2, self.bind_retry_max)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, target, gzip_ok = await asyncio.wait_for(
                _read_request(reader), self._read_timeout
            )
            status, body, extra = 200, b"", ""
            if not method:
                status, body = 400, b"bad request\n"
            elif target.split("?", 1)[0] != "/metrics":
                status, body = 404, b"not found\n"
            elif method not in ("GET", "HEAD"):
                status, body = 405, b"method not allowed\n"
            else:
                try:
                    body = (await self.page()).encode()
                except Exception:
                    log.exception("metrics: could not build the page")
                    status, body = 500, b"could not build the metrics page\n"
                if status == 200 and gzip_ok and len(body) > 1024:
                    body = gzip.compress(body, compresslevel=1)
                    extra = "Content-Encoding: gzip\r\n"
            content_type = CONTENT_TYPE if status == 200 else "text/plain; charset=utf-8"
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
                f"Content-Type: {content_type}\r\n{extra}"
                f"Content-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode() + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (
            TimeoutError,
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def aclose(self) -> None:
        """Close the HTTP client (``run`` does it; for callers of ``page`` alone)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, bool]:
    """(method, target, accepts gzip); method is empty for a malformed request line."""
    request_line = (await reader.readline()).decode("latin-1").strip()
    gzip_ok = False
    while True:
        header = (await reader.readuntil(b"\n")).decode("latin-1").strip()
        if not header:
            break
        key, _, value = header.partition(":")
        if key.strip().lower() == "accept-encoding" and "gzip" in value.lower():
            gzip_ok = True
    parts = request_line.split()
    if len(parts) != 3:
        return "", "", False
    return parts[0], parts[1], gzip_ok


def _new_client(timeout: float, tls: bool) -> Any:
    import httpx

    return httpx.AsyncClient(
        verify=tls,  # a TLS context costs ~1.3 MB; only https app endpoints need one
        timeout=httpx.Timeout(timeout),
        trust_env=False,
        follow_redirects=False,
        limits=httpx.Limits(max_keepalive_connections=4),
    )
