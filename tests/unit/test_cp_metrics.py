"""The CP's /metrics on the diagnostics app: Prometheus text from the live objects."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
from prometheus_client.parser import text_string_to_metric_families

import kumadp
from kumadp.cp.diagnostics import create_diagnostics_app
from kumadp.cp.metrics import CpMetrics
from kumadp.cp.reconcile import ReconcileStats


def values(text: str) -> dict[str, float]:
    """``sample name -> value`` (unlabelled samples), asserting each family appears once."""
    out: dict[str, float] = {}
    seen: set[str] = set()
    for fam in text_string_to_metric_families(text):
        assert fam.name not in seen, fam.name
        seen.add(fam.name)
        for sample in fam.samples:
            if not sample.labels:
                out[sample.name] = sample.value
    return out


def live() -> tuple[SimpleNamespace, ReconcileStats, CpMetrics]:
    xds = SimpleNamespace(streams=2, acks=10, nacks=1)
    stats = ReconcileStats(generations=4, snapshots_set=3, last_generation_seconds=0.0042)
    metrics = CpMetrics(
        xds=xds,
        reconcile_stats=stats,
        hub=SimpleNamespace(watchers=2),
        agent_channel=SimpleNamespace(signed=5),
    )
    return xds, stats, metrics


def test_cp_metrics_text_parses_and_follows_the_live_objects() -> None:
    xds, stats, metrics = live()
    got = values(metrics.render())
    assert got["kumadp_cp_connected_proxies"] == 2
    assert got["kumadp_cp_xds_pushes_total"] == 3
    assert got["kumadp_cp_xds_acks_total"] == 10
    assert got["kumadp_cp_xds_nacks_total"] == 1
    assert got["kumadp_cp_generations_total"] == 4
    assert got["kumadp_cp_generation_seconds"] == 0.0042
    assert got["kumadp_cp_reconcile_errors_total"] == 0
    assert got["kumadp_cp_agent_watchers"] == 2
    assert got["kumadp_cp_certificates_signed_total"] == 5
    info = next(
        f for f in text_string_to_metric_families(metrics.render()) if f.name == "kumadp_cp_info"
    )
    assert info.samples[0].labels == {"version": kumadp.__version__, "mode": "standalone"}
    # Read at every scrape, not copied.
    xds.streams, xds.nacks = 0, 2
    stats.errors = 1
    got = values(metrics.render())
    assert got["kumadp_cp_connected_proxies"] == 0
    assert got["kumadp_cp_xds_nacks_total"] == 2
    assert got["kumadp_cp_reconcile_errors_total"] == 1


def test_missing_sources_leave_their_metrics_out() -> None:
    got = values(CpMetrics().render())
    assert "kumadp_cp_connected_proxies" not in got
    assert "kumadp_cp_start_time_seconds" in got


async def test_diagnostics_serves_metrics() -> None:
    _, _, metrics = live()
    app = create_diagnostics_app(lambda: True, metrics=metrics.render)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cp") as client:
        resp = await client.get("/metrics")
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert values(resp.text)["kumadp_cp_connected_proxies"] == 2
        assert (await client.get("/ready")).text == "READY\n"
    plain = create_diagnostics_app(lambda: True)
    transport = httpx.ASGITransport(app=plain)
    async with httpx.AsyncClient(transport=transport, base_url="http://cp") as client:
        assert (await client.get("/metrics")).status_code == 404
