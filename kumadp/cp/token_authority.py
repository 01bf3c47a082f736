"""What every kind of token (dataplane, zone, user) has in common: its signing keys (the
CP's own, or only public ones on a zone CP, which then issues none), its revocation list,
and signing claims with the newest key. ``TokenIssuer``, ``ZoneTokens`` and ``UserTokens``
add their claims and checks on top."""

from __future__ import annotations

from typing import Any

from kumadp.cp import jwt
from kumadp.cp.jwt import PublicKeySource, TokenError
from kumadp.cp.revocations import Revocations
from kumadp.cp.signing_keys import SigningKeys
from kumadp.cp.store.base import Store

NO_SIGNING_KEY = "this control plane holds no signing key: generate tokens on the global one"


class TokenAuthority:
    """The keys and revocations of tokens of ``purpose``; ``public_keys``: verify with these
    only and refuse to sign. ``close()`` when done."""

    def __init__(
        self, store: Store, purpose: str, *, public_keys: PublicKeySource | None = None
    ) -> None:
        self.own_keys = SigningKeys(store, purpose) if public_keys is None else None
        self.keys: PublicKeySource = self.own_keys or public_keys  # type: ignore[assignment]
        self.revocations = Revocations(store, purpose)

    @property
    def can_issue(self) -> bool:
        return self.own_keys is not None

    async def sign(self, claims: dict[str, Any]) -> str:
        """``claims`` signed with the newest key; ``TokenError`` on a CP without keys."""
        if self.own_keys is None:
            raise TokenError(NO_SIGNING_KEY)
        key = await self.own_keys.signing_key()
        return jwt.sign(claims, key.private_key, key.kid)

    async def check_not_revoked(self, jti: str) -> None:
        if await self.revocations.is_revoked(jti):
            raise TokenError(f"token was revoked (jti {jti})")

    def close(self) -> None:
        if self.own_keys is not None:
            self.own_keys.close()
        self.revocations.close()


class TokenKind:
    """Base of ``TokenIssuer``, ``ZoneTokens`` and ``UserTokens``: one ``TokenAuthority``
    for the kind's ``purpose`` (its keys and revocation list). ``public_keys``: verify with
    these only and issue none (a zone CP). ``close()`` when done."""

    purpose = ""

    def __init__(self, store: Store, *, public_keys: PublicKeySource | None = None) -> None:
        self._authority = TokenAuthority(store, self.purpose, public_keys=public_keys)

    def close(self) -> None:
        self._authority.close()

    @property
    def can_issue(self) -> bool:
        return self._authority.can_issue

    @property
    def signing_keys(self) -> SigningKeys | None:
        """The CP's own keys (None when it verifies with public keys only)."""
        return self._authority.own_keys


__all__ = ["NO_SIGNING_KEY", "TokenAuthority", "TokenKind"]
