"""generation: Envoy resources generated and serialised per second when the CP regenerates a
100-service mesh after a change (a new view, then ``generate`` + ``Snapshot.build`` for every
dataplane; what every dataplane shares is built once per view), beside only serialising the
same messages (``SerializeToString(deterministic=True)`` on each): the floor no generator can
beat. A second figure gives one dataplane from a new view, when nothing is shared yet.

The mesh: 100 HTTP services with 2 dataplanes each, mTLS on, and the policies every new mesh
starts with (allow-all MeshTrafficPermission, MeshTimeout, MeshCircuitBreaker, MeshRetry).
The dataplane generated for has one inbound, explicit outbounds to 3 services and runs with
bind-outbounds, so it gets a listener and a cluster for every service of the mesh (Kuma's
default: every service is reachable).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from google.protobuf.message import Message

from bench.core import Figure, Options, median
from kumadp.cp.generate import MeshView, build_mesh_view, generate, mtls_context_for
from kumadp.cp.generate.view import Policy
from kumadp.resources import REGISTRY, parse_dataplane, parse_mesh
from kumadp.resources.initial_policies import initial_policies
from kumadp.resources.model import Dataplane
from kumadp.xds.snapshot import Snapshot

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
    # a new mesh's policies, as the CP reads them back from the store
    policies: list[Policy] = [
        cast(Policy, REGISTRY.parse(p.to_dict())) for p in initial_policies("default")
    ]
    view = build_mesh_view(mesh, dataplanes, policies)
    target = dataplanes[0]
    vips = {f"svc-{s}": f"127.1.{s // 250}.{s % 250 + 1}" for s in range(SERVICES)}
    mtls = mtls_context_for(mesh)

    def generated(for_view: MeshView, dataplane: Dataplane) -> dict[str, list[Message]]:
        return generate(for_view, dataplane, mtls=mtls, vips=vips, bind_outbounds=True)

    sample = generated(view, target)
    messages = [m for ms in sample.values() for m in ms]
    count = len(messages)

    def mesh_round() -> int:
        """What the CP does after a change: a new view, then every dataplane's snapshot
        (resources shared by all dataplanes are built once per view)."""
        fresh = build_mesh_view(mesh, dataplanes, policies)
        total = 0
        for dataplane in dataplanes:
            resources = generated(fresh, dataplane)
            Snapshot.build(resources)
            total += sum(len(v) for v in resources.values())
        return total

    def cold() -> int:
        """One dataplane from a new view: nothing shared yet (the first after a change)."""
        Snapshot.build(generated(build_mesh_view(mesh, dataplanes, policies), target))
        return count

    def floor() -> int:
        for m in messages:
            m.SerializeToString(deterministic=True)
        return count

    trials, seconds = (3, 0.5) if opts.quick else (7, 1.0)
    ours_r, floor_r, cold_r = [], [], []
    for _ in range(trials):  # interleaved, so noise hits both alike
        floor_r.append(_rate(floor, seconds))
        ours_r.append(_rate(mesh_round, seconds))
        cold_r.append(_rate(cold, seconds / 2))
    value, base, cold_value = median(ours_r), median(floor_r), median(cold_r)
    ratio = value / base
    met = ratio >= 1 / 3
    per_dp_ms = count / value * 1000
    breakdown = (
        f"{count} resources per dataplane, {len(dataplanes)} dataplanes per round; "
        f"{per_dp_ms:.2f} ms per dataplane snapshot (generate + Snapshot.build: copy, "
        "serialise, hash, consistency check)"
    )
    note = breakdown if met else f"{1 / ratio:.1f}x the floor: {breakdown}"
    cold_figure = Figure(
        "generation: the first dataplane after a change (nothing shared yet), resources/s",
        cold_value,
        "resources/s",
        base,
        "serialising the same messages only (the floor)",
        "-",
        None,
        f"{count / cold_value * 1000:.1f} ms for one dataplane's {count} resources from a new "
        "view: every shared resource is built for it",
    )
    return [
        Figure(
            f"generation: resources generated + serialised per second when the CP regenerates "
            f"a {SERVICES}-service mesh ({len(dataplanes)} dataplanes; median of {trials})",
            value,
            "resources/s",
            base,
            "serialising the same messages only (the floor)",
            ">= 0.33x the floor (within 3x)",
            met,
            note,
        ),
        cold_figure,
    ]
