"""Policies as plug-ins: each policy type changes the config the core generators made.

A profile (``kumadp.cp.generate.profiles``) first runs its generators, which build the proxy's
resources from its own resource (inbounds, outbounds, VIPs, ...) and never look at
policies; then its plug-ins, in the order the profile lists them, each once per proxy:
``plugin.apply(ctx, resources)``.

What a plug-in reads: ``ctx`` (the mesh view, the proxy, the mTLS context and the options),
the policies of its own type from the view (``ctx.view.policies_of(Model)``: the mesh's
policies of that type, sorted by name; which of them apply to the proxy is for the plug-in
to decide, with ``match``'s ``targetRef`` helpers), and ``resources``: what the generators
and the plug-ins before it made.

What it may modify: resources it takes with ``resources.edit(Kind, name)`` (a private copy:
generators share resources between the proxies of a view, so an object from ``get`` or
``to_dict`` must never be changed), and ``resources.add`` for new ones. It finds the
resources it changes by the names the generators give them (``kumadp.cp.generate.names``),
from the proxy's own resource (e.g. ``names.inbound_listener`` for each inbound), and reads
no other policy type than its own: two policies that interact are one plug-in's concern.

Ordering: plug-ins run after every generator, in the profile's order; a plug-in sees the
changes of the ones before it, so one that wraps or reorders what another added goes after
it (e.g. a filter that must come first in a chain is added last). When none of its policies
applies, a plug-in changes nothing, unless Kuma gives the absence a meaning (no
MeshTrafficPermission under mTLS denies every caller). A failure is raised as a
``GenerationError`` naming the plug-in's policy type.

Adding a policy: its model and validation in ``kumadp.resources`` (a ``type`` class attribute,
``mesh`` and ``name`` fields), a module here with a class that has ``policy_type`` and
``apply``, one entry in the plug-ins of each profile it applies to (``POLICY_TYPES`` of
``kumadp.cp.generate`` then lists it: the types whose policies a view needs), and golden
cases under ``tests/unit/testdata/generate/<profile>/``.
"""

from __future__ import annotations

from typing import Protocol

from kumadp.cp.generate.context import Context
from kumadp.cp.generate.resource_set import ResourceSet


class PolicyPlugin(Protocol):
    """Applies the policies of one type to one proxy's generated resources."""

    @property
    def policy_type(self) -> str:
        """The resource type of the policies it applies, e.g. ``MeshTrafficPermission``."""
        ...

    def apply(self, ctx: Context, resources: ResourceSet) -> None: ...
