"""JSON Web Tokens on PyJWT: signing and strict verification, shared by every kind of token
the control plane issues (dataplane, zone, user).

- the algorithm allow-list is RS256 only, whatever the header says: no ``alg: none``, no
  HMAC keyed with the public key;
- a token longer than ``MAX_TOKEN_BYTES`` is refused before any parsing;
- every kind names its required claims; PyJWT checks their presence, the signature, ``exp``
  and ``nbf`` (no leeway: ``nbf`` is already issued five minutes early, as Kuma does);
- every failure is a ``TokenError`` whose reason is one line meant for the user.

Keys, revocation and the claims of each kind are in ``signing_keys``, ``revocations``,
``tokens`` (dataplane), ``zone_tokens`` and ``user_tokens``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import jwt as pyjwt
from cryptography.hazmat.primitives.asymmetric import rsa

ALGORITHMS = ("RS256",)  # the allow-list
MAX_TOKEN_BYTES = 8 * 1024
MAX_TIME = 253402300800  # 10000-01-01: what datetime can show
NOT_BEFORE_SKEW = 5 * 60  # seconds, as Kuma


class TokenError(Exception):
    """A token is refused; ``reason`` (also the message) is meant for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PublicKeySource(Protocol):
    """Where a verifier finds the public key of a ``kid``: the CP's own signing keys, or
    public keys only (a zone CP holds no private signing key)."""

    async def public_key(self, kid: str) -> rsa.RSAPublicKey | None: ...


def when(timestamp: float) -> str:
    """``2023-11-14T22:13:20Z``; far-off times say so instead of failing."""
    if not math.isfinite(timestamp) or not 0 <= timestamp < MAX_TIME:
        return "a time out of range"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign(claims: dict[str, Any], key: rsa.RSAPrivateKey, kid: str) -> str:
    """An RS256 JWT of ``claims`` with ``kid`` in the header."""
    return pyjwt.encode(claims, key, algorithm=ALGORITHMS[0], headers={"kid": kid, "typ": "JWT"})


def header_kid(token: str | None, what: str) -> tuple[str, str]:
    """The stripped token and the ``kid`` of its header; ``TokenError`` when it is absent,
    oversized, malformed or not RS256. ``what`` names the token in messages."""
    text = (token or "").strip()
    if not text:
        raise TokenError(f"no {what}")
    if len(text) > MAX_TOKEN_BYTES:
        raise TokenError(f"malformed token: longer than {MAX_TOKEN_BYTES} bytes")
    if text.count(".") != 2:
        raise TokenError(
            f"malformed token: expected 3 dot-separated parts, got {text.count('.') + 1}"
        )
    try:
        header = pyjwt.get_unverified_header(text)
    except pyjwt.DecodeError:
        raise TokenError("malformed token: the header is not base64url JSON") from None
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        shown = json.dumps(alg)[:40]
        raise TokenError(f"malformed token: unsupported alg {shown} (expected RS256)")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > 64:
        raise TokenError("malformed token: no kid in the header")
    return text, kid


async def verify(
    token: str | None,
    keys: PublicKeySource,
    *,
    what: str,
    required: Sequence[str],
) -> tuple[str, dict[str, Any]]:
    """The ``kid`` and claims of a token signed by one of ``keys``, with every claim of
    ``required`` present and ``exp``/``nbf`` checked; ``TokenError`` otherwise."""
    text, kid = header_kid(token, what)
    key = await keys.public_key(kid)
    if key is None:
        raise TokenError(
            f'unknown signing key (kid "{kid}"): the token was not issued by this control plane'
        )
    try:
        claims = pyjwt.decode(
            text,
            key,
            algorithms=list(ALGORITHMS),
            # iat is informative: a CP whose clock runs a little behind must not refuse a
            # fresh token (nbf carries the skew allowance)
            options={"require": list(required), "verify_iat": False},
        )
    except pyjwt.InvalidSignatureError:
        raise TokenError(
            f"signature does not verify: the token is not a {what} issued by this control plane"
        ) from None
    except pyjwt.ExpiredSignatureError:
        raise TokenError(f"token expired at {when(_unverified_number(text, 'exp'))}") from None
    except pyjwt.ImmatureSignatureError:
        raise TokenError(
            f"token is not valid before {when(_unverified_number(text, 'nbf'))}"
        ) from None
    except pyjwt.MissingRequiredClaimError as exc:
        raise TokenError(f"malformed token: claim {exc.claim} is required") from None
    except pyjwt.InvalidTokenError as exc:
        reason = str(exc).split("\n", 1)[0][:120]
        raise TokenError(f"malformed token: {reason}") from None
    if not isinstance(claims, dict):  # pragma: no cover - PyJWT always gives a dict
        raise TokenError("malformed token: the payload is not a JSON object")
    for key_name in ("iat", "nbf", "exp"):
        if key_name in claims:
            number(claims, key_name)
    return kid, claims


def _unverified_number(token: str, claim: str) -> float:
    try:
        value = pyjwt.decode(token, options={"verify_signature": False}).get(claim)
    except pyjwt.InvalidTokenError:  # pragma: no cover - decoded once already
        return math.nan
    return float(value) if isinstance(value, int | float) else math.nan


def text(claims: dict[str, Any], key: str, *, required: bool = False) -> str:
    value = claims.get(key, "")
    if not isinstance(value, str) or (required and not value):
        raise TokenError(f"malformed token: claim {key} must be a non-empty string")
    return value


def number(claims: dict[str, Any], key: str) -> int:
    value = claims.get(key)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value < MAX_TIME
    ):
        raise TokenError(f"malformed token: claim {key} must be a number")
    return int(value)


def string_list(claims: dict[str, Any], key: str) -> list[str]:
    value = claims.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TokenError(f"malformed token: claim {key} must be a list of strings")
    return list(value)


__all__ = [
    "ALGORITHMS",
    "MAX_TIME",
    "MAX_TOKEN_BYTES",
    "NOT_BEFORE_SKEW",
    "PublicKeySource",
    "TokenError",
    "header_kid",
    "number",
    "sign",
    "string_list",
    "text",
    "verify",
    "when",
]
