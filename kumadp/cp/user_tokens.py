"""User tokens: how a person or a script authenticates to the control plane's API.

JWT RS256 with header ``kid`` and claims ``Name``, ``Groups`` (a list), ``jti``, ``iat``,
``nbf`` (five minutes early), ``exp``, as Kuma's user tokens; signed with the
``user-token-signing-key-<serial>`` keys, revoked through the ``user`` revocation list.
A member of ``mesh-system:admin`` is an admin (every write, token issuing, config dumps);
any other user may read. Sent as ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from kumadp.cp import jwt
from kumadp.cp.jwt import TokenError
from kumadp.cp.token_authority import TokenKind
from kumadp.cp.tokens import standard_claims

ADMIN_GROUP = "mesh-system:admin"
AUTHENTICATED_GROUP = "mesh-system:authenticated"
DEFAULT_VALID_FOR = 24 * 3600.0
REVOCATIONS_NAME = "user"
REQUIRED_CLAIMS = ("Name", "jti", "exp")
_NAME = re.compile(r"[A-Za-z0-9@._:+-]{1,128}")


@dataclass(frozen=True)
class UserTokenClaims:
    name: str
    groups: tuple[str, ...]
    jti: str
    exp: int
    kid: str = ""

    @property
    def is_admin(self) -> bool:
        return ADMIN_GROUP in self.groups


def check_user(name: str, groups: Iterable[str]) -> tuple[str, tuple[str, ...]]:
    if not _NAME.fullmatch(name or ""):
        raise ValueError("name: 1-128 letters, digits or any of @ . _ : + -")
    clean = tuple(dict.fromkeys(groups))
    for group in clean:
        if not _NAME.fullmatch(group):
            raise ValueError("group: 1-128 letters, digits or any of @ . _ : + -")
    return name, clean


class UserTokens(TokenKind):
    """Issues, verifies and revokes user tokens; state in ``store``. ``public_keys``: verify
    with these only and issue none (a zone CP: user tokens come from the global CP).
    ``close()`` when done."""

    purpose = REVOCATIONS_NAME

    async def issue(
        self, name: str, groups: Iterable[str] = (), valid_for: float = DEFAULT_VALID_FOR
    ) -> str:
        """A signed token for user ``name``, member of ``groups``."""
        name, clean = check_user(name, groups)
        claims = {"Name": name, "Groups": list(clean), **standard_claims(valid_for)}
        return await self._authority.sign(claims)

    async def verify(self, token: str | None) -> UserTokenClaims:
        """The claims of a valid, unrevoked user token; ``TokenError`` otherwise."""
        kid, payload = await jwt.verify(
            token, self._authority.keys, what="user token", required=REQUIRED_CLAIMS
        )
        claims = dict(payload)
        user = UserTokenClaims(
            name=jwt.text(claims, "Name", required=True),
            groups=tuple(jwt.string_list(claims, "Groups")),
            jti=jwt.text(claims, "jti", required=True),
            exp=jwt.number(claims, "exp"),
            kid=kid,
        )
        await self._authority.check_not_revoked(user.jti)
        return user

    async def revoke(self, jti: str) -> bool:
        return await self._authority.revocations.revoke(jti)


__all__ = [
    "ADMIN_GROUP",
    "AUTHENTICATED_GROUP",
    "DEFAULT_VALID_FOR",
    "TokenError",
    "UserTokenClaims",
    "UserTokens",
    "check_user",
]
