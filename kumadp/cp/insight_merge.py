"""DataplaneInsights written by several instances at once (a shared store).

A dataplane's ADS stream and its agent channel may be on different instances, and move. Each
instance owns part of the stored insight: the subscriptions it opened (their
``controlPlaneInstanceId`` is its id), and the agent's report when the agent reported to it.
An instance writes its part by merging it into the stored document (compare-and-swap,
retried), never by replacing the whole: ``merge_insight``. The API shows the stored document
merged with what this instance has not written yet (``merged_views``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kumadp.cp.store.base import ConflictError, Store

_META = ("type", "mesh", "name")
MAX_ATTEMPTS = 20


def _subs(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [s for s in doc.get("subscriptions") or () if isinstance(s, dict)]


def _time_of(doc: Mapping[str, Any] | None, *path: str) -> str:
    value: Any = doc
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value if isinstance(value, str) else ""


def merge_insight(
    stored: Mapping[str, Any], local: Mapping[str, Any], me: str, keep: int
) -> dict[str, Any]:
    """``stored`` (the document in the store, without type/mesh/name) with ``local`` (this
    instance's part) merged in: this instance's subscriptions replace its stored ones; the
    newest agent report (with its mTLS part) and the newest NACK win."""
    out = {k: copy.deepcopy(v) for k, v in stored.items() if k not in _META}
    subs = [s for s in _subs(stored) if s.get("controlPlaneInstanceId") != me]
    subs += copy.deepcopy(_subs(local))
    subs.sort(key=lambda s: str(s.get("connectTime") or ""))
    out["subscriptions"] = subs[-keep:]
    if "agent" in local and _time_of(local, "agent", "reportTime") >= _time_of(
        stored, "agent", "reportTime"
    ):
        out["agent"] = copy.deepcopy(local["agent"])
        if "mTLS" in local:
            out["mTLS"] = copy.deepcopy(local["mTLS"])
        else:
            out.pop("mTLS", None)
    if "lastNack" in local and _time_of(local, "lastNack", "time") >= _time_of(
        stored, "lastNack", "time"
    ):
        out["lastNack"] = copy.deepcopy(local["lastNack"])
    return out


async def write_merged(
    store: Store,
    insight_type: str,
    key: tuple[str, str],
    local: Mapping[str, Any],
    me: str,
    keep: int,
) -> None:
    """Merge ``local`` into the stored insight of ``key`` (compare-and-swap, retried)."""
    for _ in range(MAX_ATTEMPTS):
        stored = await store.get(insight_type, *key)
        merged = merge_insight(stored.spec if stored else {}, local, me, keep)
        spec = {"type": insight_type, "mesh": key[0], "name": key[1], **merged}
        try:
            await store.put(insight_type, *key, spec, stored.version if stored is not None else 0)
        except ConflictError:
            continue
        return
    raise ConflictError(f"insight of {key[0]}.{key[1]}: too many concurrent writers")


async def merged_views(
    store: Store,
    insight_type: str,
    mesh: str | None,
    local: Mapping[tuple[str, str], Mapping[str, Any]],
    me: str,
    keep: int,
) -> dict[tuple[str, str], dict[str, Any]]:
    """The insights of ``mesh`` (every mesh: None) as stored, with this instance's unwritten
    part merged in."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for stored in await store.list(insight_type, mesh):
        key = (stored.mesh, stored.name)
        out[key] = merge_insight(stored.spec, local.get(key, {}), me, keep)
    for key, doc in local.items():
        if key not in out and (mesh is None or key[0] == mesh):
            out[key] = merge_insight({}, doc, me, keep)
    return out


__all__ = ["merge_insight", "merged_views", "write_merged"]
