"""``POST /bootstrap``: register the agent's dataplane and render its Envoy bootstrap.

Request and response are the contract's (``kumadp.wire.bootstrap``: kuma-dp 2.x's JSON field
names). A dataplane that an agent brings with it is stored with the label
``kumadp.io/lifecycle: agent``: the control plane removes it when the agent leaves (or its
connection has been gone for the deregistration delay).

Problems are ``BootstrapError``s with a kind; the HTTP route (``kumadp.cp.api``) maps kinds to
statuses. This module knows nothing of HTTP.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

import yaml

from kumadp.cp.auth import AuthError, DpAuth
from kumadp.cp.registration import LIFECYCLE_AGENT, LIFECYCLE_LABEL, DataplaneRegistry
from kumadp.cp.store.base import Store
from kumadp.cp.zone_proxies import ZoneProxies, ZoneProxyRefused, resource_json
from kumadp.resources import ValidationError, collect_warnings, parse_dataplane
from kumadp.resources.model import DATAPLANE_TYPE, MESH_TYPE, Dataplane
from kumadp.resources.safe_load import load_json, load_yaml
from kumadp.resources.zones import stamp_zone_tag
from kumadp.wire.bootstrap import (
    BootstrapRequest,
    BootstrapResponse,
    KumaSidecarConfiguration,
    SidecarMetrics,
    SidecarNetworking,
    WireError,
)
from kumadp.wire.names import (
    AUTHORIZATION_METADATA,
    PROXY_DATAPLANE,
    PROXY_TYPES,
    SDS_SOCKET_FILE,
)
from kumadp.xds import types as xds_types

log = logging.getLogger(__name__)


class ErrorKind(enum.Enum):
    NOT_FOUND = "not found"  # the dataplane is not known yet: the agent retries
    MALFORMED = "malformed"  # a field of the wrong JSON type
    INVALID = "invalid"  # a request the agent should not repeat as is
    UNAUTHORIZED = "unauthorized"  # a token that does not hold


class BootstrapError(Exception):
    """The bootstrap cannot be given; ``message`` says why (empty for NOT_FOUND)."""

    def __init__(self, kind: ErrorKind, message: str = "") -> None:
        super().__init__(f"{kind.value}: {message}" if message else kind.value)
        self.kind = kind
        self.message = message


@cache
def load_template() -> Any:
    """The bootstrap template, from the installed package or the source tree."""
    packaged = importlib_resources.files("kumadp") / "bootstrap_templates" / "bootstrap.yaml"
    if packaged.is_file():
        text = packaged.read_text()
    else:
        source_tree = Path(__file__).resolve().parents[2] / "bootstrap_templates" / "bootstrap.yaml"
        text = source_tree.read_text()
    return load_yaml(text)


def render_template(template: Any, variables: dict[str, Any]) -> Any:
    """Replace every string that is exactly ``{{ name }}`` with ``variables[name]``."""
    if isinstance(template, dict):
        rendered = {k: render_template(v, variables) for k, v in template.items()}
        return {k: v for k, v in rendered.items() if v is not None}
    if isinstance(template, list):
        return [render_template(v, variables) for v in template]
    if isinstance(template, str) and template.startswith("{{") and template.endswith("}}"):
        key = template[2:-2].strip()
        if key not in variables:
            raise KeyError(f"bootstrap template variable {key!r} has no value")
        return variables[key]
    return template


@dataclass(frozen=True)
class BootstrapParams:
    """What the CP puts into every bootstrap besides the dataplane's own data."""

    xds_port: int
    xds_host: str | None = None  # None: the host the agent used to reach the HTTP API
    # PEM of the CA that signed the DP server's certificate; None: the DP server is plaintext.
    dp_server_ca_pem: bytes | None = None
    # Several instances on one store: the DP servers ("host:port") of the others, listed in
    # the ADS cluster after this one's so that Envoy can fail over (kumadp.cp.instances).
    peers: Callable[[], Awaitable[list[str]]] | None = None


class BootstrapService:
    def __init__(
        self,
        store: Store,
        params: BootstrapParams,
        lifecycle: DataplaneRegistry | None = None,
        auth: DpAuth | None = None,
        zone: str | None = None,
        guard: Callable[[Dataplane], None] | None = None,
        zone_proxies: ZoneProxies | None = None,
    ) -> None:
        """``zone`` (a zone CP): every inbound is stamped ``kuma.io/zone: <zone>``;
        ``zone_proxies``: admits its zone ingresses and egresses."""
        self._zone = zone
        self._store = store
        self._params = params
        self._lifecycle = lifecycle
        self._auth = auth
        self._guard = guard  # raises ValidationError (the CP's self-guard)
        self._zone_proxies = zone_proxies

    async def handle(self, body: dict[str, Any], host: str) -> dict[str, Any]:
        """The response to the JSON request ``body``; ``host`` is the host name the agent
        used to reach the API. Raises ``BootstrapError``."""
        try:
            request = BootstrapRequest.from_json(body)
        except WireError as exc:
            raise BootstrapError(ErrorKind.MALFORMED, str(exc)) from None
        return (await self.bootstrap(request, host)).to_json()

    async def bootstrap(self, request: BootstrapRequest, host: str) -> BootstrapResponse:
        proxy_type = request.proxy_type or PROXY_DATAPLANE
        if proxy_type not in PROXY_TYPES:
            raise BootstrapError(
                ErrorKind.INVALID, f"proxyType: must be one of {', '.join(PROXY_TYPES)}"
            )
        if proxy_type != PROXY_DATAPLANE:
            return await self._zone_proxy(request, host, proxy_type)
        dataplane = await self._dataplane(request)
        if self._auth is not None:
            try:
                await self._auth.check(request.dataplane_token, dataplane.mesh, dataplane.name)
            except AuthError as exc:
                # Kuma answers 422 for a missing token; a bad one is 401.
                kind = ErrorKind.UNAUTHORIZED if request.dataplane_token else ErrorKind.INVALID
                raise BootstrapError(kind, str(exc)) from exc
        if await self._store.get(MESH_TYPE, "", dataplane.mesh) is None:
            raise BootstrapError(ErrorKind.INVALID, f'mesh: mesh "{dataplane.mesh}" does not exist')
        if request.dataplane_resource:  # the agent brings it: labelled so that the CP owns it
            labels = {**dataplane.labels, LIFECYCLE_LABEL: LIFECYCLE_AGENT}
            dataplane = replace(dataplane, labels=labels)
        peers = await self._params.peers() if self._params.peers is not None else []
        services = dataplane.services
        node = _Node(
            id=f"{dataplane.mesh}.{dataplane.name}",
            cluster=services[0] if services else dataplane.name,
            resource_json=json.dumps(dataplane.to_dict(), separators=(",", ":")),
            admin_port=dataplane.admin_port,
            address=dataplane.networking.address,
        )
        bootstrap = self._render(node, request, host, peers)  # every check before a write
        if request.dataplane_resource:
            await self._register(dataplane)
        return _response(bootstrap, node)

    async def _zone_proxy(
        self, request: BootstrapRequest, host: str, proxy_type: str
    ) -> BootstrapResponse:
        """A zone ingress or egress: admitted by this zone (its zone token), stored, and
        given a bootstrap with node id ``.<name>`` and no SDS (it terminates no TLS)."""
        if self._zone_proxies is None:
            raise BootstrapError(
                ErrorKind.INVALID, f"proxyType: {proxy_type} needs a zone control plane"
            )
        try:
            proxy = await self._zone_proxies.admit(
                proxy_type, request.dataplane_resource, request.dataplane_token
            )
        except ZoneProxyRefused as exc:
            kind = ErrorKind.UNAUTHORIZED if exc.unauthorized else ErrorKind.INVALID
            raise BootstrapError(kind, str(exc)) from None
        peers = await self._params.peers() if self._params.peers is not None else []
        node = _Node(
            id=f".{proxy.name}",
            cluster=proxy.name,
            resource_json=resource_json(proxy),
            admin_port=proxy.admin_port,
            address=proxy.networking.address,
            proxy_type=proxy_type,
            sds=False,
        )
        bootstrap = self._render(node, request, host, peers)
        await self._zone_proxies.register(proxy)
        return _response(bootstrap, node)

    async def _dataplane(self, request: BootstrapRequest) -> Dataplane:
        mesh, name, raw = request.mesh, request.name, request.dataplane_resource
        if raw:
            try:
                doc = load_json(raw)
            except ValueError as exc:
                raise BootstrapError(
                    ErrorKind.INVALID, f"dataplaneResource: not valid JSON: {exc}"
                ) from exc
            try:
                with collect_warnings() as warnings:
                    dataplane = parse_dataplane(doc)
                if self._guard is not None:
                    self._guard(dataplane)
            except ValidationError as exc:
                raise BootstrapError(ErrorKind.INVALID, f"dataplaneResource: {exc}") from exc
            for warning in warnings:
                log.info("bootstrap of %s.%s: dataplaneResource.%s", mesh, name, warning)
            if self._zone is not None:
                try:
                    dataplane = stamp_zone_tag(dataplane, self._zone)
                except ValidationError as exc:
                    raise BootstrapError(ErrorKind.INVALID, f"dataplaneResource: {exc}") from exc
            if mesh and mesh != dataplane.mesh:
                raise BootstrapError(
                    ErrorKind.INVALID,
                    f'mesh: "{mesh}" does not match the resource\'s mesh "{dataplane.mesh}"',
                )
            if name and name != dataplane.name:
                raise BootstrapError(
                    ErrorKind.INVALID,
                    f'name: "{name}" does not match the resource\'s name "{dataplane.name}"',
                )
            return dataplane
        if not mesh or not name:
            raise BootstrapError(
                ErrorKind.INVALID, "mesh and name are required when no dataplaneResource is sent"
            )
        stored = await self._store.get(DATAPLANE_TYPE, mesh, name)
        if stored is None:
            raise BootstrapError(ErrorKind.NOT_FOUND)  # not known yet: kuma-dp retries
        return parse_dataplane(stored.spec)

    async def _register(self, dataplane: Dataplane) -> None:
        if self._lifecycle is not None:
            await self._lifecycle.registering((dataplane.mesh, dataplane.name))
        _, created = await self._store.put(
            DATAPLANE_TYPE, dataplane.mesh, dataplane.name, dataplane.to_dict()
        )
        if self._lifecycle is not None:
            self._lifecycle.registered((dataplane.mesh, dataplane.name), created=created)
        log.info(
            "dataplane %s.%s %s by its agent",
            dataplane.mesh,
            dataplane.name,
            "registered" if created else "re-registered",
        )

    def _render(self, node: _Node, request: BootstrapRequest, host: str, peers: list[str]) -> Any:
        token = request.dataplane_token
        dns_port = _port(request.dns_port, "dnsPort")
        readiness_port = _port(request.readiness_port, "readinessPort")
        xds_host = self._params.xds_host or host or "127.0.0.1"
        workdir = request.workdir if node.sds else ""
        metadata = [{"key": AUTHORIZATION_METADATA, "value": token}] if token else []
        variables: dict[str, Any] = {
            "node_id": node.id,
            "node_cluster": node.cluster,
            "dataplane_resource": node.resource_json,
            "admin_port": node.admin_port,
            "admin_port_str": str(node.admin_port),
            "dns_port_str": str(dns_port or ""),
            "readiness_port_str": str(readiness_port or ""),
            "proxy_type": node.proxy_type,
            "version": request.version.to_json() if request.version else {},
            "features": list(request.features),
            "ads_initial_metadata": metadata,
            "ads_endpoints": ads_endpoints(xds_host, self._params.xds_port, peers),
            "ads_transport_socket": self._ads_tls(xds_host, request.ca_cert, peers),
            "sds_socket": str(Path(workdir) / SDS_SOCKET_FILE) if workdir else None,
        }
        rendered = render_template(load_template(), variables)
        if not workdir:  # an agent that did not say where it lives gets no SDS cluster
            clusters = rendered["static_resources"]["clusters"]
            clusters[:] = [c for c in clusters if c.get("name") != "sds_cluster"]
        return rendered

    def _ads_tls(self, sni: str, agent_ca: str, peers: list[str]) -> dict[str, Any] | None:
        """TLS to the DP server: verify with the CA the agent gave, else the CP's own CA.
        The server certificate must name the host Envoy dialled: this one or a peer's."""
        ca = agent_ca or (self._params.dp_server_ca_pem or b"").decode()
        if self._params.dp_server_ca_pem is None:
            return None
        return {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": xds_types.TYPE_URL_PREFIX
                + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": sni,
                "common_tls_context": {
                    "alpn_protocols": ["h2"],
                    "validation_context": {
                        "trusted_ca": {"inline_string": ca},
                        "match_typed_subject_alt_names": [
                            _san_matcher(h) for h in _hosts(sni, peers)
                        ],
                    },
                },
            },
        }


@dataclass(frozen=True)
class _Node:
    """What a bootstrap says about the proxy: its Envoy node and where its resource is."""

    id: str  # <mesh>.<name>, or .<name> for a zone proxy
    cluster: str
    resource_json: str
    admin_port: int
    address: str
    proxy_type: str = PROXY_DATAPLANE
    sds: bool = True  # the agent's SDS cluster (certificates); zone proxies have none


def _response(bootstrap: Any, node: _Node) -> BootstrapResponse:
    return BootstrapResponse(
        yaml.safe_dump(bootstrap, sort_keys=False).encode(),
        KumaSidecarConfiguration(
            networking=SidecarNetworking(address=node.address),
            metrics=SidecarMetrics(aggregate=()),
        ),
    )


def _split(address: str) -> tuple[str, int] | None:
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        return None
    return host, int(port)


def ads_endpoints(host: str, port: int, peers: list[str]) -> list[dict[str, Any]]:
    """The ADS cluster's endpoints: this DP server, then each peer's (no duplicates)."""
    seen: list[tuple[str, int]] = [(host, port)]
    for peer in peers:
        split = _split(peer)
        if split is not None and split not in seen:
            seen.append(split)
    return [
        {"endpoint": {"address": {"socket_address": {"address": h, "port_value": p}}}}
        for h, p in seen
    ]


def _hosts(host: str, peers: list[str]) -> list[str]:
    hosts = [host]
    for peer in peers:
        split = _split(peer)
        if split is not None and split[0] not in hosts:
            hosts.append(split[0])
    return hosts


def _san_matcher(host: str) -> dict[str, Any]:
    try:
        ipaddress.ip_address(host)
        return {"san_type": "IP_ADDRESS", "matcher": {"exact": host}}
    except ValueError:
        return {"san_type": "DNS", "matcher": {"exact": host}}


def _port(value: int, field: str) -> int | None:
    if value == 0:
        return None
    if not 0 < value < 65536:
        raise BootstrapError(ErrorKind.INVALID, f"{field}: must be a port number 1-65535")
    return value
