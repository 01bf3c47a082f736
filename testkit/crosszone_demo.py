"""The cross-zone part of the multi-zone demo: a client in zone-a calls ``backend.mesh``,
served only in zone-b, through zone-b's ingress; each hop is printed with what its Envoy
counted. Zones in network namespaces (``testkit.zonenet``): root only.

    python -m testkit.crosszone_demo [--requests N]

(``scripts/demo --multizone`` runs it after the control planes part, when it can.)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx

from testkit.crosszone import Topology
from testkit.demo import info, step
from testkit.mesh import Agent
from testkit.procs import cleanup_on_signals, wait_until
from testkit.zonenet import why_not


def _counter(topo: Topology, zone: str, agent: Agent, name: str) -> int:
    return topo.envoy_stat(zone, agent, name)


def run_crosszone_demo(tmp: Path, requests: int, *, skip_ok: bool = False) -> int:
    """``skip_ok``: a machine without network namespaces is no failure (the part is
    optional in ``scripts/demo --multizone``)."""
    reason = why_not()
    if reason is not None:
        print(f"cross-zone part skipped: {reason}", file=sys.stderr)
        return 0 if skip_ok else 2
    topo = Topology(tmp, ("zone-a", "zone-b"))
    try:
        step("a global CP (wan namespace) and two zone CPs, each zone in its own namespace")
        started = time.perf_counter()
        topo.start()
        info(f"zone-a {topo.star.address('zone-a')}, zone-b {topo.star.address('zone-b')}")
        info(
            "mesh default with mTLS: one root on global, an intermediate per zone "
            f"({time.perf_counter() - started:.1f}s)"
        )
        step("zone-b: a zone ingress (zone token from the global CP) and backend-1")
        ingress = topo.start_ingress("zone-b")
        backend = topo.start_service("zone-b", "backend-1", "backend")
        advertised = f"{topo.star.address('zone-b')}:{topo.INGRESS_PORT}"
        info(f"ingress zi-zone-b advertises {advertised}: the only address zone-a can reach")
        step("zone-a: web-1, whose app calls http://backend.mesh")
        web = topo.start_service("zone-a", "web-1", "web", by_name=True, upstream_service="backend")
        address = wait_until(lambda: topo.resolve("zone-a", web, "backend"), what="the name")
        info(f"backend.mesh -> {address} (web-1's own loopback listener for backend)")
        url = f"http://127.0.0.1:{topo.app_ports['web-1']}/hello"
        step(f"{requests} requests to web-1's app")
        answers = []
        for _ in range(requests):
            with topo.enter("zone-a"):
                body = wait_until(lambda: httpx.get(url, timeout=5).json(), what="an answer")
            answers.append(body["upstream"]["instance"])
        info(f"answered by {', '.join(sorted(set(answers)))}")
        step("each hop, with what its Envoy counted")
        hops = [
            ("zone-a  web-1 app", "calls backend.mesh", None),
            (
                "zone-a  web-1 sidecar",
                f"mTLS, SNI backend{{mesh=default}}, to {advertised}",
                _counter(topo, "zone-a", web, "cluster.backend.upstream_rq_total"),
            ),
            (
                "zone-b  ingress zi-zone-b",
                "reads the SNI, forwards the TLS stream untouched",
                _counter(topo, "zone-b", ingress, "cluster.default_backend.upstream_cx_total"),
            ),
            (
                "zone-b  backend-1 sidecar",
                "terminates mTLS: the caller is spiffe://default/web",
                _counter(
                    topo,
                    "zone-b",
                    backend,
                    f"http.localhost_{topo.app_ports['backend-1']}.downstream_rq_total",
                ),
            ),
            ("zone-b  backend-1 app", "answers", None),
        ]
        for name, what, count in hops:
            counted = "" if count is None else f"  ({count})"
            info(f"{name:28} {what}{counted}")
        return 0
    finally:
        step("stopping everything")
        topo.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5)
    args = parser.parse_args()
    with cleanup_on_signals(), tempfile.TemporaryDirectory(prefix="kumadp-crosszone-") as tmp:
        sys.exit(run_crosszone_demo(Path(tmp), args.requests))


if __name__ == "__main__":
    main()
