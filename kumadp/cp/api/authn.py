"""Authentication and authorization of every API request, in one ASGI middleware.

Who is calling (``Identity``), in this order:

1. ``Authorization: Bearer <user token>``: the token's user and groups (an invalid token is
   a 401 saying why: expired, revoked, not signed by this CP...);
2. a request on a listener that required a verified client certificate: an admin;
3. a loopback caller (127.0.0.0/8, ::1) whose ``Host`` header is a loopback name or address
   and whose ``Origin`` (if any) is loopback too: an admin, unless
   ``--no-api-localhost-is-admin``. A foreign ``Host`` (DNS rebinding, a request relayed by a
   sidecar on the CP's host) or a foreign ``Origin`` (a web page) makes it anonymous;
4. anyone else: anonymous.

Then the route's rule (``kumadp.cp.api.access``) decides: 401 when credentials are missing or
bad, 403 when the caller is known but not allowed or the route has no rule. Every request
that is not a read is logged with who made it and its status.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kumadp.cp.api.access import ADMIN, PUBLIC, READ_METHODS, AccessRules
from kumadp.cp.api.errors import ApiError, error_response
from kumadp.cp.http_server import CLIENT_CERT_KEY
from kumadp.cp.jwt import TokenError
from kumadp.cp.user_tokens import ADMIN_GROUP, AUTHENTICATED_GROUP, UserTokens

log = logging.getLogger(__name__)

IDENTITY_KEY = "kumadp.identity"

LOCALHOST_ADMIN = "mesh-system:admin"
ANONYMOUS = "mesh-system:anonymous"
UNAUTHENTICATED_GROUP = "mesh-system:unauthenticated"


@dataclass(frozen=True)
class Identity:
    name: str
    groups: tuple[str, ...]
    via: str  # token, client-certificate, localhost, anonymous
    address: str  # the caller's IP address

    @property
    def is_admin(self) -> bool:
        return ADMIN_GROUP in self.groups

    @property
    def anonymous(self) -> bool:
        return self.via == "anonymous"

    def describe(self) -> str:
        where = f" from {self.address}" if self.address else ""
        if self.via == "token":
            return f'user "{self.name}"{where}'
        if self.via == "client-certificate":
            return f'client certificate "{self.name}" (admin){where}'
        if self.via == "anonymous":
            return f"an anonymous caller{where}"
        return f"{self.via} admin{where}"


@dataclass
class ApiSecurity:
    """How the API authenticates: ``users`` checks user tokens (None: no user token is
    accepted), ``localhost_is_admin``, ``anonymous_read``."""

    users: UserTokens | None = None
    localhost_is_admin: bool = True
    anonymous_read: bool = True


def identity_of(request: Request) -> Identity:
    """The caller of ``request`` as the middleware found it."""
    found = request.scope.get(IDENTITY_KEY)
    if isinstance(found, Identity):
        return found
    return Identity(ANONYMOUS, (UNAUTHENTICATED_GROUP,), "anonymous", "")


def is_loopback_address(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def is_loopback_host(value: str | None) -> bool:
    """A ``Host`` header (or an ``Origin``'s host) naming this machine's loopback:
    ``localhost``, ``127.x.y.z``, ``[::1]``, with any port."""
    if not value:
        return False
    try:
        host = urlsplit(value if "//" in value else f"//{value}").hostname
    except ValueError:
        return False
    if not host:
        return False
    host = host.rstrip(".").lower()
    return host == "localhost" or is_loopback_address(host)


class AccessMiddleware:
    """Authenticates and authorizes every HTTP request against ``rules``, before routing."""

    def __init__(
        self, app: ASGIApp, *, rules: AccessRules, security: ApiSecurity, routes: list[Any]
    ) -> None:
        self.app = app
        self.rules = rules
        self.security = security
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        template = self._template(scope)
        try:
            identity = await self._identify(scope)
            scope[IDENTITY_KEY] = identity
            if template is not None:
                self._authorize(method, template, identity)
        except ApiError as error:
            who = scope.get(IDENTITY_KEY)
            caller = who.describe() if isinstance(who, Identity) else _address(scope)
            log.warning(
                "api: %s %s refused (%d) for %s: %s",
                method,
                path,
                error.status,
                caller,
                error.details,
            )
            await error_response(error)(scope, receive, send)
            return
        status = 0

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            if method not in READ_METHODS and template is not None:
                quiet = path == "/bootstrap" and status == 404  # an agent polling
                log.log(
                    logging.DEBUG if quiet else logging.INFO,
                    "api: %s %s -> %s by %s",
                    method,
                    path,
                    status or "no answer",
                    identity.describe(),
                )

    def _template(self, scope: Scope) -> str | None:
        """The path template of the route that will serve ``scope`` (None: no route does,
        the router answers 404/405 without running any handler)."""
        for route in self.routes:
            if isinstance(route, Route):
                match, _ = route.matches(scope)
                if match is Match.FULL:
                    return route.path
        return None

    async def _identify(self, scope: Scope) -> Identity:
        headers = Headers(scope=scope)
        address = _address(scope)
        authorization = headers.get("Authorization", "").strip()
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise _unauthorized("the Authorization header must be 'Bearer <user token>'")
            if self.security.users is None:
                raise _unauthorized("this control plane accepts no user tokens")
            try:
                claims = await self.security.users.verify(token.strip())
            except TokenError as exc:
                raise _unauthorized(f"user token refused: {exc.reason}") from None
            groups = tuple(dict.fromkeys((*claims.groups, AUTHENTICATED_GROUP)))
            return Identity(claims.name, groups, "token", address)
        if scope.get(CLIENT_CERT_KEY):
            groups = (ADMIN_GROUP, AUTHENTICATED_GROUP)
            name = str(scope[CLIENT_CERT_KEY])
            return Identity(name, groups, "client-certificate", address)
        if (
            self.security.localhost_is_admin
            and is_loopback_address(address)
            and is_loopback_host(headers.get("host"))
            and ("origin" not in headers or is_loopback_host(headers.get("origin")))
        ):
            return Identity(
                LOCALHOST_ADMIN, (ADMIN_GROUP, AUTHENTICATED_GROUP), "localhost", address
            )
        return Identity(ANONYMOUS, (UNAUTHENTICATED_GROUP,), "anonymous", address)

    def _authorize(self, method: str, template: str, identity: Identity) -> None:
        rule = self.rules.rule_for(method, template)
        if rule is None:
            log.error(
                "api: no access rule for %s %s: refused (add one to access.py)", method, template
            )
            raise ApiError(403, "Forbidden", f"no access rule for {method} {template}")
        if rule.access is PUBLIC or identity.is_admin:
            return
        if rule.access is ADMIN:
            if identity.anonymous:
                raise _unauthorized(
                    "this needs an admin: send 'Authorization: Bearer <user "
                    "token>' of a member of mesh-system:admin"
                )
            raise ApiError(
                403,
                "Forbidden",
                f'user "{identity.name}" is not an admin (not in group {ADMIN_GROUP})',
            )
        if identity.anonymous and not self.security.anonymous_read:
            raise _unauthorized("this needs a user token: send 'Authorization: Bearer <token>'")


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


def _unauthorized(details: str) -> ApiError:
    return ApiError(401, "Unauthorized", details, headers={"WWW-Authenticate": "Bearer"})


__all__ = [
    "CLIENT_CERT_KEY",
    "AccessMiddleware",
    "ApiSecurity",
    "Identity",
    "identity_of",
    "is_loopback_address",
    "is_loopback_host",
]
