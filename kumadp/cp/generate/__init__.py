"""Envoy resources from a mesh view: pure generators, one per concern, and policy plug-ins,
ordered by a profile per proxy type.

Public surface::

    view = build_mesh_view(mesh, dataplanes, policies)
    resources = generate(view, dataplane, mtls=mtls_context_for(mesh))  # type URL -> [message]
    resources = generate_for("dataplane", Context(view=view, dataplane=dataplane)).to_dict()
    resources = generate_zone_proxy(ZoneProxyContext(proxy=ingress, zone="zone-b", views=...))

Where things are: ``profiles/`` (a ``PROFILE`` per proxy type: its generators and plug-ins),
``profile.py`` (how a profile runs), the generators (``inbound``, ``outbound``, ``vip``,
``transparent``), the configurers they build from (``clusters``, ``listeners``, ``tls``),
``policies/`` (a plug-in per policy type; how to add one is in its docstring).
"""

from kumadp.cp.generate.context import Context, MtlsContext, mtls_context_for
from kumadp.cp.generate.policies import PolicyPlugin
from kumadp.cp.generate.profile import (
    DATAPLANE,
    EGRESS,
    INGRESS,
    GenerationError,
    Generator,
    Profile,
    run_profile,
)
from kumadp.cp.generate.profiles import (
    POLICY_TYPES,
    PROFILES,
    generate,
    generate_for,
    generate_zone_proxy,
    profile_for,
)
from kumadp.cp.generate.resource_set import ResourceSet
from kumadp.cp.generate.serialize import resource_to_dict, resources_to_yaml
from kumadp.cp.generate.view import Endpoint, MeshView, Policy, build_mesh_view
from kumadp.cp.generate.zone_context import ZoneProxyContext
from kumadp.wire.names import PROXY_TYPES

__all__ = [
    "DATAPLANE",
    "EGRESS",
    "INGRESS",
    "POLICY_TYPES",
    "PROFILES",
    "PROXY_TYPES",
    "Context",
    "Endpoint",
    "GenerationError",
    "Generator",
    "MeshView",
    "MtlsContext",
    "Policy",
    "PolicyPlugin",
    "Profile",
    "ResourceSet",
    "ZoneProxyContext",
    "build_mesh_view",
    "generate",
    "generate_for",
    "generate_zone_proxy",
    "mtls_context_for",
    "profile_for",
    "resource_to_dict",
    "resources_to_yaml",
    "run_profile",
]
