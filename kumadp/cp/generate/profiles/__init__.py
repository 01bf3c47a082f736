"""A profile per proxy type (``dataplane``, ``ingress``, ``egress``), and running one.

Each proxy type's profile is a module here with a ``PROFILE`` (``kumadp.cp.generate.profile``):
its ordered generators and policy plug-ins. ``PROFILES`` maps the proxy type to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from google.protobuf.message import Message

from kumadp.cp.generate.context import Context, MtlsContext
from kumadp.cp.generate.profile import DATAPLANE, Profile, run_profile
from kumadp.cp.generate.profiles import dataplane, egress, ingress
from kumadp.cp.generate.resource_set import ResourceSet
from kumadp.cp.generate.view import MeshView
from kumadp.resources.model import Dataplane

PROFILES: Mapping[str, Profile] = MappingProxyType(
    {p.proxy_type: p for p in (dataplane.PROFILE, ingress.PROFILE, egress.PROFILE)}
)

# Every policy type some profile has a plug-in for: what a mesh view needs from the store.
POLICY_TYPES: tuple[str, ...] = tuple(
    sorted({plugin.policy_type for profile in PROFILES.values() for plugin in profile.plugins})
)


def profile_for(proxy_type: str) -> Profile:
    found = PROFILES.get(proxy_type)
    if found is None:
        raise ValueError(f"proxy type: must be one of {', '.join(PROFILES)}, not {proxy_type!r}")
    return found


def generate_for(proxy_type: str, ctx: Context) -> ResourceSet:
    """Run the profile of ``proxy_type`` for the proxy of ``ctx``."""
    return run_profile(ctx, profile_for(proxy_type))


def generate(
    view: MeshView,
    dataplane: Dataplane,
    *,
    mtls: MtlsContext | None = None,
    vips: Mapping[str, str] | None = None,
    bind_outbounds: bool = False,
    transparent_proxy: bool = False,
    proxy_type: str = DATAPLANE,
) -> dict[str, list[Message]]:
    """Envoy resources for ``dataplane``: type URL -> resources sorted by name; every type
    URL of ``kumadp.xds.types.ADS_ORDER`` is present, possibly with an empty list.

    ``vips``: service -> the address this dataplane reaches it on (``VipMap.addresses``,
    loopback addresses under ``bind_outbounds``); see ``kumadp.cp.generate.vip``.
    ``mtls``: the mesh's mTLS (``mtls_context_for(mesh)``); None: plaintext."""
    ctx = Context(
        view=view,
        dataplane=dataplane,
        mtls=mtls,
        vips=vips or {},
        bind_outbounds=bind_outbounds,
        transparent_proxy=transparent_proxy,
    )
    return generate_for(proxy_type, ctx).to_dict()
