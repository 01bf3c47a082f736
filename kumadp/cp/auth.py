"""Dataplane authentication: one check used by bootstrap, ADS and the agent channel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from kumadp.cp.tokens import TokenClaims, TokenError, TokenIssuer
from kumadp.wire.names import AUTHORIZATION_METADATA

DpAuthMode = Literal["dpToken", "none"]
DP_AUTH_MODES: tuple[str, ...] = ("dpToken", "none")


class AuthError(Exception):
    """The caller could not be authenticated; the message says why, for the user."""


def token_from_metadata(metadata: Mapping[str, str]) -> str:
    value = metadata.get(AUTHORIZATION_METADATA, "").strip()
    if value.lower().startswith("bearer "):
        value = value[7:].strip()
    return value


class DpAuth:
    def __init__(self, mode: str, tokens: TokenIssuer) -> None:
        if mode not in DP_AUTH_MODES:
            raise ValueError(f"--dp-auth: must be one of {', '.join(DP_AUTH_MODES)}")
        self.mode = mode
        self.tokens = tokens

    @property
    def enabled(self) -> bool:
        return self.mode == "dpToken"

    async def check(self, token: str | None, mesh: str, name: str) -> TokenClaims | None:
        """None when auth is off; the token's claims when it is valid for (mesh, name)."""
        if not self.enabled:
            return None
        try:
            return await self.tokens.verify(token or "", mesh=mesh, name=name)
        except TokenError as exc:
            raise AuthError(f"dataplane {mesh}.{name}: {exc}") from exc


def allowed_services(claims: TokenClaims | None) -> set[str] | None:
    """The services a token restricts its holder to (None: no restriction)."""
    if claims is None:
        return None
    tags = getattr(claims, "tags", None) or {}
    services = tags.get("kuma.io/service")
    return set(services) if services else None
