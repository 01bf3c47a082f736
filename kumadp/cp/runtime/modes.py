"""Which components a control plane runs in each mode, grouped in the order they stop.

- ``standalone``: its own dataplanes, meshes and policies.
- ``global``: meshes and policies are written here and sent to the zones over KDS; dataplanes
  are refused (they connect to zones); the zones' inventory is received.
- ``zone``: a standalone CP for its own dataplanes, with meshes, policies and token keys from
  the global CP (read-only here), and its inventory sent there.

In every mode the jobs that must run once among instances sharing a store run on the leader
(``leader_only``); the last phase leaves the instance list and hands over the lease.
"""

from __future__ import annotations

from collections.abc import Callable

from kumadp.cp.mode_guards import RefusingDpServer
from kumadp.cp.runtime.config import GLOBAL, STANDALONE, ZONE
from kumadp.cp.runtime.control_plane import ControlPlane
from kumadp.cp.runtime.leader_only import leader_only
from kumadp.cp.runtime.phases import Phase
from kumadp.cp.runtime.servers import api_servers, diagnostics_server
from kumadp.cp.shared_registration import SharedDataplaneRegistry
from kumadp.lifecycle import Component


def _leader_jobs(cp: ControlPlane, *, ca: bool = True) -> list[Component]:
    """What runs once among the instances sharing the store (on the leader); a zone makes
    no CA of its own (``ca=False``)."""
    jobs: list[Component] = [cp.vip_provisioner]
    if ca:
        jobs.append(cp.ca_provisioner)
    if cp.shared:  # one instance alone does these in its registry and insight store
        jobs += [cp.deregistrar, cp.insight_janitor]
    return jobs


def _connection_records(cp: ControlPlane) -> tuple[Component, ...]:
    registry = cp.registrations
    return (registry,) if isinstance(registry, SharedDataplaneRegistry) else ()


def _last_phase(cp: ControlPlane) -> Phase:
    return Phase(
        "stop diagnostics; leave the instance list, hand over the leader lease",
        (diagnostics_server(cp), cp.instances, cp.election),
        cp.config.shutdown_phase_timeout,
    )


def standalone(cp: ControlPlane) -> list[Phase]:
    timeout = cp.config.shutdown_phase_timeout
    return [
        Phase(
            "stop accepting new ADS/agent streams and API requests; drain open streams",
            (cp.dp_server, *api_servers(cp)),
            timeout,
        ),
        Phase(
            "stop reconciling and provisioning",
            (cp.reconciler, *leader_only(cp.election, _leader_jobs(cp)), *_connection_records(cp)),
            timeout,
        ),
        Phase("flush insights", (cp.insights,), timeout),
        _last_phase(cp),
    ]


def global_cp(cp: ControlPlane) -> list[Phase]:
    timeout = cp.config.shutdown_phase_timeout
    kds = cp.global_kds
    assert kds is not None
    refusing = RefusingDpServer(address=cp.config.address, port=cp.config.dp_port, tls=cp.tls)
    return [
        Phase(
            "stop accepting zones, dataplane connections and API requests",
            (kds.server, refusing, *api_servers(cp)),
            timeout,
        ),
        Phase(
            "stop provisioning and syncing; write the zone insights",
            (
                *leader_only(cp.election, [cp.ca_provisioner, kds.keys, kds.bundles]),
                kds.source,
                kds.relay,
                kds.zones,
            ),
            timeout,
        ),
        _last_phase(cp),
    ]


def zone(cp: ControlPlane) -> list[Phase]:
    timeout = cp.config.shutdown_phase_timeout
    kds = cp.zone_kds
    assert kds is not None
    return [
        Phase(
            "disconnect from the global CP; stop accepting ADS/agent streams and API "
            "requests; drain open streams",
            (*leader_only(cp.election, [kds.client]), cp.dp_server, *api_servers(cp)),
            timeout,
        ),
        Phase(
            "stop reconciling, provisioning and syncing",
            (
                cp.reconciler,
                *leader_only(
                    cp.election,
                    [*_leader_jobs(cp, ca=False), kds.intermediates, cp.available_services],
                ),
                *_connection_records(cp),
                kds.source,
            ),
            timeout,
        ),
        Phase("flush insights", (cp.insights, *cp.zone_proxy_insights.values()), timeout),
        _last_phase(cp),
    ]


MODES: dict[str, Callable[[ControlPlane], list[Phase]]] = {
    STANDALONE: standalone,
    GLOBAL: global_cp,
    ZONE: zone,
}


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"--mode {mode} is not supported ({', '.join(MODES)})")


def components_for(cp: ControlPlane, mode: str) -> list[Phase]:
    """The components of ``mode``, grouped in the order they stop."""
    check_mode(mode)
    return MODES[mode](cp)


__all__ = ["MODES", "check_mode", "components_for"]
