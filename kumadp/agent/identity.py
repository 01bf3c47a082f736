"""Who this proxy is: the dataplane resource (rendered and validated locally) or the
``--name``/``--mesh`` of one the CP already knows, and the dataplane token."""

from __future__ import annotations

import base64
import binascii
import copy
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from kumadp.agent.errors import ConfigError
from kumadp.resources import (
    ValidationError,
    collect_warnings,
    parse_dataplane,
    render_resource,
)
from kumadp.resources.model import DEFAULT_ADMIN_PORT, DEFAULT_MESH, Dataplane
from kumadp.resources.safe_load import MAX_DOCUMENT_BYTES, read_text_file
from kumadp.resources.zone_proxies import (
    ZONE_EGRESS_TYPE,
    ZONE_INGRESS_TYPE,
    ZoneProxy,
    parse_zone_egress,
    parse_zone_ingress,
)
from kumadp.wire.names import PROXY_DATAPLANE, PROXY_INGRESS, PROXY_TYPES

log = logging.getLogger(__name__)

MAX_BYTES_ENV = "KUMADP_DATAPLANE_FILE_MAX_BYTES"
MAX_TOKEN_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Identity:
    mesh: str
    name: str
    proxy_type: str
    admin_port: int
    # The document sent to the CP as ``dataplaneResource`` (None: the CP knows it already).
    resource: dict[str, Any] | None = None
    dataplane: Dataplane | None = None
    zone_proxy: ZoneProxy | None = None  # --proxy-type ingress|egress

    @property
    def is_zone_proxy(self) -> bool:
        return self.proxy_type != PROXY_DATAPLANE

    @property
    def node_id(self) -> str:
        """Envoy's node id: ``<mesh>.<name>``, or ``.<name>`` for a zone ingress/egress."""
        return f"{self.mesh}.{self.name}"


def load_identity(
    *,
    dataplane_file: str | None = None,
    dataplane_inline: str | None = None,
    variables: list[str] | tuple[str, ...] = (),
    name: str | None = None,
    mesh: str | None = None,
    proxy_type: str = "dataplane",
    admin_port: int | None = None,
) -> Identity:
    if proxy_type not in PROXY_TYPES:
        raise ConfigError(f"--proxy-type: must be one of {', '.join(PROXY_TYPES)}")
    if admin_port is not None and not 1 <= admin_port <= 65535:
        raise ConfigError("--admin-port: must be 1-65535")
    if dataplane_file is not None and dataplane_inline is not None:
        raise ConfigError("give either --dataplane-file or --dataplane, not both")
    text, source = _resource_text(dataplane_file, dataplane_inline)
    if proxy_type != PROXY_DATAPLANE:
        return _zone_proxy(proxy_type, text, source, list(variables), name, mesh, admin_port)
    if text is None:
        if variables:
            raise ConfigError("--dataplane-var needs --dataplane-file or --dataplane")
        if not name:
            raise ConfigError(
                "give a dataplane (--dataplane-file or --dataplane), or the --name (and "
                "--mesh) of a dataplane the control plane already knows"
            )
        return Identity(
            mesh=mesh or DEFAULT_MESH,
            name=name,
            proxy_type=proxy_type,
            admin_port=admin_port or DEFAULT_ADMIN_PORT,
        )
    try:
        doc = render_resource(text, list(variables), source)
        with collect_warnings() as warnings:
            dataplane = parse_dataplane(doc)
    except ValidationError as exc:
        message = str(exc)
        if not message.startswith(f"{source}:"):
            message = f"{source}: {message}"
        raise ConfigError(message) from exc
    for warning in warnings:  # a Kuma field kumadp accepts without implementing it
        log.warning("%s: %s", source, warning)
    for flag, given, actual in (("--name", name, dataplane.name), ("--mesh", mesh, dataplane.mesh)):
        if given and given != actual:
            raise ConfigError(
                f"{flag} {given} does not match the dataplane's {actual!r} ({source})"
            )
    resource = copy.deepcopy(doc)
    if admin_port is not None:
        networking = resource.setdefault("networking", {})
        networking.setdefault("admin", {})["port"] = admin_port
    return Identity(
        mesh=dataplane.mesh,
        name=dataplane.name,
        proxy_type=proxy_type,
        admin_port=admin_port or dataplane.admin_port,
        resource=resource,
        dataplane=dataplane,
    )


def _zone_proxy(
    proxy_type: str,
    text: str | None,
    source: str,
    variables: list[str],
    name: str | None,
    mesh: str | None,
    admin_port: int | None,
) -> Identity:
    """A zone ingress or egress: its ZoneIngress/ZoneEgress resource is required (it says
    where the proxy listens); it belongs to no mesh."""
    kind = ZONE_INGRESS_TYPE if proxy_type == PROXY_INGRESS else ZONE_EGRESS_TYPE
    if text is None:
        raise ConfigError(
            f"--proxy-type {proxy_type}: give its {kind} resource (--dataplane-file or --dataplane)"
        )
    parse = parse_zone_ingress if proxy_type == PROXY_INGRESS else parse_zone_egress
    try:
        doc = render_resource(text, variables, source)
        if isinstance(doc, dict) and doc.get("type") not in (None, kind):
            raise ValidationError.single(
                "type", f'must be "{kind}" for --proxy-type {proxy_type}, not "{doc["type"]}"'
            )
        proxy = parse(doc)
    except ValidationError as exc:
        message = str(exc)
        if not message.startswith(f"{source}:"):
            message = f"{source}: {message}"
        raise ConfigError(message) from exc
    if name and name != proxy.name:
        raise ConfigError(f"--name {name} does not match the {kind}'s {proxy.name!r} ({source})")
    if mesh and mesh != DEFAULT_MESH:
        log.warning("--mesh %s ignored: a %s serves every mesh of its zone", mesh, kind)
    resource = copy.deepcopy(doc)
    if admin_port is not None:
        resource.setdefault("networking", {}).setdefault("admin", {})["port"] = admin_port
    return Identity(
        mesh="",
        name=proxy.name,
        proxy_type=proxy_type,
        admin_port=admin_port or proxy.admin_port,
        resource=resource,
        zone_proxy=proxy,
    )


def _resource_text(file: str | None, inline: str | None) -> tuple[str | None, str]:
    if inline is not None:
        return inline, "--dataplane"
    if file is None:
        return None, ""
    source = "stdin" if file == "-" else file
    limit = max_document_bytes()
    try:
        return read_text_file(file, limit, f"--dataplane-file {source}"), source
    except OSError as exc:
        raise ConfigError(f"--dataplane-file: cannot read {file}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"{exc} (set {MAX_BYTES_ENV} to raise it)") from exc


def max_document_bytes() -> int:
    """The size cap of a dataplane file: 1 MiB, or ``KUMADP_DATAPLANE_FILE_MAX_BYTES``."""
    raw = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not raw:
        return MAX_DOCUMENT_BYTES
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{MAX_BYTES_ENV}: must be a positive number of bytes, not {raw!r}")
    return int(raw)


def load_token(token: str | None, token_file: str | None) -> tuple[str, str]:
    """The dataplane token and the path it came from ("" if inline or none), checked
    locally: non-empty, one line, shaped like a JWT."""
    if token is not None and token_file is not None:
        raise ConfigError("give either --dataplane-token or --dataplane-token-file, not both")
    if token_file is not None:
        try:
            value = read_text_file(token_file, MAX_TOKEN_FILE_BYTES, "the token file")
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise ConfigError(
                f"--dataplane-token-file: cannot read {token_file}: {reason}"
            ) from exc
        check_token(value.strip(), f"--dataplane-token-file {token_file}")
        return value.strip(), token_file
    if token is not None:
        check_token(token.strip(), "--dataplane-token")
        return token.strip(), ""
    return "", ""


def check_token(token: str, source: str) -> None:
    if not token:
        raise ConfigError(f"{source}: the token is empty")
    if "\n" in token or "\r" in token:
        raise ConfigError(f"{source}: the token must be one line")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise ConfigError(f"{source}: not a JWT (expected three dot-separated parts)")
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"{source}: not a JWT (the header is not base64url JSON)") from exc
    if not isinstance(header, dict):
        raise ConfigError(f"{source}: not a JWT (the header is not a JSON object)")
