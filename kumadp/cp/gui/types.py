"""The registry's served types as Kuma's ``ResourceTypeDescription`` list (the body of
Kuma's ``GET /_resources``): what the web UI reads to list the policy kinds. The UI asks
``/_resources`` first and falls back to ``/gui/_resources`` (this document) on a 404."""

from __future__ import annotations

import re
from typing import Any

from kumadp.resources.registry import REGISTRY, Registry, ResourceType, Scope

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+")


def _words(camel: str) -> str:
    """``MeshTrafficPermission`` -> ``Mesh Traffic Permission``."""
    return " ".join(_WORD.findall(camel)) or camel


def _plural_name(resource_type: ResourceType) -> str:
    """The type's name with the plural ending its API path has (``MeshRetry`` and
    ``meshretries`` -> ``MeshRetries``)."""
    name, plural = resource_type.name, resource_type.plural or ""
    lower = name.lower()
    common = 0
    while common < min(len(lower), len(plural)) and lower[common] == plural[common]:
        common += 1
    if common < len(lower) - 2:  # the path is not the name plus an ending: add an "s"
        return name + "s"
    return name[:common] + plural[common:]


def describe(resource_type: ResourceType) -> dict[str, Any]:
    """One ``ResourceTypeDescription``."""
    out: dict[str, Any] = {
        "name": resource_type.name,
        "scope": "Mesh" if resource_type.scope is Scope.MESH else "Global",
        "readOnly": False,
        "path": resource_type.plural,
        "singularDisplayName": _words(resource_type.name),
        "pluralDisplayName": _words(_plural_name(resource_type)),
        "includeInFederation": resource_type.policy or resource_type.scope is Scope.GLOBAL,
    }
    if resource_type.policy:
        out["policy"] = {"isTargetRef": True}
    return out


def resource_type_descriptions(registry: Registry = REGISTRY) -> dict[str, Any]:
    """``{"resources": [...]}`` for every type the API serves, in registry order."""
    return {"resources": [describe(t) for t in registry.served()]}


__all__ = ["describe", "resource_type_descriptions"]
