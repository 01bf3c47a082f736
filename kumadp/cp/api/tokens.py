"""Token and certificate routes: ``POST /tokens/dataplane``, ``POST /tokens/dataplane/revoke``
and ``GET /certs/dp-server-ca.pem``.

Issuing and revoking tokens is an admin action: allowed only from loopback clients (as Kuma
treats localhost as admin by default). Anyone may fetch the DP server's CA certificate.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from kumadp.cp.api.errors import ApiError
from kumadp.cp.tokens import TokenIssuer
from kumadp.resources import parse_duration


def _require_loopback(request: Request) -> None:
    host = request.client.host if request.client else ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host in ("localhost", "testclient")
    if not loopback:
        raise ApiError(403, "Forbidden", "tokens can only be managed from the CP's own host")


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise ApiError(400, "Bad Request", f"body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "Bad Request", "body must be a JSON object")
    return body


def token_routes(tokens: TokenIssuer, dp_server_ca_pem: bytes | None) -> list[BaseRoute]:
    async def issue(request: Request) -> Response:
        _require_loopback(request)
        body = await _json_object(request)
        mesh = body.get("mesh") or "default"
        name = body.get("name") or ""
        tags = body.get("tags") or {}
        valid_for = body.get("validFor") or "87600h"
        if not isinstance(mesh, str) or not isinstance(name, str):
            raise ApiError(400, "Bad Request", "mesh and name must be strings")
        if not isinstance(tags, dict) or not all(
            isinstance(v, list) and all(isinstance(i, str) for i in v) for v in tags.values()
        ):
            raise ApiError(400, "Bad Request", "tags: must map a tag to a list of values")
        try:
            seconds = parse_duration(str(valid_for))
        except ValueError as exc:
            raise ApiError(400, "Bad Request", f"validFor: {exc}") from exc
        try:
            token = await tokens.issue(mesh, name, tags, valid_for=seconds)
        except ValueError as exc:
            raise ApiError(400, "Bad Request", str(exc)) from exc
        return PlainTextResponse(token)

    async def revoke(request: Request) -> Response:
        _require_loopback(request)
        body = await _json_object(request)
        jti = body.get("jti")
        if not isinstance(jti, str) or not jti:
            raise ApiError(400, "Bad Request", "jti: required (the token's id)")
        await tokens.revoke(jti)
        return PlainTextResponse("revoked\n")

    async def ca(request: Request) -> Response:
        if dp_server_ca_pem is None:
            raise ApiError(404, "Not Found", "the DP server runs without TLS")
        return PlainTextResponse(dp_server_ca_pem.decode(), media_type="application/x-pem-file")

    return [
        Route("/tokens/dataplane", issue, methods=["POST"]),
        Route("/tokens/dataplane/revoke", revoke, methods=["POST"]),
        Route("/certs/dp-server-ca.pem", ca, methods=["GET"]),
    ]
