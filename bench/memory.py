"""memory: the agent's resident memory with Envoy excluded (psutil on the agent's own Python
process; Envoy is its child and not counted), idle and under load.

Two mTLS sidecars (as in ``datapath``, with the DNS resolver and SDS on, the defaults);
idle = median of samples after settling; under load = the largest sample while ``wrk``
(or ``loadgen --max``) drives requests through both sidecars. Baseline: a bare Python
interpreter idling in ``asyncio`` (``python -c "import asyncio; ..."``), measured in the
same run: what any Python agent pays before doing anything.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import psutil

from bench.core import Figure, Options, close_fast, median, rss_mb, uss_mb
from bench.datapath import two_sidecars, wrk
from testkit.mesh import MeshEnv
from testkit.procs import wait_until

BARE = "import asyncio, sys; print('up', flush=True); asyncio.run(asyncio.sleep(120))"


def bench_memory(tmp: Path, opts: Options) -> list[Figure]:
    settle, load_s = (2.0, 4.0) if opts.quick else (5.0, 10.0)
    env = MeshEnv(tmp)
    try:
        bare = env.procs.start("bare-python", [sys.executable, "-c", BARE])
        wait_until(lambda: "up" in bare.output(), what="bare interpreter", proc=bare)
        mesh = two_sidecars(env)
        agents = {"backend": mesh.backend.proc.pid, "web": mesh.web.proc.pid}
        time.sleep(settle)
        idle: dict[str, list[float]] = {k: [] for k in agents}
        base: list[float] = []
        unique: dict[str, list[float]] = {k: [] for k in agents}
        base_unique: list[float] = []
        envoys = [
            child.pid
            for pid in agents.values()
            for child in psutil.Process(pid).children(recursive=True)
            if "envoy" in child.name()
        ]
        envoy_rss: list[float] = []
        for _ in range(10):
            for k, pid in agents.items():
                idle[k].append(rss_mb(pid))
                unique[k].append(uss_mb(pid))
            base.append(rss_mb(bare.pid))
            base_unique.append(uss_mb(bare.pid))
            envoy_rss.extend(rss_mb(pid) for pid in envoys)
            time.sleep(0.2)
        loaded: dict[str, list[float]] = {k: [] for k in agents}
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                for k, pid in agents.items():
                    loaded[k].append(rss_mb(pid))
                stop.wait(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            rps = wrk(mesh.mesh_port, load_s)
        finally:
            stop.set()
            sampler.join()
    finally:
        close_fast(env)
    baseline = median(base)
    idle_mb = max(median(v) for v in idle.values())
    loaded_mb = max(max(v) for v in loaded.values())
    figures = []
    for label, value in (("idle", idle_mb), ("under load", loaded_mb)):
        met = value <= 45
        note = (
            f"load: {rps:,.0f} req/s through both sidecars for {load_s:.0f} s"
            if label != "idle"
            else ""
        )
        if not met:
            note = (
                "imports alone take most of it (about 56 MB after importing the agent: "
                "grpcio, protobuf with the Envoy and agent protos, cryptography, httpx, "
                "dnslib, yaml); see the bare-interpreter baseline for the floor"
                + (f"; {note}" if note else "")
            )
        figures.append(
            Figure(
                f"memory: agent RSS without Envoy, {label} (larger of 2 agents)",
                value,
                "MB",
                baseline,
                "bare Python interpreter idling in asyncio",
                "<= 45 MB",
                met,
                note,
            )
        )
    if envoy_rss:
        figures.append(
            Figure(
                "memory: Envoy RSS beside it, idle (median over both sidecars)",
                median(envoy_rss),
                "MB",
                None,
                "-",
                "-",
                None,
                "for comparison: the Envoy each agent runs",
            )
        )
    uss = max(median(v) for v in unique.values())
    figures.append(
        Figure(
            "memory: agent USS without Envoy, idle (larger of 2 agents)",
            uss,
            "MB",
            median(base_unique),
            "bare Python interpreter idling in asyncio (USS)",
            "-",
            None,
            "unique set size: shared library pages (grpcio, cryptography, protobuf, Python) "
            "excluded, so this is what each additional agent on a host costs",
        )
    )
    return figures
