"""The resource kinds ``kumadp ctl`` knows: the registry's served types
(``kumadp.resources.registry``), each with its table columns.

A type with no table of its own gets a generic one (policies: their target; others: name
and age), so a type added to the registry works in ``get``, ``apply`` and ``delete`` at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kumadp.ctl import tables, zone_proxies
from kumadp.ctl.client import CtlError, segment
from kumadp.resources.model import DATAPLANE_TYPE, MESH_TYPE
from kumadp.resources.policies import MESH_TRAFFIC_PERMISSION_TYPE
from kumadp.resources.registry import REGISTRY, Registry, ResourceType
from kumadp.resources.zone_proxies import ZONE_EGRESS_TYPE, ZONE_INGRESS_TYPE

Row = Callable[[dict[str, Any], datetime], list[str]]

# Types with a table of their own; the others get one by shape (see ``_table``).
_TABLES: dict[str, tuple[tuple[str, ...], Row]] = {
    MESH_TYPE: (tables.MESH_HEADERS, tables.mesh_row),
    DATAPLANE_TYPE: (tables.DATAPLANE_HEADERS, tables.dataplane_row),
    ZONE_INGRESS_TYPE: (zone_proxies.INGRESS_HEADERS, zone_proxies.ingress_row),
    ZONE_EGRESS_TYPE: (zone_proxies.EGRESS_HEADERS, zone_proxies.egress_row),
}


@dataclass(frozen=True)
class Kind:
    type: str  # "Dataplane"
    singular: str  # "dataplane": CLI name and error messages
    plural: str  # "dataplanes": CLI name and URL segment
    mesh_scoped: bool
    headers: tuple[str, ...]
    row: Row
    aliases: tuple[str, ...] = ()

    def collection(self, mesh: str | None) -> str:
        """The list path: one mesh, or every mesh when ``mesh`` is None."""
        if not self.mesh_scoped:
            return f"/{self.plural}"
        if mesh is None:
            return f"/{self.plural}"
        return f"/meshes/{segment(mesh)}/{self.plural}"

    def item(self, mesh: str, name: str) -> str:
        if not self.mesh_scoped:
            return f"/{self.plural}/{segment(name)}"
        return f"/meshes/{segment(mesh)}/{self.plural}/{segment(name)}"

    def describe(self, mesh: str, name: str) -> str:
        """``Dataplane "web-1" in mesh "default"``."""
        where = f' in mesh "{mesh}"' if self.mesh_scoped else ""
        return f'{self.type} "{name}"{where}'

    def not_found(self, mesh: str, name: str) -> str:
        where = f' in mesh "{mesh}"' if self.mesh_scoped else ""
        return f'{self.singular} "{name}" not found{where}'


def _table(resource_type: ResourceType) -> tuple[tuple[str, ...], Row]:
    own = _TABLES.get(resource_type.name)
    if own is not None:
        return own
    if resource_type.policy:
        return tables.POLICY_HEADERS, tables.policy_row
    if resource_type.mesh_scoped:
        return tables.SCOPED_HEADERS, tables.scoped_row
    return tables.GLOBAL_HEADERS, tables.global_row


def kinds_of(registry: Registry) -> tuple[Kind, ...]:
    """A ``Kind`` per type the API serves."""
    kinds = []
    for resource_type in registry.served():
        assert resource_type.plural is not None
        headers, row = _table(resource_type)
        kinds.append(
            Kind(
                type=resource_type.name,
                singular=resource_type.singular,
                plural=resource_type.plural,
                mesh_scoped=resource_type.mesh_scoped,
                headers=headers,
                row=row,
                aliases=resource_type.aliases,
            )
        )
    return tuple(kinds)


KINDS = kinds_of(REGISTRY)


def kind_named(name: str, kinds: Sequence[Kind] = KINDS) -> Kind:
    """A kind by its CLI name (singular or plural, any case, or an alias: ``mtp``, ``dp``)."""
    key = name.strip().lower()
    for kind in kinds:
        if key in (kind.singular, kind.plural, kind.type.lower()):
            return kind
    for kind in kinds:
        if key in kind.aliases:
            return kind
    supported = ", ".join(k.plural for k in kinds)
    raise CtlError(f'unknown resource type "{name}" (supported: {supported})')


def kind_of_type(type_: str, kinds: Sequence[Kind] = KINDS) -> Kind:
    for kind in kinds:
        if kind.type == type_:
            return kind
    raise CtlError(f'unsupported resource type "{type_}"')


MESH = kind_of_type(MESH_TYPE)
DATAPLANE = kind_of_type(DATAPLANE_TYPE)
MESH_TRAFFIC_PERMISSION = kind_of_type(MESH_TRAFFIC_PERMISSION_TYPE)

__all__ = [
    "DATAPLANE",
    "KINDS",
    "MESH",
    "MESH_TRAFFIC_PERMISSION",
    "Kind",
    "Row",
    "kind_named",
    "kind_of_type",
    "kinds_of",
]
