"""Generators, policy plug-ins, the profile that orders them, and running a profile.

A profile is what one proxy type gets (``kumadp.cp.generate.profiles``): its generators, each
one concern, run in order and add their resources to one ``ResourceSet``; then its policy
plug-ins (``kumadp.cp.generate.policies``), in order, change or add to those resources. A
failure of either is a ``GenerationError`` naming the generator or the plug-in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import Message

from kumadp.cp.generate.context import Context
from kumadp.cp.generate.policies import PolicyPlugin
from kumadp.cp.generate.resource_set import ResourceSet
from kumadp.wire.names import PROXY_DATAPLANE, PROXY_EGRESS, PROXY_INGRESS

# Proxy types, as ``kumadp run --proxy-type`` names them: one profile each.
DATAPLANE = PROXY_DATAPLANE
INGRESS = PROXY_INGRESS
EGRESS = PROXY_EGRESS


class Generator(Protocol):
    """Makes the Envoy resources of one concern for one proxy; pure, reads only ``ctx``."""

    @property
    def name(self) -> str: ...

    def generate(self, ctx: Context) -> Iterable[Message]: ...


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
class Profile:
    """What one proxy type gets: generators first (order matters only for readability of
    errors; resources are keyed by name), then policy plug-ins (order matters: see
    ``kumadp.cp.generate.policies``)."""

    proxy_type: str
    generators: tuple[Generator, ...]
    plugins: tuple[PolicyPlugin, ...] = ()


class NotImplementedGenerator:
    """Stands for the generators of a proxy type kumadp does not configure yet."""

    def __init__(self, name: str, what: str) -> None:
        self.name = name
        self._what = what

    def generate(self, ctx: Context) -> Iterable[Message]:
        raise NotImplementedError(f"{self._what} configuration is not implemented yet")


def not_implemented(proxy_type: str, what: str) -> Profile:
    """A registered profile that fails every generation with a clear ``GenerationError``."""
    return Profile(proxy_type, (NotImplementedGenerator(proxy_type, what),))


def run_profile(ctx: Context, profile: Profile) -> ResourceSet:
    resources = ResourceSet()
    proxy = f"{ctx.dataplane.mesh}.{ctx.dataplane.name}"
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
