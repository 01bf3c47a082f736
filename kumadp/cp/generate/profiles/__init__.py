"""A profile per proxy type (``dataplane``, ``ingress``, ``egress``), and running one.

Each proxy type's profile is a module here with a ``PROFILE`` (``kumadp.cp.generate.profile``):
its ordered generators and policy plug-ins. ``PROFILES`` maps the proxy type to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from google.protobuf.message import Message

from kumadp.cp.generate.context import Context, MtlsContext
from kumadp.cp.generate.profile import DATAPLANE, EGRESS, INGRESS, Profile, run_profile
from kumadp.cp.generate.profiles import dataplane, egress, ingress
from kumadp.cp.generate.resource_set import ResourceSet
from kumadp.cp.generate.view import MeshView
from kumadp.cp.generate.zone_context import ZoneProxyContext
from kumadp.resources.model import Dataplane
from kumadp.resources.zone_proxies import ZoneIngress
from kumadp.xds.snapshot import SharedResources

PROFILES: Mapping[str, Profile[Any]] = MappingProxyType(
    {p.proxy_type: p for p in (dataplane.PROFILE, ingress.PROFILE, egress.PROFILE)}
)

# Every policy type some profile has a plug-in for: what a mesh view needs from the store.
POLICY_TYPES: tuple[str, ...] = tuple(
    sorted({plugin.policy_type for profile in PROFILES.values() for plugin in profile.plugins})
)


def profile_for(proxy_type: str) -> Profile[Any]:
    found = PROFILES.get(proxy_type)
    if found is None:
        raise ValueError(f"proxy type: must be one of {', '.join(PROFILES)}, not {proxy_type!r}")
    return found


def generate_for(proxy_type: str, ctx: Context | ZoneProxyContext) -> ResourceSet:
    """Run the profile of ``proxy_type`` for the proxy of ``ctx``."""
    return run_profile(ctx, profile_for(proxy_type))


def generate_zone_proxy(ctx: ZoneProxyContext) -> dict[str, list[Message]]:
    """Envoy resources for a zone ingress or egress (``generate``'s shape)."""
    proxy_type = INGRESS if isinstance(ctx.proxy, ZoneIngress) else EGRESS
    return generate_for(proxy_type, ctx).to_dict()


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
    ``mtls``: the mesh's mTLS (``mtls_context_for(mesh)``); None: plaintext. A zone ingress
    or egress has a context of its own: ``generate_zone_proxy``. The result carries the
    view's ``pack_cache`` (``SharedResources``): ``Snapshot.build`` serialises what the view's
    proxies share once."""
    if proxy_type != DATAPLANE:
        profile_for(proxy_type)  # an unknown type: its own error
        raise ValueError(f"proxy type {proxy_type}: generate it with generate_zone_proxy")
    ctx = Context(
        view=view,
        dataplane=dataplane,
        mtls=mtls,
        vips=vips or {},
        bind_outbounds=bind_outbounds,
        transparent_proxy=transparent_proxy,
    )
    return SharedResources(generate_for(proxy_type, ctx).to_dict(), view.pack_cache())
