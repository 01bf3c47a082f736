"""Metrics end to end: the agent's merged /metrics (real Envoy, a real app endpoint, one that
hangs) and the CP's /metrics."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testkit.mesh import Agent, MeshEnv
from testkit.procs import wait_until

pytestmark = pytest.mark.e2e

Samples = dict[str, list[tuple[str, dict[str, str], float]]]


class _AppMetrics(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (
            b"# HELP demo_app_requests_total Requests served by the demo app.\n"
            b"# TYPE demo_app_requests_total counter\n"
            b"demo_app_requests_total 3.0\n"
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def app_metrics_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AppMetrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def hanging_url() -> Iterator[str]:
    """Accepts connections (the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/metrics"


def parse(text: str) -> Samples:
    """Families by name; each TYPE line once. (The parser names counter families without
    "_total", so Envoy's ``x`` and ``x_total`` counters share a name: samples listed
    together.)"""
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types)), "a TYPE line twice"
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        out.setdefault(fam.name, []).extend((s.name, dict(s.labels), s.value) for s in fam.samples)
    return out


def scrape(agent: Agent) -> Samples:
    resp = httpx.get(f"http://127.0.0.1:{agent.metrics_port}/metrics", timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(resp.text)


def value(fams: Samples, family: str, **labels: str) -> float | None:
    for _, sample_labels, sample_value in fams.get(family, []):
        if all(sample_labels.get(k) == v for k, v in labels.items()):
            return sample_value
    return None


def test_merged_metrics_and_cp_metrics(
    env: MeshEnv, app_metrics_url: str, hanging_url: str
) -> None:
    cp = env.start_cp()
    web, _ = env.start_service("web-1", "web", extra=["--app-metrics-url", app_metrics_url])

    def web_page_complete() -> Samples | None:
        fams = scrape(web)
        connected = value(fams, "kumadp_cp_connected") == 1
        return fams if connected and "kumadp_config_age_seconds" in fams else None

    fams = wait_until(web_page_complete, what="web-1's /metrics with the CP connected")
    assert any(name.startswith("envoy_") for name in fams)
    assert value(fams, "envoy_server_live") == 1
    assert value(fams, "demo_app_requests") == 3  # the app's counter, as the app wrote it
    assert value(fams, "kumadp_scrape_up", target="app") == 1
    assert value(fams, "kumadp_scrape_up", target="envoy") == 1
    assert value(fams, "kumadp_readiness_state", state="READY") == 1
    assert 0 <= (value(fams, "kumadp_config_age_seconds") or -1) < 60
    assert value(fams, "kumadp_dns_queries", transport="udp") is not None
    assert value(fams, "kumadp_envoy_restarts") == 0
    assert value(fams, "kumadp_info", dataplane="web-1", mesh="default") == 1

    # A second sidecar whose application endpoint hangs: the page still answers in time,
    # with Envoy's and the agent's series, and says the app part is missing.
    backend, _ = env.start_service("backend-1", "backend", extra=["--app-metrics-url", hanging_url])
    started = time.monotonic()
    fams = scrape(backend)
    assert time.monotonic() - started < 3.0
    assert any(name.startswith("envoy_") for name in fams)
    assert "kumadp_cp_connected" in fams
    assert value(fams, "kumadp_scrape_up", target="app") == 0
    assert (value(fams, "kumadp_scrape_errors", target="app") or 0) >= 1
    assert "demo_app_requests" not in fams

    # The CP's own metrics: one ADS stream per agent.
    def cp_metrics() -> Samples:
        resp = httpx.get(f"http://127.0.0.1:{cp.diagnostics_port}/metrics", timeout=5)
        assert resp.status_code == 200
        return parse(resp.text)

    cp_fams = wait_until(
        lambda: (f := cp_metrics()) and value(f, "kumadp_cp_connected_proxies") == 2 and f,
        what="the CP counting 2 connected proxies",
    )
    assert (value(cp_fams, "kumadp_cp_xds_acks") or 0) >= 2
    assert (value(cp_fams, "kumadp_cp_xds_pushes") or 0) >= 2
    assert value(cp_fams, "kumadp_cp_xds_nacks") == 0
    assert value(cp_fams, "kumadp_cp_agent_watchers") == 2
    assert "kumadp_cp_generation_seconds" in cp_fams
