"""crosszone: a service of another zone, through that zone's ingress (zones in network
namespaces: ``testkit.zonenet``; a global CP, zone CPs, real agents and Envoys).

- **Reachable**: a service started in zone-b, from the moment its sidecar is READY there
  until a client in zone-a gets an answer from ``<service>.mesh``: zone-b's CP lists it in
  its ingress's availableServices, KDS carries the ingress to the global CP and on to
  zone-a, whose CP gives the service a VIP and its endpoints (zone-b's ingress), and the
  client's agent and Envoy get them. 20 trials (5 with ``--quick``); Kuma's own figure is
  two 1 s KDS ticks (global and zone) plus its 1 s availableServices tick.
- **The ingress hop**: HTTP at a constant 1,000 requests/s (``loadgen``) through a sidecar
  in zone-a, zone-b's ingress and the backend's sidecar (mTLS end to end), beside the same
  call inside zone-b (two sidecars, no ingress, no routing between namespaces); trials
  interleaved, medians of the percentiles.
- **Failover** (``routing.localityAwareLoadBalancing``): two local instances and one in
  zone-b; under a steady request loop through a zone-a sidecar both local instances are
  killed: the time to the first answer from zone-b, and the requests that failed.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from bench.core import QUIET, Figure, Options, Skipped, median, percentile
from bench.datapath import loadgen, start_fastapp
from testkit.crosszone import RequestLoop, Topology
from testkit.mesh import Agent
from testkit.procs import free_port, wait_until
from testkit.zonenet import why_not

KUMA_REACHABLE_S = 2.0  # two 1 s KDS ticks (reference, not measured)


def _sidecar(topo: Topology, zone: str, name: str, service: str, **outbounds: int) -> Agent:
    """An agent beside a fastapp in ``zone``, with explicit outbounds (service -> port)."""
    env, cp = topo.env, topo.zones[zone].cp
    token = topo.token(name)
    with topo.enter(zone):
        app = start_fastapp(env, name)
        doc, inbound = env.dataplane_yaml(name, service, app, outbounds=outbounds)
        return env.start_agent(
            name, doc, cp=cp, token=token, inbound_port=inbound, outbound_ports=outbounds,
            drain_time="0s", extra=QUIET,
        )  # fmt: skip


def _answers(topo: Topology, zone: str, url: str) -> bool:
    try:
        with topo.enter(zone):
            return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _reachable_after(topo: Topology, client: Agent, name: str) -> float:
    """Seconds from ``name``'s sidecar READY in zone-b to an answer through ``client``."""
    token = topo.token(name)
    with topo.enter("zone-b"):
        port = topo.env.start_http_app(name)
        doc, inbound = topo.env.dataplane_yaml(name, name, port)
        agent = topo.env.start_agent(
            name, doc, cp=topo.zones["zone-b"].cp, token=token, inbound_port=inbound,
            wait=False, extra=QUIET,
        )  # fmt: skip
    ready_at: float | None = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ready_at is None:
            with topo.enter("zone-b"):
                if agent.ready():
                    ready_at = time.monotonic()
        else:
            try:
                address = topo.resolve("zone-a", client, name)
            except OSError:
                address = None
            if address and _answers(topo, "zone-a", f"http://{address}/"):
                return time.monotonic() - ready_at
        time.sleep(0.005)
    raise RuntimeError(f"{name} never became reachable from zone-a")


def _failovers(topo: Topology, client: Agent, trials: int) -> list[tuple[float, int, int]]:
    """(seconds to the first remote answer, failed, sent) after killing every local
    instance of ``echo`` under a steady request loop, locality-aware."""
    topo.put_mesh(localityAwareLoadBalancing=True)
    topo.start_service("zone-b", "echo-b1", "echo", extra=QUIET)
    out = []
    for trial in range(trials):
        local = [f"echo-a{2 * trial + 1}", f"echo-a{2 * trial + 2}"]
        for name in local:
            topo.start_service("zone-a", name, "echo", extra=QUIET, drain_time="0s")
        address = wait_until(lambda: topo.resolve("zone-a", client, "echo"), what="echo.mesh")
        out.append(_failover(topo, f"http://{address}/", local))
    return out


def _failover(topo: Topology, url: str, local: list[str]) -> tuple[float, int, int]:
    wait_until(
        lambda: all(topo.ask("zone-a", url) in local for _ in range(10)),
        timeout=30,
        what="requests staying in zone-a",
    )
    with RequestLoop(topo.star, "zone-a", url) as loop:
        wait_until(lambda: len(loop.outcomes) >= 50, what="a steady flow")
        killed = time.monotonic()
        doomed = {f"{kind}-{name}" for name in local for kind in ("agent", "app")}
        for proc in topo.env.procs.procs:
            if proc.name in doomed:
                proc.kill_group()

        def first_remote() -> float | None:
            found = [o.at for o in loop.since(killed) if o.instance and o.instance not in local]
            return min(found) if found else None

        remote = wait_until(first_remote, what="an answer from zone-b")
        wait_until(lambda: loop.since(remote + 2.0), what="two seconds after")
    after = loop.since(killed)
    return remote - killed, sum(o.instance is None for o in after), len(after)


def bench_crosszone(tmp: Path, opts: Options) -> list[Figure]:
    reason = why_not()
    if reason is not None:
        raise Skipped(reason)
    trials = 5 if opts.quick else 20
    load_trials, seconds = (2, 3.0) if opts.quick else (3, 8.0)
    topo = Topology(tmp, ("zone-a", "zone-b"))
    delays: list[float] = []
    fixed: dict[str, list[dict[str, Any]]] = {"cross": [], "local": []}
    try:
        topo.start(extra=QUIET)
        topo.start_ingress("zone-b")
        # the ingress hop: one backend in zone-b, a client in each zone
        _sidecar(topo, "zone-b", "backend-1", "backend")
        with topo.enter("zone-a"):
            cross_port = free_port()
        with topo.enter("zone-b"):
            local_port = free_port()
        _sidecar(topo, "zone-a", "web-a", "web", backend=cross_port)
        _sidecar(topo, "zone-b", "web-b", "web", backend=local_port)
        ports = {"cross": ("zone-a", cross_port), "local": ("zone-b", local_port)}
        for zone, port in ports.values():
            url = f"http://127.0.0.1:{port}/"
            wait_until(partial(_answers, topo, zone, url), timeout=30, what=f"backend in {zone}")
        for _ in range(load_trials):
            for path, (zone, port) in ports.items():
                with topo.enter(zone):
                    result = loadgen(
                        port, "--rate", "1000", "--duration", str(seconds), "--warmup", "1"
                    )
                if result["failed"]:
                    raise RuntimeError(f"{path}: {result['failed']} failed: {result['errors']}")
                fixed[path].append(result)
        # reachable: a client in zone-a (bind-outbounds: <service>.mesh), new services in b
        client = topo.start_service(
            "zone-a", "client-1", "client", by_name=True, extra=QUIET, drain_time="0s"
        )
        for n in range(trials):
            delays.append(_reachable_after(topo, client, f"svc-{n}"))
        failovers = _failovers(topo, client, 1 if opts.quick else 3)
    finally:
        topo.close()

    def med(path: str, key: str) -> float:
        return median([float(r[key]) for r in fixed[path]])

    figures = [
        Figure(
            f"crosszone: service started in zone-b -> answering in zone-a, {q} "
            f"({trials} trials, from its sidecar READY)",
            percentile(delays, 50 if q == "p50" else 99) * 1000,
            "ms",
            KUMA_REACHABLE_S * 1000,
            "Kuma's two 1 s KDS ticks (reference, not measured)",
            "<= 1000 ms" if q == "p99" else "-",
            percentile(delays, 99) <= 1.0 if q == "p99" else None,
            "availableServices pushed on change, KDS pushed both ways, no tick"
            if q == "p99"
            else "",
        )
        for q in ("p50", "p99")
    ]
    switch = median([f[0] for f in failovers]) * 1000
    failed, sent = sum(f[1] for f in failovers), sum(f[2] for f in failovers)
    figures.append(
        Figure(
            f"crosszone failover: every local instance killed -> first answer from zone-b "
            f"(locality-aware, median of {len(failovers)})",
            switch,
            "ms",
            None,
            "",
            "within seconds",
            switch <= 5000,
            f"{failed} of {sent} requests failed after the kills (steady loop through the "
            "client's sidecar); retries leave the dead priority, health checks catch up",
        )
    )
    for q in ("p50", "p99"):
        ours, base = med("cross", f"{q}_ms"), med("local", f"{q}_ms")
        figures.append(
            Figure(
                f"crosszone 1,000 rps: {q} latency zone-a -> zone-b's ingress -> backend "
                f"(median of {load_trials} x {seconds:.0f} s)",
                ours,
                "ms",
                base,
                "the same call inside zone-b (two sidecars, no ingress)",
                "-",
                None,
                f"the ingress hop and the route between namespaces add {ours - base:.2f} ms",
            )
        )
    return figures
