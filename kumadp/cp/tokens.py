"""Dataplane tokens: JWTs signed RS256 by the control plane, in Kuma's format.

Header ``{"alg": "RS256", "typ": "JWT", "kid": "<key serial>"}``; claims ``Name``, ``Mesh``,
``Tags`` (``{tag: [values]}``), ``Type`` (``dataplane``/``ingress``/``egress``), ``jti``,
``iat``, ``nbf``, ``exp``. As in Kuma, ``nbf`` is five minutes before issuing (clock skew
between control plane instances) and revocation goes by ``jti``.

Signing and verification are PyJWT's (``kumadp.cp.jwt``: RS256 only, required claims); the
keys are ``dataplane-token-signing-key-<serial>`` (``kumadp.cp.signing_keys``); revocations
the ``dataplane`` list (``kumadp.cp.revocations``). A control plane that holds public keys
only (a zone) passes ``public_keys`` and can verify but not issue.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from kumadp.cp import jwt
from kumadp.cp.jwt import MAX_TIME, NOT_BEFORE_SKEW, TokenError
from kumadp.cp.token_authority import NO_SIGNING_KEY, TokenKind
from kumadp.resources.registry import SIGNING_KEY_TYPE, TOKEN_REVOCATIONS_TYPE
from kumadp.wire.names import PROXY_TYPES

SIGNING_KEY_PREFIX = "dataplane-token-signing-key-"
REVOCATIONS_TYPE = TOKEN_REVOCATIONS_TYPE
REVOCATIONS_NAME = "dataplane"
DEFAULT_VALID_FOR = 10 * 365 * 86400.0
REQUIRED_CLAIMS = ("Mesh", "jti", "exp")
ISSUE_ON_GLOBAL = "zone control plane: generate tokens on the global control plane"


@dataclass(frozen=True)
class TokenClaims:
    name: str
    mesh: str
    tags: dict[str, list[str]]
    type: str
    jti: str
    iat: int
    nbf: int
    exp: int
    kid: str = ""

    @property
    def services(self) -> set[str] | None:
        """The services the token allows (``Tags["kuma.io/service"]``); None = any."""
        values = self.tags.get("kuma.io/service")
        return set(values) if values else None

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.exp, UTC)


def check_valid_for(valid_for: float) -> int:
    """Seconds of validity as an int; ValueError when not positive or past year 9999."""
    if not valid_for > 0:
        raise ValueError(f"valid for: must be longer than 0, not {valid_for}s")
    if time.time() + valid_for >= MAX_TIME:
        raise ValueError(f"valid for: {valid_for:.0f}s is too long (past the year 9999)")
    return int(valid_for)


def standard_claims(valid_for: float) -> dict[str, object]:
    """``jti``, ``iat``, ``nbf`` (five minutes early) and ``exp`` of a new token."""
    seconds = check_valid_for(valid_for)
    now = int(time.time())
    return {
        "jti": str(uuid.uuid4()),
        "iat": now,
        "nbf": now - NOT_BEFORE_SKEW,
        "exp": now + seconds,
    }


class TokenIssuer(TokenKind):
    """Issues, verifies and revokes dataplane tokens; state in ``store``.

    ``public_keys``: verify with these keys only (a zone CP: issuing is refused). Call
    ``close()`` to stop following store events."""

    purpose = REVOCATIONS_NAME

    async def issue(
        self,
        mesh: str,
        name: str = "",
        tags: dict[str, list[str]] | None = None,
        valid_for: float = DEFAULT_VALID_FOR,
        proxy_type: str = "dataplane",
    ) -> str:
        """A signed token for a dataplane ``name`` (empty = any name) of ``mesh``."""
        if not self._authority.can_issue:
            raise TokenError(NO_SIGNING_KEY)
        if not mesh:
            raise ValueError("mesh: required to issue a dataplane token")
        if proxy_type not in PROXY_TYPES:
            raise ValueError(
                f"proxy type: must be one of {', '.join(PROXY_TYPES)}, not {proxy_type!r}"
            )
        clean_tags: dict[str, list[str]] = {}
        for tag, values in (tags or {}).items():
            if isinstance(values, str) or not all(isinstance(v, str) for v in values):
                raise ValueError(f"tags.{tag}: must be a list of strings")
            clean_tags[tag] = list(values)
        claims = {
            "Name": name,
            "Mesh": mesh,
            "Tags": clean_tags,
            "Type": proxy_type,
            **standard_claims(valid_for),
        }
        return await self._authority.sign(claims)

    async def verify(
        self, token: str | None, *, mesh: str, name: str, proxy_type: str | None = None
    ) -> TokenClaims:
        """The claims of a token valid for dataplane ``name`` of ``mesh`` (and ``proxy_type``
        when given); raises TokenError with the reason otherwise."""
        if not (token or "").strip():
            raise TokenError("no dataplane token: pass --dataplane-token-file")
        kid, payload = await jwt.verify(
            token, self._authority.keys, what="dataplane token", required=REQUIRED_CLAIMS
        )
        claims = claims_from_payload(payload, kid)
        await self._authority.check_not_revoked(claims.jti)
        if claims.mesh != mesh:
            raise TokenError(f"token is for mesh {claims.mesh}, not {mesh}")
        if claims.name and claims.name != name:
            raise TokenError(f"token is for dataplane {claims.name}, not {name}")
        if proxy_type is not None and claims.type and claims.type != proxy_type:
            raise TokenError(f"token is for a proxy of type {claims.type}, not {proxy_type}")
        return claims

    async def revoke(self, jti: str) -> bool:
        """Revoke the token with this ``jti``; False when it was already revoked."""
        return await self._authority.revocations.revoke(jti)

    async def revoked(self) -> set[str]:
        """The ``jti`` of every revoked dataplane token."""
        return set(await self._authority.revocations.revoked())


def claims_from_payload(payload: dict[str, object], kid: str) -> TokenClaims:
    raw_tags = payload.get("Tags") or {}
    if not isinstance(raw_tags, dict) or not all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in raw_tags.values()
    ):
        raise TokenError("malformed token: claim Tags must map tags to lists of strings")
    claims = dict(payload)
    return TokenClaims(
        name=jwt.text(claims, "Name"),
        mesh=jwt.text(claims, "Mesh", required=True),
        tags={str(k): list(v) for k, v in raw_tags.items()},
        type=jwt.text(claims, "Type"),
        jti=jwt.text(claims, "jti", required=True),
        iat=jwt.number(claims, "iat") if "iat" in claims else 0,
        nbf=jwt.number(claims, "nbf") if "nbf" in claims else 0,
        exp=jwt.number(claims, "exp"),
        kid=kid,
    )


__all__ = [
    "DEFAULT_VALID_FOR",
    "NO_SIGNING_KEY",
    "REVOCATIONS_TYPE",
    "SIGNING_KEY_TYPE",
    "TokenClaims",
    "TokenError",
    "TokenIssuer",
    "check_valid_for",
    "claims_from_payload",
    "standard_claims",
]
