"""Kuma universal resources: the typed model, parsing and validation, templating.

The public surface is what this module exports (``__all__``); the submodules are the
implementation. Names load on first use (PEP 562), so importing one submodule (the agent
needs the model, the dataplane parser and the safe loader) does not load the registry and
every policy model with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the submodule that defines it
_WHERE = {
    "Dataplane": "kumadp.resources.model",
    "FieldError": "kumadp.resources.errors",
    "Inbound": "kumadp.resources.model",
    "Mesh": "kumadp.resources.model",
    "MeshTrafficPermission": "kumadp.resources.policies",
    "Networking": "kumadp.resources.model",
    "Outbound": "kumadp.resources.model",
    "REGISTRY": "kumadp.resources.registry",
    "Registry": "kumadp.resources.registry",
    "Resource": "kumadp.resources.model",
    "ResourceType": "kumadp.resources.registry",
    "SUPPORTED_TYPES": "kumadp.resources.registry",
    "Scope": "kumadp.resources.registry",
    "Sync": "kumadp.resources.registry",
    "TransparentProxying": "kumadp.resources.model",
    "ValidationError": "kumadp.resources.errors",
    "ValidationResult": "kumadp.resources.errors",
    "collect_warnings": "kumadp.resources.errors",
    "default_traffic_permission": "kumadp.resources.policies",
    "load_document": "kumadp.resources.template",
    "parse_dataplane": "kumadp.resources.validate",
    "parse_duration": "kumadp.resources.validate",
    "parse_mesh": "kumadp.resources.validate",
    "parse_mesh_traffic_permission": "kumadp.resources.policies",
    "parse_resource": "kumadp.resources.registry",
    "parse_vars": "kumadp.resources.template",
    "render": "kumadp.resources.template",
    "render_resource": "kumadp.resources.template",
    "validate_resource": "kumadp.resources.registry",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once
    return value


if TYPE_CHECKING:  # type checkers see the same names, imported eagerly
    from kumadp.resources.errors import (
        FieldError,
        ValidationError,
        ValidationResult,
        collect_warnings,
    )
    from kumadp.resources.model import (
        Dataplane,
        Inbound,
        Mesh,
        Networking,
        Outbound,
        Resource,
        TransparentProxying,
    )
    from kumadp.resources.policies import (
        MeshTrafficPermission,
        default_traffic_permission,
        parse_mesh_traffic_permission,
    )
    from kumadp.resources.registry import (
        REGISTRY,
        SUPPORTED_TYPES,
        Registry,
        ResourceType,
        Scope,
        Sync,
        parse_resource,
        validate_resource,
    )
    from kumadp.resources.template import load_document, parse_vars, render, render_resource
    from kumadp.resources.validate import parse_dataplane, parse_duration, parse_mesh

__all__ = [
    "REGISTRY",
    "SUPPORTED_TYPES",
    "Dataplane",
    "FieldError",
    "Inbound",
    "Mesh",
    "MeshTrafficPermission",
    "Networking",
    "Outbound",
    "Registry",
    "Resource",
    "ResourceType",
    "Scope",
    "Sync",
    "TransparentProxying",
    "ValidationError",
    "ValidationResult",
    "collect_warnings",
    "default_traffic_permission",
    "load_document",
    "parse_dataplane",
    "parse_duration",
    "parse_mesh",
    "parse_mesh_traffic_permission",
    "parse_resource",
    "parse_vars",
    "render",
    "render_resource",
    "validate_resource",
]
