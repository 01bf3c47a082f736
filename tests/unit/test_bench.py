"""The benchmark plumbing (no real benchmark runs here): figures, percentiles, the report and
its JSON, the command line, time bounds, and the simulated xDS client's protocol."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from bench import cli as bench_main
from bench.core import Figure, Options, Skipped, median, percentile, render, to_json
from bench.loadgen import _pct
from kumadp.xds import types
from testkit.ads_client import AdsClient

JSON_KEYS = {"name", "value", "unit", "baseline", "ratio", "target", "met"}


def _figures() -> list[Figure]:
    return [
        Figure("fast thing", 50.0, "ms", 100.0, "the old way", "<= 80 ms", True),
        Figure("slow thing", 300.0, "ms", 100.0, "the old way", "<= 200 ms", False, "too slow"),
        Figure("context", 7.0, "MB", None, "-", "-", None, "for scale"),
    ]


# -- math ---------------------------------------------------------------------------------
def test_percentile_interpolates_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 100.0
    assert percentile(list(reversed(values)), 50) == pytest.approx(50.5)  # order does not matter
    assert percentile([3.0], 99) == 3.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_median_and_loadgen_percentiles() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([1.0, 2.0, 3.0, 4.0]) == 2.5
    with pytest.raises(ValueError):
        median([])
    assert _pct([], 99) is None
    assert _pct([0.001, 0.002, 0.003], 100) == pytest.approx(3.0)  # seconds in, ms out


def test_ratio_needs_a_nonzero_baseline() -> None:
    fast, slow, context = _figures()
    assert fast.ratio == pytest.approx(0.5)
    assert slow.ratio == pytest.approx(3.0)
    assert context.ratio is None
    assert Figure("x", 1.0, "s", 0.0, "zero", "-", None).ratio is None


# -- the report ---------------------------------------------------------------------------
def test_render_has_the_table_machine_notes_and_skips() -> None:
    text = render(
        _figures(),
        {"dns": "`dnsperf` not found"},
        machine_text="2 cores, test box",
        command="scripts/bench",
        date="2030-01-02",
    )
    assert text.startswith("# Benchmarks\n")
    assert "Measured by `scripts/bench` on 2030-01-02." in text
    assert "Machine: 2 cores, test box." in text
    assert "| figure | value | baseline | ratio | target | met |" in text
    assert "| fast thing | 50.0 ms | 100 ms (the old way) | 0.50x | <= 80 ms | yes |" in text
    assert "| slow thing | 300 ms | 100 ms (the old way) | 3.00x | <= 200 ms | **NO** |" in text
    assert "| context | 7.00 MB | - | - | - | - |" in text
    assert "| dns | skipped: `dnsperf` not found | | | | |" in text
    missed = text.split("## Missed targets", 1)[1]
    assert "- **slow thing**: too slow" in missed
    assert "- context: for scale" in text.split("## Notes", 1)[1]
    assert "- dns: `dnsperf` not found" in text.split("## Skipped", 1)[1]


def test_json_has_one_object_per_figure_with_the_agreed_keys() -> None:
    doc = json.loads(to_json(_figures(), {"dns": "no dnsperf"}))
    figures = [d for d in doc if "skipped" not in d]
    assert len(figures) == 3
    for d in figures:
        assert JSON_KEYS <= set(d)
    assert figures[0]["ratio"] == pytest.approx(0.5)
    assert figures[1]["met"] is False
    assert figures[2]["baseline"] is None and figures[2]["ratio"] is None
    assert {"name": "dns", "skipped": "no dnsperf"} in doc


def test_figure_line_says_met_or_missed() -> None:
    fast, slow, context = _figures()
    assert "target <= 80 ms: met" in fast.line()
    assert "ratio 3.00x" in slow.line() and "MISSED" in slow.line()
    assert "baseline" not in context.line()


# -- the command line ---------------------------------------------------------------------
def test_list_names_every_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    bench_main.main(["--list"])
    out = capsys.readouterr().out
    for name in (
        "startup",
        "convergence",
        "cp-scale",
        "generation",
        "datapath",
        "dns",
        "memory",
        "rotation",
        "names",
    ):
        assert name in out
    assert set(bench_main.BENCHMARKS) <= {line.split()[0] for line in out.splitlines()}


def test_python_dash_m_list_works() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "cp-scale" in out.stdout


def test_unknown_benchmark_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench_main.main(["no-such-bench"])
    assert exc.value.code == 2
    assert "unknown benchmark no-such-bench" in capsys.readouterr().err


@dataclass(frozen=True)
class _Fake(bench_main.Benchmark):
    fn: Callable[[Path, Options], list[Figure]] = lambda tmp, opts: []

    def load(self) -> Callable[[Path, Options], list[Figure]]:
        return self.fn


def test_main_runs_selected_benchmarks_writes_and_reports_skips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[Options] = []

    def good(tmp: Path, opts: Options) -> list[Figure]:
        assert tmp.is_dir()
        seen.append(opts)
        return _figures()[:1]

    def cannot(tmp: Path, opts: Options) -> list[Figure]:
        raise Skipped("no tool here")

    def broken(tmp: Path, opts: Options) -> list[Figure]:
        raise RuntimeError("boom\nlog tail line")

    def slow(tmp: Path, opts: Options) -> list[Figure]:
        signal.pause()  # hangs until the time bound's SIGALRM cuts it
        return _figures()

    fakes = {
        "good": _Fake("x", "x", 10, "good", good),
        "cannot": _Fake("x", "x", 10, "cannot", cannot),
        "broken": _Fake("x", "x", 10, "broken", broken),
        "slow": _Fake("x", "x", 0.2, "slow", slow),
        "unselected": _Fake("x", "x", 10, "unselected", good),
    }
    monkeypatch.setattr(bench_main, "BENCHMARKS", fakes)
    monkeypatch.setattr(bench_main, "machine", lambda: "test box")
    started = time.monotonic()
    bench_main.main(
        ["good", "cannot", "broken", "slow", "--quick", "--write", "--output-dir", str(tmp_path)]
    )
    assert time.monotonic() - started < 4  # the slow one was cut at its bound
    assert seen == [Options(quick=True)]  # "unselected" did not run
    out = capsys.readouterr().out
    assert "fast thing: 50.0 ms" in out
    md = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| fast thing |" in md
    assert "| cannot | skipped: no tool here |" in md
    assert "| broken | skipped: failed: RuntimeError: boom |" in md  # first line only
    assert "slow exceeded its 0 s time bound" in md or "time bound" in md
    doc = json.loads((tmp_path / "BENCHMARKS.json").read_text())
    assert [d["name"] for d in doc if "skipped" not in d] == ["fast thing"]
    assert {d["name"] for d in doc if "skipped" in d} == {"cannot", "broken", "slow"}


def test_subset_runs_do_not_write_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_main, "BENCHMARKS", {"good": _Fake("x", "x", 10, "good")})
    monkeypatch.setattr(bench_main, "machine", lambda: "test box")
    bench_main.main(["good", "--output-dir", str(tmp_path)])
    assert not (tmp_path / "BENCHMARKS.md").exists()


# -- the simulated xDS client ---------------------------------------------------------------
def _any(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def _cla(cluster: str, port: int) -> endpoint_pb2.ClusterLoadAssignment:
    address = address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=port)
    )
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=cluster,
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                lb_endpoints=[
                    endpoint_components_pb2.LbEndpoint(
                        endpoint=endpoint_components_pb2.Endpoint(address=address)
                    )
                ]
            )
        ],
    )


def test_ads_client_acks_subscribes_to_eds_and_reports_endpoints() -> None:
    async def scenario() -> None:
        client = AdsClient("default.dp-1")
        eds = cluster_pb2.Cluster(name="svc-1", type=cluster_pb2.Cluster.EDS)
        static = cluster_pb2.Cluster(name="localhost:8080", type=cluster_pb2.Cluster.STATIC)
        cds = discovery_pb2.DiscoveryResponse(
            version_info="c1",
            nonce="1",
            type_url=types.CLUSTER,
            resources=[_any(eds), _any(static)],
        )
        out = client.on_response(cds, 1.0)
        assert [(r.type_url, r.version_info, r.response_nonce) for r in out] == [
            (types.CLUSTER, "c1", "1"),
            (types.ENDPOINT, "", ""),
        ]
        assert list(out[1].resource_names) == ["svc-1"]
        assert client.clusters == {"svc-1", "localhost:8080"}
        lds = discovery_pb2.DiscoveryResponse(version_info="l1", nonce="2", type_url=types.LISTENER)
        assert [r.type_url for r in client.on_response(lds, 2.0)] == [types.LISTENER]
        assert not client.complete.is_set()  # EDS still missing

        eds_resp = discovery_pb2.DiscoveryResponse(
            version_info="e1",
            nonce="3",
            type_url=types.ENDPOINT,
            resources=[_any(_cla("svc-1", 1))],
        )
        (ack,) = client.on_response(eds_resp, 3.0)
        assert (ack.version_info, ack.response_nonce, list(ack.resource_names)) == (
            "e1",
            "3",
            ["svc-1"],
        )
        assert client.complete.is_set() and client.complete_at == 3.0
        assert client.endpoints["svc-1"] == {("127.0.0.1", 1)}

        waiting = client.watch_endpoint("svc-1", ("127.0.0.1", 2))
        client.on_response(eds_resp, 4.0)  # same endpoints again: still waiting
        assert not waiting.done()
        changed = discovery_pb2.DiscoveryResponse(
            version_info="e2",
            nonce="4",
            type_url=types.ENDPOINT,
            resources=[_any(_cla("svc-1", 2))],
        )
        client.on_response(changed, 5.0)
        assert waiting.done() and waiting.result() == 5.0

        # the same clusters again: ACK only, no new subscription
        cds2 = discovery_pb2.DiscoveryResponse(
            version_info="c2", nonce="5", type_url=types.CLUSTER, resources=[_any(eds)]
        )
        assert [r.type_url for r in client.on_response(cds2, 6.0)] == [types.CLUSTER]

    asyncio.run(scenario())
