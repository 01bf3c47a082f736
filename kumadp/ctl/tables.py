"""Aligned text tables and the human formats of their cells (ages, tags, insight columns).

Every cell reader is defensive: a field the CP did not send shows as ``-``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

MISSING = "-"
PADDING = 3  # spaces between columns, as kumactl's tabwriter

_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by ``PADDING`` spaces, no trailing spaces, a final
    newline."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append((" " * PADDING).join(cells).rstrip())
    return "\n".join(lines) + "\n"


def _get(doc: Any, *keys: str | int) -> Any:
    """``doc[k1][k2]...`` or None when any step is missing or of the wrong type."""
    for key in keys:
        if isinstance(key, int):
            if not isinstance(doc, list) or not -len(doc) <= key < len(doc):
                return None
            doc = doc[key]
        elif isinstance(doc, dict):
            doc = doc.get(key)
        else:
            return None
    return doc


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time (``2024-05-01T10:00:00.123456789Z``) or None."""
    if not isinstance(value, str) or not value:
        return None
    text = _FRACTION.sub(r"\1", value.strip())
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def human_duration(seconds: float) -> str:
    """``42s``, ``5m``, ``3h``, ``12d``, ``2y``: one unit, rounded down (kubectl's style,
    a little coarser)."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 120 * 60:
        return f"{s // 60}m"
    if s < 48 * 3600:
        return f"{s // 3600}h"
    if s < 365 * 86400:
        return f"{s // 86400}d"
    return f"{s // (365 * 86400)}y"


def age(value: Any, now: datetime) -> str:
    when = parse_time(value)
    return human_duration((now - when).total_seconds()) if when else MISSING


def ago(value: Any, now: datetime) -> str:
    when = parse_time(value)
    return f"{human_duration((now - when).total_seconds())} ago" if when else MISSING


def until(value: Any, now: datetime) -> str:
    """A future time as ``in 23h``; a past one as ``expired 5m ago``; beyond 60 days the
    date (``2026-05-01``)."""
    when = parse_time(value)
    if when is None:
        return MISSING
    delta = (when - now).total_seconds()
    if delta < 0:
        return f"expired {human_duration(-delta)} ago"
    if delta > 60 * 86400:
        return when.astimezone(UTC).strftime("%Y-%m-%d")
    return f"in {human_duration(delta)}"


def dataplane_tags(networking: Any) -> str:
    """Every ``key=value`` of the inbounds (and a gateway's tags), ``kuma.io/service`` first,
    the rest sorted; ``-`` when none."""
    pairs: dict[tuple[str, str], None] = {}
    sources = []
    for inbound in _get(networking, "inbound") or []:
        sources.append(_get(inbound, "tags"))
    sources.append(_get(networking, "gateway", "tags"))
    for tags in sources:
        if isinstance(tags, dict):
            for key, value in tags.items():
                pairs.setdefault((str(key), str(value)), None)
    ordered = sorted(pairs, key=lambda kv: (kv[0] != "kuma.io/service", kv[0], kv[1]))
    return ",".join(f"{k}={v}" for k, v in ordered) or MISSING


def _text(value: Any) -> str:
    if value is None or value == "":
        return MISSING
    return str(value)


# --- resources (``get``) ------------------------------------------------------------------

MESH_HEADERS = ("NAME", "MTLS", "AGE")
DATAPLANE_HEADERS = ("MESH", "NAME", "TAGS", "ADDRESS", "AGE")  # kumactl's columns
POLICY_HEADERS = ("MESH", "NAME", "TARGET", "AGE")
SCOPED_HEADERS = ("MESH", "NAME", "AGE")  # a mesh-scoped type without a table of its own
GLOBAL_HEADERS = ("NAME", "AGE")  # a global type without a table of its own


def scoped_row(doc: dict[str, Any], now: datetime) -> list[str]:
    return [_text(doc.get("mesh")), _text(doc.get("name")), age(doc.get("creationTime"), now)]


def global_row(doc: dict[str, Any], now: datetime) -> list[str]:
    return [_text(doc.get("name")), age(doc.get("creationTime"), now)]


def mesh_row(doc: dict[str, Any], now: datetime) -> list[str]:
    backend = _get(doc, "mtls", "enabledBackend")
    mtls = MISSING
    if backend:
        mtls = str(backend)
        for item in _get(doc, "mtls", "backends") or []:
            if _get(item, "name") == backend and _get(item, "mode"):
                mtls = f"{backend}/{_get(item, 'mode')}"
    else:
        mtls = "off"
    return [_text(doc.get("name")), mtls, age(doc.get("creationTime"), now)]


def dataplane_row(doc: dict[str, Any], now: datetime) -> list[str]:
    return [
        _text(doc.get("mesh")),
        _text(doc.get("name")),
        dataplane_tags(doc.get("networking")),
        _text(_get(doc, "networking", "address")),
        age(doc.get("creationTime"), now),
    ]


def target_ref(ref: Any) -> str:
    """``Mesh``, ``MeshService backend``, ``MeshSubset k=v,...``."""
    kind = _get(ref, "kind")
    if not kind:
        return MISSING
    if _get(ref, "name"):
        return f"{kind} {_get(ref, 'name')}"
    tags = _get(ref, "tags")
    if isinstance(tags, dict) and tags:
        return f"{kind} " + ",".join(f"{k}={v}" for k, v in sorted(tags.items()))
    return str(kind)


def policy_row(doc: dict[str, Any], now: datetime) -> list[str]:
    return [
        _text(doc.get("mesh")),
        _text(doc.get("name")),
        target_ref(_get(doc, "spec", "targetRef")),
        age(doc.get("creationTime"), now),
    ]


# --- dataplane overviews (``inspect dataplanes``) -----------------------------------------

INSPECT_HEADERS = (
    "MESH",
    "NAME",
    "TAGS",
    "STATUS",
    "LAST CONNECTED",
    "CERT EXPIRY",
    "AGENT",
    "ENVOY",
)


def _subscriptions(insight: Any) -> list[dict[str, Any]]:
    subs = _get(insight, "subscriptions")
    return [s for s in subs if isinstance(s, dict)] if isinstance(subs, list) else []


def is_online(insight: Any) -> bool:
    """The CP's ``online`` when it sends one; else Kuma's rule: a subscription with a connect
    time and no disconnect time."""
    online = _get(insight, "online")
    if isinstance(online, bool):
        return online
    return any(
        s.get("connectTime") and not s.get("disconnectTime") for s in _subscriptions(insight)
    )


def _latest(subs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The subscription that connected last (the last one when times are missing)."""
    best: dict[str, Any] | None = None
    best_time: datetime | None = None
    for sub in subs:
        when = parse_time(sub.get("connectTime"))
        if best is None or (when is not None and (best_time is None or when >= best_time)):
            best, best_time = sub, when
    return best


def _version(subs: list[dict[str, Any]], component: str) -> str:
    latest = _latest(subs)
    ordered = ([latest] if latest else []) + list(reversed(subs))
    for sub in ordered:
        version = _get(sub, "version", component, "version")
        if version:
            return str(version)
    return MISSING


def zone_of(doc: dict[str, Any]) -> str:
    """The ``kuma.io/zone`` label of a resource (a global CP's copy of a zone's), or ""."""
    labels = doc.get("labels")
    zone = labels.get("kuma.io/zone") if isinstance(labels, dict) else None
    return zone if isinstance(zone, str) else ""


def overview_row(doc: dict[str, Any], now: datetime) -> list[str]:
    insight = doc.get("dataplaneInsight")
    subs = _subscriptions(insight)
    latest = _latest(subs)
    return [
        _text(doc.get("mesh")),
        _text(doc.get("name")),
        dataplane_tags(_get(doc, "dataplane", "networking")),
        "Online" if is_online(insight) else "Offline",
        ago(latest.get("connectTime"), now) if latest else MISSING,
        until(_get(insight, "mTLS", "certificateExpirationTime"), now),
        _version(subs, "kumaDp"),
        _version(subs, "envoy"),
    ]


__all__ = [
    "DATAPLANE_HEADERS",
    "GLOBAL_HEADERS",
    "INSPECT_HEADERS",
    "MESH_HEADERS",
    "MISSING",
    "POLICY_HEADERS",
    "SCOPED_HEADERS",
    "age",
    "ago",
    "dataplane_row",
    "dataplane_tags",
    "global_row",
    "human_duration",
    "is_online",
    "mesh_row",
    "overview_row",
    "parse_time",
    "policy_row",
    "render_table",
    "scoped_row",
    "target_ref",
    "until",
    "zone_of",
]
