"""Generators, the ordered profile that lists them, and running a profile for one proxy."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from google.protobuf.message import Message

from kumadp.cp.generate.context import Context, MtlsContext
from kumadp.cp.generate.inbound import InboundGenerator
from kumadp.cp.generate.outbound import OutboundGenerator
from kumadp.cp.generate.resource_set import ResourceSet
from kumadp.cp.generate.transparent import TransparentProxyGenerator
from kumadp.cp.generate.view import MeshView
from kumadp.cp.generate.vip import VipOutboundGenerator
from kumadp.resources.model import Dataplane


class Generator(Protocol):
    """Makes the Envoy resources of one concern for one proxy; pure, reads only ``ctx``."""

    @property
    def name(self) -> str: ...

    def generate(self, ctx: Context) -> Iterable[Message]: ...


class GenerationError(Exception):
    """A generator failed; names the generator and the proxy."""

    def __init__(self, generator: str, proxy: str, cause: BaseException) -> None:
        super().__init__(f"generator {generator!r} failed for dataplane {proxy}: {cause}")
        self.generator = generator
        self.proxy = proxy


# Order matters only for readability of errors and for later generators that build on
# what earlier ones made; resources are keyed by name, so the output is the same.
DEFAULT_PROFILE: tuple[Generator, ...] = (
    InboundGenerator(),
    OutboundGenerator(),
    VipOutboundGenerator(),
    TransparentProxyGenerator(),
)


def run_profile(ctx: Context, profile: Sequence[Generator] = DEFAULT_PROFILE) -> ResourceSet:
    resources = ResourceSet()
    for generator in profile:
        try:
            for resource in generator.generate(ctx):
                resources.add(resource)
        except Exception as exc:
            proxy = f"{ctx.dataplane.mesh}.{ctx.dataplane.name}"
            raise GenerationError(generator.name, proxy, exc) from exc
    return resources


def generate(
    view: MeshView,
    dataplane: Dataplane,
    *,
    profile: Sequence[Generator] = DEFAULT_PROFILE,
    mtls: MtlsContext | None = None,
    vips: Mapping[str, str] | None = None,
    bind_outbounds: bool = False,
    transparent_proxy: bool = False,
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
    return run_profile(ctx, profile).to_dict()
