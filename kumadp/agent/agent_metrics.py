"""The agent's own metrics (``kumadp_*``) for the merged ``/metrics`` page: its version and
dataplane, the CP watch stream, the mesh certificate, the DNS resolver's counters, readiness
and Envoy restarts. Each source is handed in explicitly (the composition root wires them) and
read at scrape time; a source that is absent (no DP server, DNS off) leaves its metrics out
rather than making them up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from kumadp.agent.prometheus import Family, family


class WatchStatus(Protocol):
    """The CP watch stream (``kumadp.agent.cp_watch.CpWatch``)."""

    @property
    def connected(self) -> bool: ...

    @property
    def reconnects(self) -> int: ...

    @property
    def updates(self) -> int: ...


class CertificateStatus(Protocol):
    """The certificate manager (``kumadp.agent.rotation.CertificateManager``)."""

    @property
    def expiration(self) -> datetime | None: ...

    @property
    def rotations(self) -> int: ...


class DnsCounters(Protocol):
    """The resolver's counters (``kumadp.agent.dns_answer.DnsStats``)."""

    def snapshot(self) -> Mapping[str, Any]: ...


class ReadinessStatus(Protocol):
    """``kumadp.agent.readiness.Readiness``: ``state`` is READY, NOT_READY or TERMINATING."""

    @property
    def state(self) -> str: ...


_STATES = ("READY", "NOT_READY", "TERMINATING")
_DNS_HELP = {
    "mesh_answers": "Queries answered from the mesh name table.",
    "nxdomain": "Unknown names under the mesh domain.",
    "cache_hits": "Local answers served already packed.",
    "forwards": "Queries relayed to an upstream resolver.",
    "forward_failures": "Relayed queries no upstream answered well (SERVFAIL sent).",
    "forward_tcp_retries": "Truncated upstream UDP answers retried over TCP.",
    "truncated": "UDP answers sent truncated.",
    "malformed": "Malformed DNS packets received.",
    "dropped": "DNS packets not answered at all.",
}


@dataclass
class AgentMetrics:
    """The agent's own state, read at scrape time from the sources given:

    - ``watch``: the CP watch stream (without one: not connected, no reconnects);
    - ``certificates``: the certificate manager (left out without one);
    - ``dns``: the resolver's counters (left out with DNS off);
    - ``readiness``: the ``/ready`` state (left out without one);
    - ``envoy_restarts``: how often Envoy was restarted (0 without it: Envoy exiting ends
      the agent).
    """

    version: str
    envoy_version: str = ""
    mesh: str = ""
    dataplane: str = ""
    watch: WatchStatus | None = None
    certificates: CertificateStatus | None = None
    dns: DnsCounters | None = None
    readiness: ReadinessStatus | None = None
    envoy_restarts: Callable[[], int] | None = None
    started: float = field(default_factory=time.time)

    def families(self, envoy_update_ms: float | None, now: float | None = None) -> list[Family]:
        """The families, ``envoy_update_ms`` being Envoy's newest xDS ``update_time``
        (``kumadp_config_age_seconds`` is left out without one)."""
        now = time.time() if now is None else now
        info = {
            "version": self.version,
            "envoy_version": self.envoy_version,
            "mesh": self.mesh,
            "dataplane": self.dataplane,
        }
        out = [
            family(
                "kumadp_info",
                "gauge",
                "The agent's version, its Envoy's version, its dataplane.",
                [(info, 1)],
            ),
            family(
                "kumadp_start_time_seconds",
                "gauge",
                "When the agent started (unix time).",
                self.started,
            ),
            *self._watch_families(),
        ]
        if envoy_update_ms is not None and envoy_update_ms > 0:
            out.append(
                family(
                    "kumadp_config_age_seconds",
                    "gauge",
                    "Seconds since Envoy last accepted a config update (its xDS update_time).",
                    max(0.0, round(now - envoy_update_ms / 1000.0, 3)),
                )
            )
        out += self._certificate_families()
        out += self._dns_families()
        out.append(
            family(
                "kumadp_envoy_restarts_total",
                "counter",
                "Times Envoy was restarted by the agent.",
                int(self.envoy_restarts() if self.envoy_restarts is not None else 0),
            )
        )
        if self.readiness is not None:
            state = str(self.readiness.state)
            out.append(
                family(
                    "kumadp_readiness_state",
                    "gauge",
                    "The agent's readiness (/ready): 1 for the current state.",
                    [({"state": s}, int(s == state)) for s in _STATES],
                )
            )
        return out

    def _watch_families(self) -> list[Family]:
        watch = self.watch
        return [
            family(
                "kumadp_cp_connected",
                "gauge",
                "1 while the agent's watch stream to the control plane is open.",
                int(bool(watch is not None and watch.connected)),
            ),
            family(
                "kumadp_cp_reconnects_total",
                "counter",
                "Times the watch stream to the control plane was lost and reopened.",
                int(watch.reconnects or 0) if watch is not None else 0,
            ),
            family(
                "kumadp_cp_updates_total",
                "counter",
                "Updates (identity, name table) received from the control plane.",
                int(watch.updates or 0) if watch is not None else 0,
            ),
        ]

    def _certificate_families(self) -> list[Family]:
        certs = self.certificates
        if certs is None:
            return []
        out = []
        if certs.expiration is not None:
            out.append(
                family(
                    "kumadp_certificate_expiration_seconds",
                    "gauge",
                    "When the mesh certificate Envoy serves expires (unix time).",
                    certs.expiration.timestamp(),
                )
            )
        out.append(
            family(
                "kumadp_certificate_rotations_total",
                "counter",
                "Mesh certificates installed, the first one included.",
                int(certs.rotations or 0),
            )
        )
        return out

    def _dns_families(self) -> list[Family]:
        if self.dns is None:
            return []
        snap = self.dns.snapshot()
        out = [
            family(
                "kumadp_dns_queries_total",
                "counter",
                "DNS queries received by the resolver, by transport.",
                [({"transport": t}, n) for t, n in sorted(snap.get("queries", {}).items())],
            ),
            family(
                "kumadp_dns_answers_total",
                "counter",
                "DNS answers sent by the resolver, by response code.",
                [({"rcode": rc}, n) for rc, n in sorted(snap.get("answers", {}).items())],
            ),
        ]
        for key, value in snap.items():
            if key in ("queries", "answers") or not isinstance(value, int):
                continue
            help_ = _DNS_HELP.get(key, f"DNS resolver counter {key}.")
            out.append(family(f"kumadp_dns_{key}_total", "counter", help_, value))
        return out
