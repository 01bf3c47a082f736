"""Envoy resources from a mesh view: pure generators, one per concern, run by a profile.

Public surface::

    view = build_mesh_view(mesh, dataplanes, policies)
    resources = generate(view, dataplane, mtls=mtls_context_for(mesh))  # type URL -> [message]
"""

from kumadp.cp.generate.context import Context, MtlsContext, mtls_context_for
from kumadp.cp.generate.profile import (
    DEFAULT_PROFILE,
    GenerationError,
    Generator,
    generate,
    run_profile,
)
from kumadp.cp.generate.resource_set import ResourceSet
from kumadp.cp.generate.serialize import resource_to_dict, resources_to_yaml
from kumadp.cp.generate.view import Endpoint, MeshView, build_mesh_view

__all__ = [
    "DEFAULT_PROFILE",
    "Context",
    "Endpoint",
    "GenerationError",
    "Generator",
    "MeshView",
    "MtlsContext",
    "ResourceSet",
    "build_mesh_view",
    "generate",
    "mtls_context_for",
    "resource_to_dict",
    "resources_to_yaml",
    "run_profile",
]
