"""Kuma universal resources: the typed model, parsing and validation, templating.

The public surface is what this module exports (``__all__``); the submodules are the
implementation.
"""

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
