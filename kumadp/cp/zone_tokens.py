"""Zone tokens: what a zone control plane (scope ``cp``) or a zone ingress/egress proxy
(scopes ``ingress``, ``egress``) presents to prove it belongs to a zone.

JWT RS256 with header ``kid`` and claims ``Zone``, ``Scope`` (a list), ``jti``, ``iat``,
``nbf`` (five minutes early), ``exp``; signed with the ``zone-token-signing-key-<serial>``
keys (never the dataplane keys), revoked through the ``zone`` revocation list. Minted on the
global (or standalone) control plane; verified there or, from public keys only, on a zone CP
(``ZoneTokens(store, public_keys=...)`` or the ``verify_zone_token`` function).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from kumadp.cp import jwt
from kumadp.cp.jwt import PublicKeySource, TokenError
from kumadp.cp.token_authority import NO_SIGNING_KEY, TokenKind
from kumadp.cp.tokens import standard_claims
from kumadp.resources.errors import quoted

SCOPES = ("cp", "ingress", "egress")
DEFAULT_SCOPES = ("ingress", "egress")
DEFAULT_VALID_FOR = 30 * 86400.0  # 720h
REVOCATIONS_NAME = "zone"
REQUIRED_CLAIMS = ("Zone", "Scope", "jti", "exp")
_ZONE_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?")

IsRevoked = Callable[[str], Awaitable[bool]]


@dataclass(frozen=True)
class ZoneTokenClaims:
    zone: str
    scope: tuple[str, ...]
    jti: str
    iat: int
    nbf: int
    exp: int
    kid: str = ""

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.exp, UTC)


def check_zone_name(zone: str) -> str:
    if not _ZONE_NAME.fullmatch(zone or ""):
        raise ValueError(
            "zone: must be 1-63 lowercase letters, digits, '-' or '.', starting and ending "
            "with a letter or digit"
        )
    return zone


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """The scopes, each once, in ``SCOPES`` order; ValueError for an unknown or no scope."""
    given = list(scopes)
    for scope in given:
        if scope not in SCOPES:
            shown = quoted(scope)
            raise ValueError(f"scope: must be one of {', '.join(SCOPES)}, not {shown}")
    if not given:
        raise ValueError(f"scope: at least one of {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in given)


def _scope_text(scope: Iterable[str]) -> str:
    return "[" + ", ".join(scope) + "]"


async def _never_revoked(jti: str) -> bool:
    return False


async def verify_zone_token(
    token: str | None,
    keys: PublicKeySource,
    *,
    zone: str | None = None,
    scope: str,
    is_revoked: IsRevoked = _never_revoked,
) -> ZoneTokenClaims:
    """The claims of a zone token signed by one of ``keys`` (public keys are enough),
    valid for ``zone`` (any zone when None) and carrying ``scope``; ``TokenError`` saying
    which check failed otherwise."""
    if scope not in SCOPES:
        raise ValueError(f"scope: must be one of {', '.join(SCOPES)}")
    kid, payload = await jwt.verify(token, keys, what="zone token", required=REQUIRED_CLAIMS)
    claims = _claims(payload, kid)
    if await is_revoked(claims.jti):
        raise TokenError(f"token was revoked (jti {claims.jti})")
    if zone is not None and claims.zone != zone:
        raise TokenError(f"token is for zone {claims.zone}, not {zone}")
    if scope not in claims.scope:
        raise TokenError(f"token scope is {_scope_text(claims.scope)}, not {scope}")
    return claims


def _claims(payload: dict[str, object], kid: str) -> ZoneTokenClaims:
    claims = dict(payload)
    scope = jwt.string_list(claims, "Scope")
    unknown = [s for s in scope if s not in SCOPES]
    if unknown or not scope:
        raise TokenError(f"malformed token: claim Scope must hold some of {', '.join(SCOPES)}")
    return ZoneTokenClaims(
        zone=jwt.text(claims, "Zone", required=True),
        scope=tuple(scope),
        jti=jwt.text(claims, "jti", required=True),
        iat=jwt.number(claims, "iat") if "iat" in claims else 0,
        nbf=jwt.number(claims, "nbf") if "nbf" in claims else 0,
        exp=jwt.number(claims, "exp"),
        kid=kid,
    )


class ZoneTokens(TokenKind):
    """Issues, verifies and revokes zone tokens; state in ``store``. ``public_keys``: verify
    with these keys only (a zone CP), issuing is then refused. ``close()`` when done."""

    purpose = REVOCATIONS_NAME

    async def issue(
        self,
        zone: str,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        valid_for: float = DEFAULT_VALID_FOR,
    ) -> str:
        """A signed token for ``zone`` with ``scopes`` (``cp``, ``ingress``, ``egress``)."""
        if not self._authority.can_issue:
            raise TokenError(NO_SIGNING_KEY)
        claims = {
            "Zone": check_zone_name(zone),
            "Scope": list(check_scopes(scopes)),
            **standard_claims(valid_for),
        }
        return await self._authority.sign(claims)

    async def verify(
        self, token: str | None, *, zone: str | None = None, scope: str
    ) -> ZoneTokenClaims:
        """See ``verify_zone_token``; revocations are this store's ``zone`` list."""
        authority = self._authority
        return await verify_zone_token(
            token,
            authority.keys,
            zone=zone,
            scope=scope,
            is_revoked=authority.revocations.is_revoked,
        )

    verify_zone_token = verify

    async def revoke(self, jti: str) -> bool:
        return await self._authority.revocations.revoke(jti)


__all__ = [
    "DEFAULT_SCOPES",
    "DEFAULT_VALID_FOR",
    "SCOPES",
    "ZoneTokenClaims",
    "ZoneTokens",
    "check_scopes",
    "check_zone_name",
    "verify_zone_token",
]
