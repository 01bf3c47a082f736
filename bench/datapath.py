"""datapath: HTTP requests through two sidecars with mTLS versus straight to the app.

    load generator -> web's Envoy (outbound to "backend") -> mTLS -> backend's Envoy
                   (inbound) -> backend app                  (the mesh path)
    load generator -> backend app                             (the baseline, same generator)

The backend app is ``fastapp`` (raw asyncio, answers ``ok``). At a constant 1,000 requests
per second (``loadgen``, open loop, wrk2-style) the latency percentiles of both paths, trials
interleaved; at maximum rate (``wrk``, closed loop, 16 connections; ``loadgen --max`` if wrk
is missing) the throughput of both. The generator's own cost is in both figures.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.core import QUIET, Figure, Options, close_fast, median, start_quiet_cp
from testkit.mesh import Agent, MeshEnv
from testkit.procs import free_port, wait_until

ISTIO_P99_MS = 2.7  # Istio's published added p99 for two proxies (reference)


def enable_mtls(cp_url: str, expiration: str = "24h") -> None:
    doc = {
        "type": "Mesh",
        "name": "default",
        "mtls": {
            "enabledBackend": "ca-1",
            "backends": [
                {
                    "name": "ca-1",
                    "type": "builtin",
                    "dpCert": {"rotation": {"expiration": expiration}},
                }
            ],
        },
    }
    resp = httpx.put(f"{cp_url}/meshes/default", json=doc, timeout=10)
    if resp.status_code not in (200, 201):
        raise RuntimeError(f"enabling mTLS: {resp.status_code} {resp.text[:300]}")


def start_fastapp(env: MeshEnv, name: str) -> int:
    port = free_port()
    proc = env.procs.start(
        f"fastapp-{name}",
        [sys.executable, "-m", "bench.fastapp", "--port", str(port)],
    )
    wait_until(lambda: "listening on" in proc.output(), what=f"fastapp {name}", proc=proc)
    return port


@dataclass
class TwoSidecars:
    backend: Agent
    web: Agent
    app_port: int  # the backend app, direct
    mesh_port: int  # web's outbound to backend


def two_sidecars(env: MeshEnv, cert_expiration: str = "24h") -> TwoSidecars:
    """CP with mTLS on, backend app + sidecar, web sidecar with an outbound to backend."""
    cp = start_quiet_cp(env)
    enable_mtls(cp.url, cert_expiration)
    app_port = start_fastapp(env, "backend")
    doc, inbound = env.dataplane_yaml("backend-1", "backend", app_port)
    backend = env.start_agent("backend-1", doc, inbound_port=inbound, drain_time="0s", extra=QUIET)
    mesh_port = free_port()
    doc, inbound = env.dataplane_yaml(
        "web-1", "web", start_fastapp(env, "web"), outbounds={"backend": mesh_port}
    )
    web = env.start_agent(
        "web-1",
        doc,
        inbound_port=inbound,
        outbound_ports={"backend": mesh_port},
        drain_time="0s",
        extra=QUIET,
    )

    def through_mesh() -> bool:
        return httpx.get(f"http://127.0.0.1:{mesh_port}/", timeout=2).text == "ok"

    wait_until(through_mesh, timeout=30, what="first request through both sidecars")
    return TwoSidecars(backend, web, app_port, mesh_port)


def loadgen(port: int, *args: str, timeout: float = 600) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", "--port", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed: {out.stderr[-500:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def wrk(port: int, seconds: float, connections: int = 16) -> float:
    """Requests per second from ``wrk`` (closed loop), or from ``loadgen --max``."""
    binary = shutil.which("wrk")
    if binary is None:
        result = loadgen(
            port, "--max", "--duration", str(seconds), "--connections", str(connections)
        )
        return float(result["rps"])
    out = subprocess.run(
        [binary, "-t1", f"-c{connections}", f"-d{seconds:.0f}s", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    ).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if not found:
        raise RuntimeError(f"cannot read wrk's output: {out[-300:]}")
    if errors:
        raise RuntimeError(f"wrk saw errors: {errors.group(0)}")
    return float(found.group(1))


def bench_datapath(tmp: Path, opts: Options) -> list[Figure]:
    trials, seconds = (2, 3.0) if opts.quick else (3, 8.0)
    max_seconds = 3.0 if opts.quick else 5.0
    env = MeshEnv(tmp)
    fixed: dict[str, list[dict[str, Any]]] = {"direct": [], "mesh": []}
    peak: dict[str, list[float]] = {"direct": [], "mesh": []}
    try:
        mesh = two_sidecars(env)
        ports = {"direct": mesh.app_port, "mesh": mesh.mesh_port}
        for _ in range(trials):
            for path, port in ports.items():
                result = loadgen(
                    port, "--rate", "1000", "--duration", str(seconds), "--warmup", "1"
                )
                if result["failed"]:
                    raise RuntimeError(
                        f"{path}: {result['failed']} failed requests: {result['errors']}"
                    )
                fixed[path].append(result)
        for _ in range(trials):
            for path, port in ports.items():
                peak[path].append(wrk(port, max_seconds))
    finally:
        close_fast(env)

    def med(path: str, key: str) -> float:
        return median([float(r[key]) for r in fixed[path]])

    lag = max(med("direct", "lag_p99_ms"), med("mesh", "lag_p99_ms"))
    figures = []
    for q in ("p50", "p99"):
        ours, base = med("mesh", f"{q}_ms"), med("direct", f"{q}_ms")
        added = ours - base
        met = added <= 1.5 if q == "p99" else None
        note = f"added {added:.2f} ms; scheduler lag p99 {lag:.2f} ms (same for both paths)"
        if q == "p99":
            note += f"; Istio publishes +{ISTIO_P99_MS} ms p99 for two proxies"
        if met is False:
            note = (
                "two Envoys and an mTLS hop on 2 cores shared with the load generator and the "
                "app; the tail follows the machine's load; " + note
            )
        figures.append(
            Figure(
                f"datapath 1,000 rps: {q} latency through two mTLS sidecars "
                f"(median of {trials} x {seconds:.0f} s)",
                ours,
                "ms",
                base,
                "straight to the app, same generator",
                "added <= 1.5 ms" if q == "p99" else "-",
                met,
                note,
            )
        )
    ours_rps, base_rps = median(peak["mesh"]), median(peak["direct"])
    tool = "wrk" if shutil.which("wrk") else "loadgen --max"
    figures.append(
        Figure(
            f"datapath max rate: requests/s through two mTLS sidecars ({tool}, 16 connections, "
            f"median of {trials})",
            ours_rps,
            "req/s",
            base_rps,
            "straight to the app, same generator",
            "-",
            None,
            "the two Envoys, the app and the generator share 2 cores",
        )
    )
    return figures
