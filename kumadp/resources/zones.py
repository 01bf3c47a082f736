"""Multi-zone resources: ``Zone`` (kept by the global CP, one per zone CP that connected) and
the ``kuma.io/zone`` tag a zone CP stamps on its dataplanes' inbounds.

::

    type: Zone
    name: zone-a
    enabled: true        # unset = enabled
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from kumadp.resources.checks import IGNORED_FIELDS, check_type, open_document, resource_name
from kumadp.resources.errors import FieldError, ValidationError, index_path, key_path
from kumadp.resources.model import ZONE_TAG, Dataplane

ZONE_TYPE = "Zone"
ZONE_INSIGHT_TYPE = "ZoneInsight"


@dataclass(frozen=True)
class Zone:
    name: str
    enabled: bool = True
    labels: dict[str, str] = field(default_factory=dict)

    type = ZONE_TYPE

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "name": self.name}
        if self.labels:
            out["labels"] = dict(self.labels)
        out["enabled"] = self.enabled
        return out


_ZONE_FIELDS = ("type", "name", "labels", "enabled", *IGNORED_FIELDS)


def parse_zone(doc: Any) -> Zone:
    """A validated ``Zone``; its name is a DNS-1123 label, as it names a zone CP."""
    c, obj = open_document(doc)
    c.fields(obj, "", _ZONE_FIELDS)
    check_type(c, obj, ZONE_TYPE)
    name = resource_name(c, obj, "", "name", dns_label=True)
    labels = c.string_map(obj, "", "labels")
    enabled = obj.get("enabled", True)
    if enabled is None:
        enabled = True
    if not isinstance(enabled, bool):
        c.add("enabled", "must be true or false")
    c.raise_if_any()
    return Zone(name=name, enabled=bool(enabled), labels=labels or {})


def check_zone_name(name: str, path: str = "zone") -> None:
    """Raise ``ValidationError`` (at ``path``) unless ``name`` may name a zone."""
    try:
        parse_zone({"type": ZONE_TYPE, "name": name})
    except ValidationError as exc:
        raise ValidationError.single(path, exc.errors[0].reason) from None


def stamp_zone_tag(dataplane: Dataplane, zone: str) -> Dataplane:
    """``dataplane`` with ``kuma.io/zone: <zone>`` on every inbound (what a zone CP does to
    the dataplanes it accepts). An inbound that claims another zone is refused with its
    field path."""
    errors: list[FieldError] = []
    inbounds = []
    for n, inbound in enumerate(dataplane.networking.inbound):
        claimed = inbound.tags.get(ZONE_TAG)
        if claimed is not None and claimed != zone:
            path = key_path(f"{index_path('networking.inbound', n)}.tags", ZONE_TAG)
            reason = f'must be "{zone}" (the zone of this control plane), not "{claimed}"'
            errors.append(FieldError(path, reason))
        elif claimed is None:
            inbounds.append(replace(inbound, tags={**inbound.tags, ZONE_TAG: zone}))
        else:
            inbounds.append(inbound)
    if errors:
        raise ValidationError(errors)
    networking = replace(dataplane.networking, inbound=tuple(inbounds))
    return replace(dataplane, networking=networking)


__all__ = [
    "ZONE_INSIGHT_TYPE",
    "ZONE_TYPE",
    "Zone",
    "check_zone_name",
    "parse_zone",
    "stamp_zone_tag",
]
