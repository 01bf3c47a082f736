"""crosszone-severed: a zone whose ingress dies is cut off by the callers' outlier detection
(zones in network namespaces: ``testkit.zonenet``; a global CP, three zone CPs, real
agents, Envoys and ingresses).

``edge`` runs in zone-b and zone-c (one instance each, behind each zone's ingress); a
client in zone-a calls ``edge.mesh`` in a steady loop. Zone-b's ingress is SIGKILLed (agent
and Envoy): its address stops answering, but nothing tells zone-a's CP at once (zone-b's CP
only sees a stream end; the ingress stays listed until its deregistration). The figures:

- **Severed**: from the kill until the client's Envoy stops choosing zone-b's ingress
  (outlier-ejected, or removed by the control planes), with a MeshCircuitBreaker on
  ``edge`` (outlier detection, ``interval: 1s``, ``totalFailures.consecutive: 3``), beside
  the same kill with outlier detection disabled (only the control planes remove it).
- **Failed**: the loop's requests that failed after the kill, in each case (the mesh's
  default MeshRetry retries on another host, so most failures never reach the app).

Trials alternate between the two settings; medians.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.core import QUIET, Figure, Options, Skipped, median
from testkit.crosszone import RequestLoop, Topology
from testkit.mesh import Agent
from testkit.procs import wait_until
from testkit.zonenet import why_not

POLICY = "/meshes/default/meshcircuitbreakers/edge-outliers"
INTERVAL_S = 1.0


def _policy(disabled: bool) -> dict[str, Any]:
    return {
        "type": "MeshCircuitBreaker",
        "mesh": "default",
        "name": "edge-outliers",
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [
                {
                    "targetRef": {"kind": "MeshService", "name": "edge"},
                    "default": {
                        "outlierDetection": {
                            "disabled": disabled,
                            "interval": f"{INTERVAL_S:.0f}s",
                            "baseEjectionTime": "60s",
                            "maxEjectionPercent": 100,
                            "detectors": {"totalFailures": {"consecutive": 3}},
                        }
                    },
                }
            ],
        },
    }


def _choosable(topo: Topology, client: Agent, address: str) -> bool:
    """Whether the client's Envoy may still send ``edge`` requests to ``address``: listed
    and not outlier-ejected."""
    with topo.enter("zone-a"):
        host = client.cluster_hosts("edge").get(address)
    return host is not None and not host.get("health_status", {}).get("failed_outlier_check")


def _both_zones(topo: Topology, url: str) -> bool:
    seen = {topo.ask("zone-a", url) for _ in range(12)}
    return seen == {"edge-b1", "edge-c1"}


def _trial(topo: Topology, client: Agent, url: str, disabled: bool) -> tuple[float, int, int]:
    """(seconds until zone-b's ingress is no longer chosen, failed, sent)."""
    topo.call(None, "PUT", POLICY, _policy(disabled)).raise_for_status()
    address = f"{topo.star.address('zone-b')}:{topo.INGRESS_PORT}"
    wait_until(lambda: _choosable(topo, client, address), timeout=60, what="zone-b listed")
    wait_until(lambda: _both_zones(topo, url), timeout=60, what="edge answering from b and c")
    ingress = topo.zones["zone-b"].ingress
    assert ingress is not None
    with RequestLoop(topo.star, "zone-a", url) as loop:
        wait_until(lambda: len(loop.outcomes) >= 50, what="a steady flow")
        killed = time.monotonic()
        ingress.proc.kill_group()
        wait_until(
            lambda: not _choosable(topo, client, address),
            timeout=60,
            interval=0.01,
            what="zone-b's ingress no longer chosen",
        )
        severed = time.monotonic() - killed
        wait_until(lambda: loop.since(killed + severed + 1.0), what="a second after")
    after = loop.since(killed)
    topo.start_ingress("zone-b")
    return severed, sum(o.instance is None for o in after), len(after)


def bench_crosszone_severed(tmp: Path, opts: Options) -> list[Figure]:
    reason = why_not()
    if reason is not None:
        raise Skipped(reason)
    rounds = 1 if opts.quick else 3
    results: dict[bool, list[tuple[float, int, int]]] = {False: [], True: []}
    topo = Topology(tmp, ("zone-a", "zone-b", "zone-c"))
    try:
        topo.start(extra=QUIET)
        for zone in ("zone-b", "zone-c"):
            topo.start_ingress(zone)
            topo.start_service(zone, f"edge-{zone[-1]}1", "edge", extra=QUIET)
        client = topo.start_service(
            "zone-a", "client-1", "client", by_name=True, extra=QUIET, drain_time="0s"
        )
        address = wait_until(lambda: topo.resolve("zone-a", client, "edge"), what="edge.mesh")
        url = f"http://{address}/"
        for _ in range(rounds):
            for disabled in (False, True):
                results[disabled].append(_trial(topo, client, url, disabled))
    finally:
        topo.close()

    def summary(disabled: bool) -> tuple[float, int, int]:
        rows = results[disabled]
        return median([r[0] for r in rows]), sum(r[1] for r in rows), sum(r[2] for r in rows)

    with_od, without = summary(False), summary(True)
    n = len(results[False])
    return [
        Figure(
            f"crosszone severed: zone-b's ingress killed -> no longer chosen by zone-a's "
            f"Envoy (outlier detection, interval {INTERVAL_S:.0f}s; median of {n})",
            with_od[0] * 1000,
            "ms",
            without[0] * 1000,
            "the same kill with outlier detection disabled (the control planes remove it)",
            f"<= {INTERVAL_S * 1000:.0f} ms",
            with_od[0] <= INTERVAL_S,
            f"requests failed after the kill: {with_od[1]} of {with_od[2]} with outlier "
            f"detection, {without[1]} of {without[2]} without",
        ),
    ]


__all__ = ["bench_crosszone_severed"]
