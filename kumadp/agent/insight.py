"""The agent's part of the DataplaneInsight, relayed to the CP with ``ReportInsight``.

``InsightReporter`` collects a JSON object every second and sends it when it changed, and at
least every 10 s. Failures are logged at debug level and retried on the next tick: losing the
CP is not an outage. What it sends (``agent_sources``; Kuma's names where Kuma has them):

- ``version``: ``{kumaDp: {version}, envoy: {version, build, kumaDpCompatible}}``;
- ``mTLS``: ``{certificateExpirationTime, lastCertificateRegeneration,
  certificateRegenerations, issuedBackend}`` (null without a certificate), and
  ``certificates``: ``{mtlsEnabled, lastError, failures}``;
- ``envoy``: ``{pid, restarts, lastExit}`` (Envoy exiting ends the agent, as with kuma-dp:
  ``restarts`` is 0 and ``lastExit`` null while the agent runs);
- ``dns``: ``{enabled, tableVersion, names, stats{queries, answers, ...}}``;
- ``readiness``: ``{state, reasons}``; ``controlPlane``: ``{connected, reconnects,
  lastError}``;
- ``config`` (from Envoy's admin stats): ``{lastAppliedTime, xdsConnected, cds{updateSuccess,
  updateRejected, updateTime}, lds{...}}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from kumadp import __version__
from kumadp.agent.errors import AgentError

log = logging.getLogger(__name__)

_STATS = {
    "cluster_manager.cds.update_success": ("cds", "updateSuccess"),
    "cluster_manager.cds.update_rejected": ("cds", "updateRejected"),
    "cluster_manager.cds.update_time": ("cds", "updateTime"),
    "listener_manager.lds.update_success": ("lds", "updateSuccess"),
    "listener_manager.lds.update_rejected": ("lds", "updateRejected"),
    "listener_manager.lds.update_time": ("lds", "updateTime"),
}
_CONNECTED = "control_plane.connected_state"
_FILTER = "^(" + "|".join(n.replace(".", "[.]") for n in [*_STATS, _CONNECTED]) + ")$"


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _from_millis(ms: int) -> str | None:
    return _time(datetime.fromtimestamp(ms / 1000, UTC)) if ms > 0 else None


def config_from_stats(stats: list[Any]) -> dict[str, Any]:
    """The ``config`` part from Envoy's ``/stats?format=json`` entries."""
    values: dict[str, int] = {}
    for stat in stats:
        if isinstance(stat, dict) and isinstance(stat.get("value"), int | float):
            values[str(stat.get("name"))] = int(stat["value"])
    out: dict[str, Any] = {}
    for name, (xds, key) in _STATS.items():
        value = values.get(name, 0)
        out.setdefault(xds, {})[key] = _from_millis(value) if key == "updateTime" else value
    times = [values.get(n, 0) for n, (_, k) in _STATS.items() if k == "updateTime"]
    out["lastAppliedTime"] = _from_millis(max(times, default=0))
    if _CONNECTED in values:
        out["xdsConnected"] = values[_CONNECTED] == 1
    return out


def agent_sources(
    *,
    envoy_version: Any = None,
    certificates: Any = None,
    dns: Any = None,
    names: Any = None,
    envoy: Any = None,
    readiness: Any = None,
    watch: Any = None,
) -> Callable[[], dict[str, Any]]:
    """A ``sources`` function over the agent's components (any may be None)."""

    def collect() -> dict[str, Any]:
        out: dict[str, Any] = {"version": {"kumaDp": {"version": __version__}}}
        if envoy_version is not None:
            out["version"]["envoy"] = {
                "version": envoy_version.version,
                "build": envoy_version.build,
                "kumaDpCompatible": envoy_version.compatible,
            }
        if certificates is not None:
            if certificates.expiration is not None:
                out["mTLS"] = {
                    "certificateExpirationTime": _time(certificates.expiration),
                    "lastCertificateRegeneration": _time(certificates.last_rotation),
                    "certificateRegenerations": certificates.rotations,
                    "issuedBackend": certificates.backend,
                }
            else:
                out["mTLS"] = None
            out["certificates"] = {
                "mtlsEnabled": certificates.mtls_enabled,
                "lastError": certificates.last_error,
                "failures": certificates.failures,
            }
        if envoy is not None:
            out["envoy"] = {"pid": envoy.pid, "restarts": 0, "lastExit": None}
        dns_part: dict[str, Any] = {"enabled": dns is not None}
        if names is not None:
            dns_part["tableVersion"] = names.version
            dns_part["names"] = len(names)
        if dns is not None:
            dns_part["stats"] = dns.stats.snapshot()
        out["dns"] = dns_part
        if readiness is not None:
            out["readiness"] = {"state": str(readiness.state), "reasons": readiness.reasons}
        if watch is not None:
            out["controlPlane"] = {
                "connected": watch.connected,
                "reconnects": watch.reconnects,
                "lastError": watch.last_error,
            }
        return out

    return collect


class StatsSource(Protocol):
    """Envoy's admin API as the reporter needs it (``kumadp.agent.admin.EnvoyAdmin``)."""

    async def get_json(self, path: str, **params: Any) -> dict[str, Any]: ...


class InsightReporter:
    """Component: ``ReportInsight`` on change (checked every ``interval``) and at least every
    ``max_interval``. ``envoy_admin`` adds the ``config`` part from Envoy's stats."""

    name = "insight-reporter"

    def __init__(
        self,
        link: Any,
        sources: Callable[[], dict[str, Any]],
        *,
        envoy_admin: StatsSource | None = None,
        interval: float = 1.0,
        max_interval: float = 10.0,
        timeout: float = 5.0,
    ) -> None:
        self._link = link
        self._sources = sources
        self._admin = envoy_admin
        self._interval = interval
        self._max_interval = max_interval
        self._timeout = timeout
        self._last_sent: str | None = None
        self._last_time: float | None = None
        self.reports = 0
        self.failures = 0
        self.last_error: str | None = None

    async def collect(self) -> dict[str, Any]:
        try:
            report = dict(self._sources())
        except Exception as exc:  # a source bug must not stop the reports
            log.debug("collecting the insight failed: %s", exc, exc_info=exc)
            report = {}
        if self._admin is not None:
            try:
                stats = await self._admin.get_json("/stats", format="json", filter=_FILTER)
                report["config"] = config_from_stats(stats.get("stats", []))
            except (AgentError, ValueError, AttributeError) as exc:
                log.debug("reading Envoy's config stats failed: %s", exc)
        return report

    async def tick(self) -> bool:
        """Collect, and send when changed or due. True when a report was sent."""
        report = await self.collect()
        text = json.dumps(report, sort_keys=True, separators=(",", ":"), default=str)
        now = asyncio.get_running_loop().time()
        due = self._last_time is None or now - self._last_time >= self._max_interval
        if text == self._last_sent and not due:
            return False
        if await self._send(text):
            self._last_sent, self._last_time = text, now
            return True
        return False

    async def _send(self, text: str) -> bool:
        from kumadp.wire import agent_pb2

        request = agent_pb2.InsightReport(
            mesh=self._link.mesh, name=self._link.name, insight_json=text
        )
        try:
            await self._link.stub().ReportInsight(
                request, timeout=self._timeout, metadata=self._link.metadata
            )
        except Exception as exc:  # grpc errors, a closed channel: try again next tick
            self.failures += 1
            describe = getattr(exc, "details", None)
            self.last_error = str(describe() if callable(describe) else exc)
            log.debug("reporting the insight failed: %s", self.last_error)
            return False
        self.reports += 1
        self.last_error = None
        return True

    async def run(self, stop: asyncio.Event) -> None:
        stop_task = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                await self.tick()
                await asyncio.wait({stop_task}, timeout=self._interval)
        finally:
            stop_task.cancel()


__all__ = ["InsightReporter", "agent_sources", "config_from_stats"]
