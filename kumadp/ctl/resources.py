"""What ``kumadp ctl get|inspect|apply|delete`` do, over an ``ApiClient``.

Each operation returns the text to print (the CLI only prints it), or raises ``CtlError``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml

from kumadp.ctl import tables, zones
from kumadp.ctl.client import ApiClient, CtlError, NotFoundError, UnreachableError, segment
from kumadp.ctl.kinds import (
    DATAPLANE,
    KINDS,
    MESH,
    MESH_TRAFFIC_PERMISSION,
    Kind,
    kind_named,
    kind_of_type,
    kinds_of,
)
from kumadp.ctl.zone_proxies import cross_zone_notes
from kumadp.resources import FieldError, ValidationError, parse_vars, render
from kumadp.resources.registry import REGISTRY, Registry
from kumadp.resources.safe_load import load_yaml_all
from kumadp.resources.zones import ZONE_TYPE

OUTPUT_FORMATS = ("table", "json", "yaml")
DEFAULT_MESH = "default"


def check_format(output: str) -> str:
    fmt = output.strip().lower()
    if fmt not in OUTPUT_FORMATS:
        raise CtlError(f'-o/--output: "{output}" is not one of {", ".join(OUTPUT_FORMATS)}')
    return fmt


def dump(data: Any, fmt: str) -> str:
    """``data`` as JSON (indented) or YAML, ending with a newline."""
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _list_body(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"total": len(items), "items": items, "next": None}


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


# --- get ----------------------------------------------------------------------------------


def get(
    client: ApiClient,
    kind: Kind,
    name: str | None = None,
    *,
    mesh: str | None = None,
    output: str = "table",
    now: datetime | None = None,
) -> str:
    """One resource (``name``) or a list: of one mesh, or of every mesh without ``mesh``."""
    fmt = check_format(output)
    if name is not None:
        mesh_name = mesh or DEFAULT_MESH
        try:
            doc = client.get_object(kind.item(mesh_name, name))
        except NotFoundError:
            raise CtlError(kind.not_found(mesh_name, name)) from None
        if fmt != "table":
            return dump(doc, fmt)
        return tables.render_table(kind.headers, [kind.row(doc, _now(now))])
    if kind.type == ZONE_TYPE and fmt == "table":  # with their status, as ``inspect zones``
        return zones.zone_rows(client, now)
    if mesh is not None and kind.mesh_scoped:
        _require_mesh(client, mesh)
    items = client.list_items(kind.collection(mesh))
    if fmt != "table":
        return dump(_list_body(items), fmt)
    moment = _now(now)
    return tables.render_table(kind.headers, [kind.row(item, moment) for item in items])


def _require_mesh(client: ApiClient, mesh: str) -> None:
    try:
        client.get_object(MESH.item("", mesh))
    except NotFoundError:
        raise CtlError(MESH.not_found("", mesh)) from None


# --- inspect ------------------------------------------------------------------------------


def inspect_dataplanes(
    client: ApiClient,
    *,
    mesh: str | None = None,
    output: str = "table",
    now: datetime | None = None,
) -> str:
    """Dataplane overviews with their insights (status, versions, certificate)."""
    fmt = check_format(output)
    if mesh is not None:
        _require_mesh(client, mesh)
        path = f"/meshes/{segment(mesh)}/dataplanes+insights"
    else:
        path = "/dataplanes+insights"
    try:
        items = client.list_items(path)
    except NotFoundError:
        raise CtlError(
            f"the control plane at {client.base_url} does not serve {path} "
            "(a kumadp control plane without the insights API?)"
        ) from None
    if fmt != "table":
        return dump(_list_body(items), fmt)
    moment = _now(now)
    rows = [tables.overview_row(item, moment) for item in items]
    zones = [tables.zone_of(item) for item in items]
    if any(zones):  # a global CP's inventory: say which zone each dataplane is in
        rows = [
            [row[0], zone or tables.MISSING, *row[1:]]
            for row, zone in zip(rows, zones, strict=True)
        ]
        headers = (tables.INSPECT_HEADERS[0], "ZONE", *tables.INSPECT_HEADERS[1:])
        return tables.render_table(headers, rows) + _notes(items)
    return tables.render_table(tables.INSPECT_HEADERS, rows) + _notes(items)


def _notes(items: list[dict[str, Any]]) -> str:
    """Why dataplanes reach no other zone, under the table (a zone CP says it)."""
    notes = cross_zone_notes(items)
    return "".join(f"{note}\n" for note in notes)


# --- delete -------------------------------------------------------------------------------


def delete(client: ApiClient, kind: Kind, name: str, *, mesh: str | None = None) -> str:
    mesh_name = mesh or DEFAULT_MESH
    try:
        client.delete(kind.item(mesh_name, name))
    except NotFoundError:
        raise CtlError(kind.not_found(mesh_name, name)) from None
    return f"{kind.describe(mesh_name, name)} deleted\n"


# --- apply --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    """One valid resource document of an ``apply`` input."""

    kind: Kind
    mesh: str
    name: str
    doc: dict[str, Any]  # as written (after templating)
    # Kuma fields accepted without being implemented ("field: ignored: why")
    warnings: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        return self.kind.item(self.mesh, self.name)

    def describe(self) -> str:
        return self.kind.describe(self.mesh, self.name)


def _load_all(text: str, source: str) -> list[Any]:
    try:
        return list(load_yaml_all(text))
    except yaml.MarkedYAMLError as exc:
        where = ""
        if exc.problem_mark is not None:
            mark = exc.problem_mark
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        raise CtlError(f"{source}: invalid YAML{where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise CtlError(f"{source}: invalid YAML: {exc}") from None


def _lines(errors: Iterable[FieldError], prefix: str) -> list[str]:
    return [f"{prefix}{error.path}: {error.reason}" for error in errors]


def parse_documents(
    text: str, variables: list[str], source: str, registry: Registry = REGISTRY
) -> list[Document]:
    """Fill ``{{ placeholders }}`` from ``key=value`` variables, split the YAML documents
    and validate each one (as a type of ``registry``); ``CtlError`` listing every problem
    of every document (with its number and field paths) when any is invalid."""
    kinds = KINDS if registry is REGISTRY else kinds_of(registry)
    try:
        rendered = render(text, parse_vars(variables))
    except ValidationError as exc:
        raise CtlError("\n".join([f"{source}: bad template", *_lines(exc.errors, "")])) from None
    docs = [doc for doc in _load_all(rendered, source) if doc is not None]
    if not docs:
        raise CtlError(f"{source}: no resource in it")
    several = len(docs) > 1
    valid: list[Document] = []
    problems: list[str] = []
    for number, doc in enumerate(docs, start=1):
        label = f"document {number}" if several else ""
        if isinstance(doc, dict) and isinstance(doc.get("name"), str):
            label = f"{label} ({doc['name']})" if label else ""
        prefix = f"{label}: " if label else ""
        try:
            result = registry.validate(doc)
        except ValidationError as exc:
            problems.extend(_lines(exc.errors, prefix))
            continue
        model = result.model
        kind = kind_of_type(model.type, kinds)
        mesh = getattr(model, "mesh", "") if kind.mesh_scoped else ""
        notes = tuple(str(w) for w in result.warnings)
        valid.append(Document(kind, mesh, model.name, doc, notes))
    if problems:
        count = len(docs) - len(valid)
        what = "document is" if count == 1 else "documents are"
        summary = f"{source}: {count} {what} not valid; nothing was applied"
        raise CtlError("\n".join([summary, *problems]))
    seen: set[str] = set()
    for item in valid:
        if item.path in seen:
            raise CtlError(f"{source}: {item.describe()} is given more than once")
        seen.add(item.path)
    return valid


def warning_lines(documents: list[Document]) -> list[str]:
    """``Warning: <resource>: <field>: ignored: <why>`` for every warning of ``documents``
    (the CLI prints them on stderr)."""
    return [f"Warning: {d.describe()}: {w}" for d in documents for w in d.warnings]


def dry_run_text(documents: list[Document]) -> str:
    """What ``apply --dry-run`` prints: the resources after templating, as YAML documents."""
    return yaml.safe_dump_all([d.doc for d in documents], sort_keys=False, allow_unicode=True)


def apply(
    client: ApiClient, documents: list[Document], echo: Callable[[str], None] = print
) -> None:
    """PUT every resource in order (see ``parse_documents``), calling ``echo`` with
    ``<resource> created`` or ``updated`` after each. A failure names the resource; what was
    applied before it stays."""
    for item in documents:
        try:
            created = client.put(item.path, item.doc)
        except UnreachableError:
            raise
        except CtlError as exc:
            raise CtlError(f"{item.describe()}: {exc}") from None
        echo(f"{item.describe()} {'created' if created else 'updated'}")


__all__ = [
    "DATAPLANE",
    "KINDS",
    "MESH",
    "MESH_TRAFFIC_PERMISSION",
    "OUTPUT_FORMATS",
    "Document",
    "Kind",
    "apply",
    "check_format",
    "delete",
    "dry_run_text",
    "dump",
    "get",
    "inspect_dataplanes",
    "kind_named",
    "kind_of_type",
    "kinds_of",
    "parse_documents",
    "warning_lines",
]
