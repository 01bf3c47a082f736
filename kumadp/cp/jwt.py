"""JSON Web Tokens, RS256 only, done by hand with ``cryptography``: encoding, strict
decoding into ``TokenClaims``. Whatever the header says, only RS256 is accepted (no
``alg: none``, no HMAC-with-the-public-key confusion). Signature checks, keys and
revocation are ``kumadp.cp.tokens``'s.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_ALG = "RS256"
MAX_TIME = 253402300800  # 10000-01-01: what datetime can show


class TokenError(Exception):
    """A token is refused; ``reason`` (also the message) is meant for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url without padding; ValueError otherwise."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as e:  # pragma: no cover - excluded by the checks above
        raise ValueError("not base64url") from e


def _json_part(obj: dict[str, Any]) -> str:
    return b64url_encode(json.dumps(obj, separators=(",", ":")).encode())


def encode_jwt(claims: dict[str, Any], key: rsa.RSAPrivateKey, kid: str) -> str:
    """An RS256 JWT of ``claims`` with ``kid`` in the header."""
    header = {"alg": _ALG, "typ": "JWT", "kid": kid}
    signing_input = f"{_json_part(header)}.{_json_part(claims)}"
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url_encode(signature)}"


def decode_jwt(token: str | None) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Header, payload, signing input and signature of a JWT; TokenError when malformed."""
    text = (token or "").strip()
    if not text:
        raise TokenError("no dataplane token: pass --dataplane-token-file")
    parts = text.split(".")
    if len(parts) != 3:
        raise TokenError(f"malformed token: expected 3 dot-separated parts, got {len(parts)}")
    decoded: list[dict[str, Any]] = []
    for part, what in zip(parts[:2], ("header", "payload"), strict=True):
        try:
            value = json.loads(b64url_decode(part))
        except (ValueError, UnicodeDecodeError):
            raise TokenError(f"malformed token: the {what} is not base64url JSON") from None
        if not isinstance(value, dict):
            raise TokenError(f"malformed token: the {what} is not a JSON object")
        decoded.append(value)
    try:
        signature = b64url_decode(parts[2])
    except ValueError:
        raise TokenError("malformed token: the signature is not base64url") from None
    header, payload = decoded
    alg = header.get("alg")
    if alg != _ALG:
        raise TokenError(f"malformed token: unsupported alg {json.dumps(alg)} (expected RS256)")
    return header, payload, f"{parts[0]}.{parts[1]}".encode("ascii"), signature


def claims_from_payload(payload: dict[str, Any], kid: str) -> TokenClaims:
    def text(key: str, required: bool = False) -> str:
        value = payload.get(key, "")
        if not isinstance(value, str) or (required and not value):
            raise TokenError(f"malformed token: claim {key} must be a non-empty string")
        return value

    def number(key: str) -> int:
        value = payload.get(key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0 <= value < MAX_TIME
        ):
            raise TokenError(f"malformed token: claim {key} must be a number")
        return int(value)

    raw_tags = payload.get("Tags") or {}
    if not isinstance(raw_tags, dict) or not all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in raw_tags.values()
    ):
        raise TokenError("malformed token: claim Tags must map tags to lists of strings")
    return TokenClaims(
        name=text("Name"),
        mesh=text("Mesh", required=True),
        tags={str(k): list(v) for k, v in raw_tags.items()},
        type=text("Type"),
        jti=text("jti", required=True),
        iat=number("iat") if "iat" in payload else 0,
        nbf=number("nbf") if "nbf" in payload else 0,
        exp=number("exp"),
        kid=kid,
    )


__all__ = [
    "MAX_TIME",
    "TokenClaims",
    "TokenError",
    "b64url_decode",
    "b64url_encode",
    "claims_from_payload",
    "decode_jwt",
    "encode_jwt",
]
