"""Generators, policy plug-ins, the profile that orders them, and running a profile.

A profile is what one proxy type gets (``kumadp.cp.generate.profiles``): its generators, each
one concern, run in order and add their resources to one ``ResourceSet``; then its policy
plug-ins (``kumadp.cp.generate.policies``), in order, change or add to those resources. A
failure of either is a ``GenerationError`` naming the generator or the plug-in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from google.protobuf.message import Message

from kumadp.cp.generate.resource_set import ResourceSet
from kumadp.wire.names import PROXY_DATAPLANE, PROXY_EGRESS, PROXY_INGRESS

# Proxy types, as ``kumadp run --proxy-type`` names them: one profile each.
DATAPLANE = PROXY_DATAPLANE
INGRESS = PROXY_INGRESS
EGRESS = PROXY_EGRESS

C = TypeVar("C", contravariant=True)
Ctx = TypeVar("Ctx")


class ProxyContext(Protocol):
    """What a profile's run needs of any context: the proxy's Envoy node id, for errors
    (``<mesh>.<name>`` for a dataplane, ``.<name>`` for a zone ingress or egress)."""

    @property
    def proxy_id(self) -> str: ...


class Generator(Protocol[C]):
    """Makes the Envoy resources of one concern for one proxy; pure, reads only ``ctx``
    (a ``Context`` for a dataplane, a ``ZoneProxyContext`` for a zone ingress or egress)."""

    @property
    def name(self) -> str: ...

    def generate(self, ctx: C) -> Iterable[Message]: ...


class Plugin(Protocol[C]):
    """Applies the policies of one type (``kumadp.cp.generate.policies.PolicyPlugin``)."""

    @property
    def policy_type(self) -> str: ...

    def apply(self, ctx: C, resources: ResourceSet) -> None: ...


class GenerationError(Exception):
    """A generator or a policy plug-in failed; names it and the proxy."""

    def __init__(
        self,
        generator: str,
        proxy: str,
        cause: BaseException,
        *,
        proxy_type: str = DATAPLANE,
        kind: str = "generator",
    ) -> None:
        super().__init__(f"{kind} {generator!r} failed for {proxy_type} {proxy}: {cause}")
        self.generator = generator  # the generator's name, or the plug-in's policy type
        self.proxy = proxy
        self.proxy_type = proxy_type


@dataclass(frozen=True)
class Profile(Generic[Ctx]):
    """What one proxy type gets: generators first (order matters only for readability of
    errors; resources are keyed by name), then policy plug-ins (order matters: see
    ``kumadp.cp.generate.policies``)."""

    proxy_type: str
    generators: tuple[Generator[Ctx], ...]
    plugins: tuple[Plugin[Ctx], ...] = ()


def run_profile(ctx: Any, profile: Profile[Any]) -> ResourceSet:
    """Run ``profile``'s generators, then its plug-ins, for the proxy of ``ctx`` (a
    ``ProxyContext`` of the profile's kind)."""
    resources = ResourceSet()
    proxy = str(ctx.proxy_id)
    for generator in profile.generators:
        try:
            for resource in generator.generate(ctx):
                resources.add(resource)
        except Exception as exc:
            raise GenerationError(
                generator.name, proxy, exc, proxy_type=profile.proxy_type
            ) from exc
    for plugin in profile.plugins:
        try:
            plugin.apply(ctx, resources)
        except Exception as exc:
            raise GenerationError(
                plugin.policy_type,
                proxy,
                exc,
                proxy_type=profile.proxy_type,
                kind="policy plug-in",
            ) from exc
    return resources
