"""The agent's merged /metrics: parsing, merging rules, the agent's own families, and the
server over real HTTP with fake Envoy admin and application endpoints (one that hangs)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kumadp.agent.agent_metrics import AgentMetrics
from kumadp.agent.config import check_metrics_config
from kumadp.agent.dns import DnsStats
from kumadp.agent.errors import ConfigError
from kumadp.agent.metrics import MetricsServer, envoy_last_update_ms
from kumadp.agent.prometheus import (
    CONTENT_TYPE,
    Page,
    add_label,
    family,
    parse_families,
    sample_value,
)
from kumadp.agent.readiness import Readiness
from testkit.fakes import FakeHttpServer, Request
from testkit.procs import until

# An excerpt of Envoy 1.40's GET /stats/prometheus?usedonly for a sidecar (as it prints it:
# TYPE lines only, empty label sets "{}", histograms).
ENVOY = """\
# TYPE envoy_cluster_manager_cds_update_time gauge
envoy_cluster_manager_cds_update_time{} 1754000000123
# TYPE envoy_listener_manager_lds_update_time gauge
envoy_listener_manager_lds_update_time{} 1754000001456
# TYPE envoy_cluster_update_time gauge
envoy_cluster_update_time{envoy_cluster_name="backend"} 1754000000999
# TYPE envoy_cluster_membership_change counter
envoy_cluster_membership_change{envoy_cluster_name="backend"} 1
envoy_cluster_membership_change{envoy_cluster_name="kuma:envoy:admin"} 1
# TYPE envoy_cluster_manager_cluster_added counter
envoy_cluster_manager_cluster_added{} 3
# TYPE envoy_cluster_upstream_rq counter
envoy_cluster_upstream_rq{envoy_response_code="200",envoy_cluster_name="backend"} 7
# TYPE envoy_cluster_upstream_rq_total counter
envoy_cluster_upstream_rq_total{envoy_cluster_name="backend"} 7
# TYPE envoy_server_live gauge
envoy_server_live{} 1
# TYPE envoy_http_downstream_rq_xx counter
envoy_http_downstream_rq_xx{envoy_response_code_class="2",envoy_http_conn_manager_prefix="in"} 7
# TYPE envoy_cluster_upstream_cx_connect_ms histogram
envoy_cluster_upstream_cx_connect_ms_bucket{envoy_cluster_name="backend",le="0.5"} 0
envoy_cluster_upstream_cx_connect_ms_bucket{envoy_cluster_name="backend",le="1"} 2
envoy_cluster_upstream_cx_connect_ms_bucket{envoy_cluster_name="backend",le="+Inf"} 2
envoy_cluster_upstream_cx_connect_ms_sum{envoy_cluster_name="backend"} 1.05
envoy_cluster_upstream_cx_connect_ms_count{envoy_cluster_name="backend"} 2
"""

# What a Python app using prometheus_client serves, plus the awkward cases: a family with the
# same name and type as one of Envoy's, one with the same name and another type, a TYPE line
# repeated, samples without any TYPE, a label value with "}" and an escaped quote.
APP = """\
# HELP demo_app_requests_total Requests served.
# TYPE demo_app_requests_total counter
demo_app_requests_total{path="/"} 3.0
# HELP demo_app_latency_seconds Latency.
# TYPE demo_app_latency_seconds histogram
demo_app_latency_seconds_bucket{le="0.1"} 2.0
demo_app_latency_seconds_bucket{le="+Inf"} 3.0
demo_app_latency_seconds_count 3.0
demo_app_latency_seconds_sum 0.25
# TYPE envoy_cluster_membership_change counter
envoy_cluster_membership_change{envoy_cluster_name="backend"} 42
# HELP envoy_server_live Not Envoy's: a counter under the same name.
# TYPE envoy_server_live counter
envoy_server_live 5
# TYPE demo_app_requests_total counter
demo_app_requests_total{path="/x"} 1.0
untyped_thing 12
odd_labels{text="a}b \\"q\\" c"} 4 1700000000000
# a plain comment

"""


def parse(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """Families by name with their samples, asserting what Prometheus itself insists on:
    one TYPE line per family, no series (name + labels) twice. (The parser names counter
    families without "_total", so Envoy's ``x`` and ``x_total`` counters share a name
    there: their samples are listed together.)"""
    types = type_lines(text)
    assert len(types) == len(set(types)), "a TYPE line twice"
    series = [
        line.rsplit(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")
    ]
    assert len(series) == len(set(series)), "a series twice"
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        out.setdefault(fam.name, []).extend((s.name, dict(s.labels), s.value) for s in fam.samples)
    return out


def type_lines(text: str) -> list[str]:
    return [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]


# -- parsing and merging -----------------------------------------------------------------------


def test_parse_groups_samples_into_families() -> None:
    fams = parse_families(ENVOY)
    hist = fams["envoy_cluster_upstream_cx_connect_ms"]
    assert hist.type == "histogram" and len(hist.samples) == 5
    assert fams["envoy_cluster_manager_cluster_added"].samples == [
        "envoy_cluster_manager_cluster_added{} 3"
    ]
    app = parse_families(APP)
    assert app["demo_app_requests_total"].help == "Requests served."
    assert len(app["demo_app_requests_total"].samples) == 2  # the repeated TYPE merged
    assert app["untyped_thing"].type == "untyped"
    assert "odd_labels" in app


def test_sample_values_and_labels() -> None:
    assert sample_value('odd{text="a}b \\"q\\" c"} 4 1700000000000') == 4.0
    assert sample_value("x{} 1754000000123") == 1754000000123.0
    assert sample_value("x +Inf") == float("inf")
    assert sample_value("x{") is None
    assert add_label("x{} 1", "s", "app") == 'x{s="app"} 1'
    assert add_label("x 1", "s", "app") == 'x{s="app"} 1'
    assert add_label('x{a="b"} 1', "s", "app") == 'x{s="app",a="b"} 1'
    assert add_label('x{s="mine"} 1', "s", "app") == 'x{s="mine"} 1'


def test_merged_envoy_and_app_parse_with_each_family_once() -> None:
    page = Page()
    assert page.add(parse_families(ENVOY).values(), "envoy") == 0
    assert page.add(parse_families(APP).values(), "app") == 1  # envoy_server_live (counter)
    text = page.render()
    assert len(type_lines(text)) == len(set(type_lines(text)))
    fams = parse(text)
    assert len(fams["envoy_cluster_upstream_rq"]) == 2  # Envoy's x and x_total counters
    # The app's family sharing Envoy's name and type: merged, its sample labelled.
    membership = fams["envoy_cluster_membership_change"]
    assert ("envoy_cluster_membership_change_total", {"envoy_cluster_name": "backend"}, 1) in (
        membership
    )
    assert (
        "envoy_cluster_membership_change_total",
        {"kumadp_source": "app", "envoy_cluster_name": "backend"},
        42,
    ) in membership
    # Same name, other type: Envoy's kept, the app's dropped.
    assert fams["envoy_server_live"] == [("envoy_server_live", {}, 1)]
    # The app's own families are there as the app wrote them.
    assert {s[1]["path"] for s in fams["demo_app_requests"]} == {"/", "/x"}
    assert fams["demo_app_latency_seconds"][-1] == ("demo_app_latency_seconds_sum", {}, 0.25)
    assert fams["untyped_thing"] == [("untyped_thing", {}, 12)]
    assert fams["odd_labels"] == [("odd_labels", {"text": 'a}b "q" c'}, 4)]
    assert "# HELP demo_app_requests_total Requests served." in text


def test_two_apps_with_the_same_families_stay_distinct() -> None:
    page = Page()
    page.add(parse_families(APP).values(), "app")
    page.add(parse_families(APP).values(), "app-2")
    fams = parse(page.render())
    sources = {s[1].get("kumadp_source") for s in fams["demo_app_requests"]}
    assert sources == {None, "app-2"}


def test_openmetrics_exemplars_are_stripped() -> None:
    text = '# TYPE a_total counter\na_total 3 # {trace_id="abc"} 1.0 1700000000\n# EOF\n'
    fams = parse_families(text, openmetrics=True)
    assert fams["a_total"].samples == ["a_total 3"]


def test_envoy_config_age_source_is_the_newest_update_time() -> None:
    assert envoy_last_update_ms(parse_families(ENVOY)) == 1754000001456
    assert envoy_last_update_ms(parse_families("# TYPE x gauge\nx 1\n")) is None


# -- the agent's own families ------------------------------------------------------------------


def agent_metrics() -> AgentMetrics:
    readiness = Readiness()
    readiness.set_ready(True)
    dns = DnsStats(queries_udp=5, queries_tcp=1, forwards=2, malformed=1)
    dns.answers[0] = 4
    dns.answers[3] = 2
    return AgentMetrics(
        version="0.1.0",
        envoy_version="1.40.0",
        mesh="default",
        dataplane="web-1",
        watch=SimpleNamespace(connected=True, reconnects=2, updates=5),
        certificates=SimpleNamespace(
            expiration=datetime(2030, 1, 1, tzinfo=UTC), rotations=3, last_rotation=None
        ),
        dns=dns,
        readiness=readiness,
    )


def test_agent_families() -> None:
    now = 1754000011.456
    page = Page()
    page.add(agent_metrics().families(envoy_update_ms=1754000001456, now=now))
    fams = parse(page.render())
    assert fams["kumadp_cp_connected"] == [("kumadp_cp_connected", {}, 1)]
    assert fams["kumadp_cp_reconnects"] == [("kumadp_cp_reconnects_total", {}, 2)]
    assert fams["kumadp_config_age_seconds"][0][2] == pytest.approx(10.0)
    expiry = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    assert fams["kumadp_certificate_expiration_seconds"][0][2] == expiry
    assert fams["kumadp_certificate_rotations"][0][2] == 3
    assert {(s[1]["transport"], s[2]) for s in fams["kumadp_dns_queries"]} == {
        ("udp", 5),
        ("tcp", 1),
    }
    assert {(s[1]["rcode"], s[2]) for s in fams["kumadp_dns_answers"]} == {
        ("NOERROR", 4),
        ("NXDOMAIN", 2),
    }
    assert fams["kumadp_dns_forwards"][0][2] == 2
    assert fams["kumadp_dns_malformed"][0][2] == 1
    assert fams["kumadp_envoy_restarts"][0][2] == 0
    states = {s[1]["state"]: s[2] for s in fams["kumadp_readiness_state"]}
    assert states == {"READY": 1, "NOT_READY": 0, "TERMINATING": 0}
    info = fams["kumadp_info"][0][1]
    assert info == {
        "version": "0.1.0",
        "envoy_version": "1.40.0",
        "mesh": "default",
        "dataplane": "web-1",
    }


def test_agent_families_without_components() -> None:
    """Before the CP watch exists (or without a DP server, or with DNS off) the page still
    has the agent's basics, and what is unknown is left out rather than made up."""
    fams = parse(Page().render() or "")
    assert fams == {}
    page = Page()
    page.add(AgentMetrics(version="0.1.0").families(envoy_update_ms=None))
    fams = parse(page.render())
    assert fams["kumadp_cp_connected"] == [("kumadp_cp_connected", {}, 0)]
    for absent in ("kumadp_config_age_seconds", "kumadp_certificate_expiration_seconds"):
        assert absent not in fams
    assert not any(name.startswith("kumadp_dns_") for name in fams)


def test_sources_are_read_at_scrape_time() -> None:
    watch = SimpleNamespace(connected=False, reconnects=0, updates=0)
    metrics = AgentMetrics(version="0.1.0", watch=watch)
    watch.connected, watch.updates = True, 1
    page = Page()
    page.add(metrics.families(envoy_update_ms=None))
    fams = parse(page.render())
    assert fams["kumadp_cp_connected"][0][2] == 1
    assert fams["kumadp_cp_updates"][0][2] == 1


def test_own_family_label_values_are_escaped() -> None:
    page = Page()
    page.add([family("x", "gauge", "h", [({"v": 'a"b\\c\nd'}, 1.5)])])
    assert parse(page.render())["x"] == [("x", {"v": 'a"b\\c\nd'}, 1.5)]


def test_config_checks() -> None:
    check_metrics_config(0, ["http://127.0.0.1:8080/metrics"])
    with pytest.raises(ConfigError, match="--app-metrics-url: 'localhost:8080' is not"):
        check_metrics_config(5670, ["localhost:8080"])
    with pytest.raises(ConfigError, match="--metrics-port: must be 0-65535"):
        check_metrics_config(70000, [])


# -- the server over HTTP ----------------------------------------------------------------------


def serve_text(text: str, content_type: str = "text/plain; version=0.0.4") -> FakeHttpServer:
    async def handle(request: Request) -> tuple[int, str, bytes]:
        if request.path in ("/stats/prometheus", "/metrics"):
            return 200, content_type, text.encode()
        return 404, "text/plain", b"not found"

    return FakeHttpServer(handle)


@pytest.fixture
def hanging_url() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/metrics"


@pytest.fixture
async def servers() -> AsyncIterator[tuple[FakeHttpServer, FakeHttpServer, FakeHttpServer]]:
    async def broken(_: Request) -> tuple[int, str, bytes]:
        return 500, "text/plain", b"boom"

    async with (
        serve_text(ENVOY) as admin,
        serve_text(APP) as app,
        FakeHttpServer(broken) as bad,
    ):
        yield admin, app, bad


async def start(server: MetricsServer) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(server.run(stop))
    await asyncio.wait_for(server.started.wait(), 5)
    return stop, task


async def test_server_merges_everything_and_skips_what_hangs_or_fails(
    servers: tuple[FakeHttpServer, FakeHttpServer, FakeHttpServer], hanging_url: str
) -> None:
    admin, app, bad = servers
    server = MetricsServer(
        agent_metrics(),
        admin_port=admin.port,
        app_urls=[app.url + "/metrics", hanging_url, bad.url + "/metrics"],
        port=0,
        timeout=0.5,
    )
    stop, task = await start(server)
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            started = time.monotonic()
            resp = await client.get(f"http://127.0.0.1:{server.port}/metrics")
            elapsed = time.monotonic() - started
            assert resp.status_code == 200
            assert resp.headers["content-type"] == CONTENT_TYPE
            assert resp.headers.get("content-encoding") == "gzip"  # httpx asked for it
            assert elapsed < 2.0, elapsed  # the hanging app costs its timeout, no more
            fams = parse(resp.text)
            assert "envoy_cluster_upstream_cx_connect_ms" in fams
            assert "demo_app_requests" in fams
            assert fams["kumadp_cp_connected"][0][2] == 1
            up = {s[1]["target"]: s[2] for s in fams["kumadp_scrape_up"]}
            assert up == {"envoy": 1, "app": 1, "app-2": 0, "app-3": 0}
            errors = {s[1]["target"]: s[2] for s in fams["kumadp_scrape_errors"]}
            assert errors == {"envoy": 0, "app": 0, "app-2": 1, "app-3": 1}
            dropped = {s[1]["target"]: s[2] for s in fams["kumadp_scrape_dropped_families"]}
            assert dropped["app"] == 1
            assert 0 < fams["kumadp_config_age_seconds"][0][2]
            # The counter counts across scrapes; HEAD answers headers only.
            resp = await client.get(f"http://127.0.0.1:{server.port}/metrics")
            errors = {s[1]["target"]: s[2] for s in parse(resp.text)["kumadp_scrape_errors"]}
            assert errors["app-2"] == 2
            head = await client.head(f"http://127.0.0.1:{server.port}/metrics")
            assert head.status_code == 200 and head.content == b""
            other = await client.get(f"http://127.0.0.1:{server.port}/other")
            assert other.status_code == 404
            post = await client.post(f"http://127.0.0.1:{server.port}/metrics")
            assert post.status_code == 405
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_server_answers_without_envoy_or_apps() -> None:
    """Envoy's admin not listening (yet): the agent's part alone, Envoy marked down."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    server = MetricsServer(AgentMetrics(version="0.1.0"), admin_port=closed_port, port=0)
    stop, task = await start(server)
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            resp = await client.get(
                f"http://127.0.0.1:{server.port}/metrics", headers={"Accept-Encoding": "identity"}
            )
        assert "content-encoding" not in resp.headers
        fams = parse(resp.text)
        assert fams["kumadp_scrape_up"] == [
            (
                "kumadp_scrape_up",
                {
                    "target": "envoy",
                    "url": f"http://127.0.0.1:{closed_port}/stats/prometheus?usedonly",
                },
                0,
            )
        ]
        assert not any(name.startswith("envoy_") for name in fams)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_oversized_app_page_is_skipped() -> None:
    async with serve_text("big 1\n" * 1000) as app:
        server = MetricsServer(
            AgentMetrics(version="0.1.0"),
            admin_port=None,
            app_urls=[app.url + "/metrics"],
            port=0,
            max_bytes=100,
        )
        try:
            fams = parse(await server.page())
        finally:
            await server.aclose()
        assert fams["kumadp_scrape_up"][0][2] == 0
        assert "big" not in fams


async def test_port_in_use_is_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    """A taken port does not take the sidecar down: one error line, then the server binds
    as soon as the port is free."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    port = sock.getsockname()[1]
    server = MetricsServer(
        AgentMetrics(version="0.1.0"), admin_port=None, port=port, bind_retry=0.02
    )
    stop = asyncio.Event()
    with caplog.at_level("ERROR", logger="kumadp.agent.metrics"):
        task = asyncio.create_task(server.run(stop))
        try:
            await until(
                lambda: "cannot listen on 127.0.0.1:" in caplog.text or task.done(),
                "the bind error",
                within=5,
            )
            assert not task.done()
            assert not server.started.is_set()
            sock.close()
            await asyncio.wait_for(server.started.wait(), 5)
            async with httpx.AsyncClient(timeout=5) as client:
                resp = await client.get(f"http://127.0.0.1:{port}/metrics")
            assert "kumadp_info" in resp.text
            assert caplog.text.count("cannot listen") == 1
        finally:
            sock.close()
            stop.set()
            await asyncio.wait_for(task, 5)


async def test_stop_while_waiting_for_the_port() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        server = MetricsServer(
            AgentMetrics(version="0.1.0"), admin_port=None, port=sock.getsockname()[1]
        )
        stop = asyncio.Event()
        task = asyncio.create_task(server.run(stop))
        stop.set()
        await asyncio.wait_for(task, 5)
        assert not server.started.is_set()
