"""Token and certificate routes:

- ``POST /tokens/dataplane`` ``{mesh, name, tags, validFor}`` and ``.../revoke`` ``{jti}``;
- ``POST /tokens/zone`` ``{zone, scope: [cp|ingress|egress], validFor}`` and ``.../revoke``;
- ``POST /tokens/user`` ``{name, groups, validFor}`` and ``.../revoke``;
- ``GET /certs/dp-server-ca.pem``.

Issuing and revoking is for admins (the access rules in ``access.py``); every token issued or
revoked is logged with who asked, never the token itself. Anyone may fetch the DP server's
CA certificate.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from kumadp.cp.api.authn import identity_of
from kumadp.cp.api.bodies import read_json_object
from kumadp.cp.api.errors import ApiError
from kumadp.cp.jwt import TokenError
from kumadp.cp.tokens import TokenIssuer
from kumadp.cp.user_tokens import UserTokens
from kumadp.cp.zone_tokens import DEFAULT_SCOPES, ZoneTokens
from kumadp.resources import parse_duration
from kumadp.resources.errors import quoted

log = logging.getLogger(__name__)


@dataclass
class TokenServices:
    dataplane: TokenIssuer
    zone: ZoneTokens | None = None
    user: UserTokens | None = None


def _string(body: dict[str, Any], key: str, default: str = "") -> str:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ApiError.invalid_field(key, "must be a string")
    return value


def _strings(body: dict[str, Any], key: str, default: tuple[str, ...] = ()) -> list[str]:
    value = body.get(key)
    if value is None:
        return list(default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError.invalid_field(key, "must be a list of strings")
    return value


def _valid_for(body: dict[str, Any], default: str) -> float:
    raw = _string(body, "validFor", default) or default
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise ApiError.invalid_field("validFor", str(exc)) from None


async def _minted(request: Request, issue: Awaitable[str], what: str) -> Response:
    try:
        token = await issue
    except (ValueError, TokenError) as exc:
        raise ApiError.bad_request(str(exc)) from None
    log.info("issued %s to %s", what, identity_of(request).describe())
    return PlainTextResponse(token)


def _revoke_route(path: str, kind: str, revoke: Callable[[str], Awaitable[bool]]) -> Route:
    async def endpoint(request: Request) -> Response:
        """Revoke a token by its id (jti)."""
        jti = _string(await read_json_object(request), "jti")
        if not jti:
            raise ApiError.invalid_field("jti", "required (the token's id)")
        try:
            done = await revoke(jti)
        except ValueError as exc:
            raise ApiError.bad_request(str(exc)) from None
        who = identity_of(request).describe()
        log.info(
            "%s %s token %s for %s",
            "revoked" if done else "already revoked",
            kind,
            quoted(jti),
            who,
        )
        return PlainTextResponse("revoked\n")

    return Route(path, endpoint, methods=["POST"])


def token_routes(
    tokens: TokenServices | TokenIssuer, dp_server_ca_pem: bytes | None
) -> list[BaseRoute]:
    services = tokens if isinstance(tokens, TokenServices) else TokenServices(tokens)

    async def issue_dataplane(request: Request) -> Response:
        """Issue a dataplane token."""
        body = await read_json_object(request)
        mesh = _string(body, "mesh", "default") or "default"
        name = _string(body, "name")
        tags = body.get("tags")
        tags = {} if tags is None else tags
        if not isinstance(tags, dict) or not all(
            isinstance(v, list) and all(isinstance(i, str) for i in v) for v in tags.values()
        ):
            raise ApiError.invalid_field("tags", "must map a tag to a list of values")
        seconds = _valid_for(body, "87600h")
        what = (
            f"a dataplane token for {quoted(name) if name else 'any dataplane'} of mesh "
            f"{quoted(mesh)}"
        )
        return await _minted(
            request, services.dataplane.issue(mesh, name, tags, valid_for=seconds), what
        )

    async def issue_zone(request: Request) -> Response:
        """Issue a zone token (scopes cp, ingress, egress)."""
        if services.zone is None:
            raise ApiError(404, "Not Found", "this control plane does not issue zone tokens")
        body = await read_json_object(request)
        zone = _string(body, "zone")
        scopes = _strings(body, "scope", DEFAULT_SCOPES)
        seconds = _valid_for(body, "720h")
        what = f"a zone token for zone {quoted(zone)} with scope {scopes}"
        return await _minted(request, services.zone.issue(zone, scopes, seconds), what)

    async def issue_user(request: Request) -> Response:
        """Issue a user token."""
        if services.user is None:
            raise ApiError(404, "Not Found", "this control plane does not issue user tokens")
        body = await read_json_object(request)
        name = _string(body, "name")
        groups = _strings(body, "groups")
        seconds = _valid_for(body, "24h")
        what = f"a user token for {quoted(name)} in groups {groups}"
        return await _minted(request, services.user.issue(name, groups, seconds), what)

    async def ca(request: Request) -> Response:
        """The DP server's CA certificate (PEM)."""
        if dp_server_ca_pem is None:
            raise ApiError(404, "Not Found", "the DP server runs without TLS")
        return PlainTextResponse(dp_server_ca_pem.decode(), media_type="application/x-pem-file")

    routes: list[BaseRoute] = [
        Route("/tokens/dataplane", issue_dataplane, methods=["POST"]),
        _revoke_route("/tokens/dataplane/revoke", "dataplane", services.dataplane.revoke),
        Route("/certs/dp-server-ca.pem", ca, methods=["GET"]),
    ]
    if services.zone is not None:
        routes += [
            Route("/tokens/zone", issue_zone, methods=["POST"]),
            _revoke_route("/tokens/zone/revoke", "zone", services.zone.revoke),
        ]
    if services.user is not None:
        routes += [
            Route("/tokens/user", issue_user, methods=["POST"]),
            _revoke_route("/tokens/user/revoke", "user", services.user.revoke),
        ]
    return routes


__all__ = ["TokenServices", "token_routes"]
