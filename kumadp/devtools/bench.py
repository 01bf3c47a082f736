"""``scripts/bench``: performance figures, each beside a baseline measured in the same run.

    scripts/bench                 # every benchmark
    scripts/bench startup         # only some, by name
    scripts/bench --no-write      # print, don't rewrite BENCHMARKS.md / BENCHMARKS.json

Medians and percentiles over repeated trials: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import yaml

from kumadp.devtools.mesh import MeshEnv
from kumadp.devtools.procs import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
TCP_PROXY_TYPE = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: float | None
    baseline_name: str
    target: str
    met: bool
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline  # type: ignore[operator]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _first_response(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.002)
    raise TimeoutError(f"no response on :{port}")


def _bare_envoy_config(listen: int, app_port: int, admin: int) -> dict[str, object]:
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "inbound",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.tcp_proxy",
                                    "typed_config": {
                                        "@type": TCP_PROXY_TYPE,
                                        "stat_prefix": "inbound",
                                        "cluster": "app",
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "app",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "app",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": app_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }


def bench_startup(tmp: Path, trials: int = 5) -> list[Figure]:
    """``kumadp run`` to the first request answered through the new sidecar, vs bare Envoy."""
    envoy = shutil.which("envoy")
    assert envoy, "envoy not found"
    env = MeshEnv(tmp)
    ours: list[float] = []
    bare: list[float] = []
    try:
        env.start_cp(store="memory")
        app_port = env.start_http_app("app-1")
        for i in range(trials):
            # bare Envoy, equivalent static config (inbound listener -> app)
            listen, admin = free_port(), free_port()
            cfg = tmp / f"bare-{i}.yaml"
            cfg.write_text(yaml.safe_dump(_bare_envoy_config(listen, app_port, admin)))
            t0 = time.monotonic()
            proc = env.procs.start(
                f"bare-{i}", [envoy, "-c", str(cfg), "--disable-hot-restart", "--log-level", "warn"]
            )
            _first_response(listen, t0 + 20)
            bare.append(time.monotonic() - t0)
            proc.stop()

            doc, inbound = env.dataplane_yaml(f"app-{i}", "app", app_port, protocol="tcp")
            t0 = time.monotonic()
            agent = env.start_agent(
                f"app-{i}", doc, inbound_port=inbound, wait=False, drain_time="0s"
            )
            _first_response(inbound, t0 + 30)
            ours.append(time.monotonic() - t0)
            agent.proc.stop()
    finally:
        env.close()
    med, base = statistics.median(ours), statistics.median(bare)
    return [
        Figure(
            f"startup: kumadp run -> first request (median of {trials})",
            med * 1000,
            "ms",
            base * 1000,
            "bare Envoy, static config",
            "<= 1000 ms and <= 8x",
            med <= 1.0 and med <= 8 * base,
        ),
    ]


def bench_convergence(tmp: Path, trials: int = 20) -> list[Figure]:
    """A dataplane joins; time until a running Envoy has the new endpoint (admin /clusters)."""
    env = MeshEnv(tmp)
    samples: list[float] = []
    try:
        cp = env.start_cp(store="memory")
        env.start_service("backend-0", "backend")
        web, _ = env.start_service("web-1", "web", upstream_service="backend")
        wait_until(lambda: web.cluster_endpoints("backend"), what="first endpoint")
        with httpx.Client(timeout=5) as client:
            for i in range(trials):
                port = free_port()
                doc = {
                    "type": "Dataplane",
                    "mesh": "default",
                    "name": f"backend-x{i}",
                    "networking": {
                        "address": "127.0.0.1",
                        "inbound": [
                            {
                                "port": port,
                                "servicePort": port + 1,
                                "tags": {"kuma.io/service": "backend"},
                            }
                        ],
                    },
                }
                want = f"127.0.0.1:{port}"
                t0 = time.monotonic()
                resp = client.put(f"{cp.url}/meshes/default/dataplanes/backend-x{i}", json=doc)
                assert resp.status_code == 201, resp.text
                while want not in web.cluster_endpoints("backend"):
                    if time.monotonic() - t0 > 10:
                        raise TimeoutError("endpoint never arrived")
                    time.sleep(0.001)
                samples.append(time.monotonic() - t0)
                client.delete(f"{cp.url}/meshes/default/dataplanes/backend-x{i}")
    finally:
        env.close()
    p50, p99 = percentile(samples, 50) * 1000, percentile(samples, 99) * 1000
    return [
        Figure(
            f"convergence: new endpoint -> running Envoy, p50 ({trials} trials)",
            p50,
            "ms",
            1000.0,
            "Kuma's default refresh interval (1 s)",
            "-",
            True,
        ),
        Figure(
            f"convergence: new endpoint -> running Envoy, p99 ({trials} trials)",
            p99,
            "ms",
            1000.0,
            "Kuma's default refresh interval (1 s)",
            "<= 200 ms",
            p99 <= 200,
        ),
    ]


BENCHMARKS: dict[str, Callable[[Path], list[Figure]]] = {
    "startup": bench_startup,
    "convergence": bench_convergence,
}


def machine() -> str:
    out = subprocess.run(["envoy", "--version"], capture_output=True, text=True).stdout
    found = re.search(r"version: \S+?/(\d+\.\d+\.\d+)", out)
    version = found.group(1) if found else "?"
    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, Envoy {version}, "
        f"{platform.system()} {platform.release()}"
    )


def render(figures: list[Figure], skipped: dict[str, str]) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `scripts/bench` on {time.strftime('%Y-%m-%d')}; machine: {machine()}.",
        "Every figure is a median or percentile over repeated trials, beside a baseline",
        "measured in the same run. These machines are shared and noisy: read the ratios.",
        "",
        "| figure | value | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        base = f"{f.baseline:.1f} {f.unit} ({f.baseline_name})" if f.baseline else "-"
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else "-"
        lines.append(
            f"| {f.name} | {f.value:.1f} {f.unit} | {base} | {ratio} | {f.target} | "
            f"{'yes' if f.met else 'NO'} |"
        )
    for name, why in skipped.items():
        lines.append(f"| {name} | skipped: {why} | | | | |")
    notes = [f"- {f.name}: {f.note}" for f in figures if f.note]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", choices=[[], *BENCHMARKS], default=[])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    names = args.names or list(BENCHMARKS)
    figures: list[Figure] = []
    skipped: dict[str, str] = {}
    for name in names:
        print(f"==> {name}", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"kumadp-bench-{name}-") as tmp:
            try:
                got = BENCHMARKS[name](Path(tmp))
            except Exception as exc:  # a figure is never invented: say why it is missing
                skipped[name] = f"{type(exc).__name__}: {exc}"
                print(f"    skipped: {skipped[name]}", flush=True)
                continue
        for f in got:
            ratio = f"  ({f.ratio:.2f}x {f.baseline_name})" if f.ratio is not None else ""
            print(
                f"    {f.name}: {f.value:.1f} {f.unit}{ratio}  target {f.target}: "
                f"{'met' if f.met else 'MISSED'}",
                flush=True,
            )
        figures += got
    report = render(figures, skipped)
    print(report)
    if not args.no_write:
        (ROOT / "BENCHMARKS.md").write_text(report)
        (ROOT / "BENCHMARKS.json").write_text(
            json.dumps([{**asdict(f), "ratio": f.ratio} for f in figures], indent=2) + "\n"
        )
    sys.exit(0)


if __name__ == "__main__":
    main()
