"""The control plane's own metrics, served on the diagnostics port (5680) at ``/metrics``.

``CpMetrics(...).render()`` reads the live objects on every scrape (plain attribute reads, no
locks, no store queries) and writes Prometheus text format 0.0.4. Every source is read by
duck typing so that a component that is absent (or renamed a counter) leaves its metrics out
instead of breaking the page.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kumadp

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format(value: float) -> str:
    if isinstance(value, bool | int):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(
        self,
        name: str,
        type_: str,
        help_: str,
        samples: Iterable[tuple[Mapping[str, str], float]] | float,
    ) -> None:
        self._lines += [f"# HELP {name} {help_}", f"# TYPE {name} {type_}"]
        pairs = [({}, samples)] if isinstance(samples, int | float) else samples
        for labels, value in pairs:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            self._lines.append(
                f"{name}{{{text}}} {_format(value)}" if text else f"{name} {_format(value)}"
            )

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def _int(obj: Any, attr: str) -> int | None:
    value = getattr(obj, attr, None) if obj is not None else None
    return int(value) if isinstance(value, int | float) else None


@dataclass
class CpMetrics:
    """The CP's metrics from its live components:

    - ``xds``: the ADS stream callbacks (``streams``, ``acks``, ``nacks``);
    - ``reconcile_stats``: ``generations``, ``snapshots_set``, ``last_generation_seconds``,
      ``errors``;
    - ``hub``: the agent hub (``watchers``);
    - ``agent_channel``: the agent channel service (``signed``).
    """

    xds: Any = None
    reconcile_stats: Any = None
    hub: Any = None
    agent_channel: Any = None
    mode: str = "standalone"
    started: float = field(default_factory=time.time)

    def render(self) -> str:
        w = _Writer()
        w.family(
            "kumadp_cp_info",
            "gauge",
            "The control plane's version and mode.",
            [({"version": kumadp.__version__, "mode": self.mode}, 1)],
        )
        w.family(
            "kumadp_cp_start_time_seconds",
            "gauge",
            "When the control plane started (unix time).",
            self.started,
        )
        self._counter_or_gauge(
            w,
            "kumadp_cp_connected_proxies",
            "gauge",
            "Open ADS streams (connected Envoys).",
            self.xds,
            "streams",
        )
        self._counter_or_gauge(
            w,
            "kumadp_cp_xds_pushes_total",
            "counter",
            "Snapshots set in the xDS cache that changed what an Envoy gets.",
            self.reconcile_stats,
            "snapshots_set",
        )
        self._counter_or_gauge(
            w,
            "kumadp_cp_xds_acks_total",
            "counter",
            "xDS responses Envoys accepted (ACK).",
            self.xds,
            "acks",
        )
        self._counter_or_gauge(
            w,
            "kumadp_cp_xds_nacks_total",
            "counter",
            "xDS responses Envoys rejected (NACK).",
            self.xds,
            "nacks",
        )
        self._counter_or_gauge(
            w,
            "kumadp_cp_generations_total",
            "counter",
            "Envoy config generations (one per dataplane per reconciliation).",
            self.reconcile_stats,
            "generations",
        )
        last = getattr(self.reconcile_stats, "last_generation_seconds", None)
        if isinstance(last, int | float):
            w.family(
                "kumadp_cp_generation_seconds",
                "gauge",
                "How long the last config generation took.",
                float(last),
            )
        self._counter_or_gauge(
            w,
            "kumadp_cp_reconcile_errors_total",
            "counter",
            "Config generations that failed.",
            self.reconcile_stats,
            "errors",
        )
        self._counter_or_gauge(
            w,
            "kumadp_cp_agent_watchers",
            "gauge",
            "Open agent Watch streams (identity and name table pushes).",
            self.hub,
            "watchers",
        )
        self._counter_or_gauge(
            w,
            "kumadp_cp_certificates_signed_total",
            "counter",
            "Dataplane certificates signed for agents.",
            self.agent_channel,
            "signed",
        )
        return w.text()

    @staticmethod
    def _counter_or_gauge(
        w: _Writer, name: str, type_: str, help_: str, obj: Any, attr: str
    ) -> None:
        value = _int(obj, attr)
        if value is not None:
            w.family(name, type_, help_, value)
