"""generation: Envoy resources generated and serialised per second for one dataplane of a
100-service mesh (``generate`` + ``Snapshot.build``, what the CP does per dataplane and
change), beside only serialising the same messages (``SerializeToString(deterministic=True)``
on each): the floor no generator can beat.

The mesh: 100 HTTP services with 2 dataplanes each, mTLS on, the default allow-all traffic
permission. The dataplane generated for has one inbound, explicit outbounds to 3 services and
runs with bind-outbounds, so it gets a listener and a cluster for every service of the mesh
(Kuma's default: every service is reachable).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from google.protobuf.message import Message

from kumadp.cp.generate import build_mesh_view, generate, mtls_context_for
from kumadp.cp.xds.snapshot import Snapshot
from kumadp.devtools.bench.core import Figure, Options, median
from kumadp.resources import default_traffic_permission, parse_dataplane, parse_mesh
from kumadp.resources.model import Dataplane

SERVICES = 100
PER_SERVICE = 2


def mesh_doc() -> dict[str, object]:
    return {
        "type": "Mesh",
        "name": "default",
        "mtls": {
            "enabledBackend": "ca-1",
            "backends": [{"name": "ca-1", "type": "builtin"}],
        },
    }


def dataplane_doc(i: int, services: int = SERVICES, outbounds: int = 3) -> dict[str, object]:
    """Dataplane ``dp-<i>``: inbound of ``svc-<i % services>``, outbounds to ``outbounds``
    other services."""
    svc = i % services
    others = [(svc + k * 7 + 1) % services for k in range(outbounds)]
    return {
        "type": "Dataplane",
        "mesh": "default",
        "name": f"dp-{i}",
        "networking": {
            "address": "127.0.0.1",
            "inbound": [
                {
                    "port": 20000 + i,
                    "servicePort": 40000 + i % 20000,
                    "tags": {"kuma.io/service": f"svc-{svc}", "kuma.io/protocol": "http"},
                }
            ],
            "outbound": [
                {"port": 10000 + k, "tags": {"kuma.io/service": f"svc-{o}"}}
                for k, o in enumerate(others)
            ],
        },
    }


def _rate(fn: Callable[[], int], seconds: float) -> float:
    """Resources per second over about ``seconds`` of repeated calls of ``fn``."""
    fn()  # warm
    done = 0
    t0 = time.perf_counter()
    while True:
        done += fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return done / elapsed


def bench_generation(tmp: Path, opts: Options) -> list[Figure]:
    mesh = parse_mesh(mesh_doc())
    dataplanes: list[Dataplane] = [
        parse_dataplane(dataplane_doc(i)) for i in range(SERVICES * PER_SERVICE)
    ]
    view = build_mesh_view(mesh, dataplanes, [default_traffic_permission("default")])
    target = dataplanes[0]
    vips = {f"svc-{s}": f"127.1.{s // 250}.{s % 250 + 1}" for s in range(SERVICES)}
    mtls = mtls_context_for(mesh)

    def generated() -> dict[str, list[Message]]:
        return generate(view, target, mtls=mtls, vips=vips, bind_outbounds=True)

    sample = generated()
    messages = [m for ms in sample.values() for m in ms]
    count = len(messages)

    def ours() -> int:
        Snapshot.build(generated())
        return count

    def floor() -> int:
        for m in messages:
            m.SerializeToString(deterministic=True)
        return count

    def generate_only() -> int:
        generated()
        return count

    trials, seconds = (3, 0.5) if opts.quick else (7, 1.0)
    ours_r, floor_r, gen_r = [], [], []
    for _ in range(trials):  # interleaved, so noise hits both alike
        floor_r.append(_rate(floor, seconds))
        ours_r.append(_rate(ours, seconds))
        gen_r.append(_rate(generate_only, seconds / 2))
    value, base = median(ours_r), median(floor_r)
    ratio = value / base
    met = ratio >= 1 / 3
    per_dp_ms = count / value * 1000
    gen_share = (count / median(gen_r)) / (count / value)
    breakdown = (
        f"{count} resources per dataplane; {per_dp_ms:.1f} ms per dataplane snapshot, "
        f"{gen_share:.0%} of it in generate() and the rest in Snapshot.build "
        "(copy, serialise, hash, consistency check)"
    )
    note = breakdown
    if not met:
        note = f"{1 / ratio:.1f}x the floor: {breakdown}"
    return [
        Figure(
            f"generation: resources generated + serialised per second, one dataplane of a "
            f"{SERVICES}-service mesh (median of {trials})",
            value,
            "resources/s",
            base,
            "serialising the same messages only (the floor)",
            ">= 0.33x the floor (within 3x)",
            met,
            note,
        )
    ]
