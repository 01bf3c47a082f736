"""Dataplane tokens: JWTs signed RS256 by the control plane, in Kuma's format.

Header ``{"alg": "RS256", "typ": "JWT", "kid": "<key serial>"}``; claims ``Name``, ``Mesh``,
``Tags`` (``{tag: [values]}``), ``Type`` (``dataplane``/``ingress``/``egress``), ``jti``,
``iat``, ``nbf``, ``exp``. As in Kuma, ``nbf`` is five minutes before issuing (clock skew
between control plane instances) and revocation goes by ``jti``.

The signing key (RSA 2048) is made on first use and kept in the store (type ``SigningKey``,
``mesh=""``, name ``dataplane-token-signing-key-<serial>``), so tokens survive a restart and
every instance on the same store accepts them. Revocations live in one ``TokenRevocations``
document. Both are cached here and the caches follow store change events, so a verification
costs one RSA signature check and no store round trip.

JWT is small enough to do by hand with ``cryptography``; only RS256 is accepted, whatever the
header says (no ``alg: none``, no HMAC-with-the-public-key confusion).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kumadp.cp.store.base import ChangeEvent, ConflictError, Store

log = logging.getLogger(__name__)

SIGNING_KEY_TYPE = "SigningKey"
SIGNING_KEY_PREFIX = "dataplane-token-signing-key-"
REVOCATIONS_TYPE = "TokenRevocations"
REVOCATIONS_NAME = "dataplane"
PROXY_TYPES = ("dataplane", "ingress", "egress")
DEFAULT_VALID_FOR = 10 * 365 * 86400.0
NOT_BEFORE_SKEW = 5 * 60  # seconds, as Kuma
_RSA_BITS = 2048
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_ALG = "RS256"
_MAX_TIME = 253402300800  # 10000-01-01: what datetime can show


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


@dataclass(frozen=True)
class _Key:
    kid: str
    private_key: rsa.RSAPrivateKey = field(repr=False)
    public_key: rsa.RSAPublicKey = field(repr=False)


class TokenIssuer:
    """Issues, verifies and revokes dataplane tokens; state in ``store``.

    Call ``close()`` to stop following store events."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._keys: dict[str, _Key] | None = None  # kid -> key; None = not loaded
        self._key_names: set[str] = set()  # names of the stored keys last loaded
        self._revoked: frozenset[str] | None = None  # None = not loaded
        self._generation = 0  # bumped on every relevant store change
        self._lock = asyncio.Lock()
        self._unsubscribe = store.subscribe(self._on_change)

    def close(self) -> None:
        self._unsubscribe()

    def _on_change(self, event: ChangeEvent) -> None:
        if event.type == REVOCATIONS_TYPE and event.name == REVOCATIONS_NAME:
            self._revoked = None
            self._generation += 1
        elif event.type == SIGNING_KEY_TYPE:
            self._keys = None
            self._generation += 1

    # --- issuing --------------------------------------------------------------------------

    async def issue(
        self,
        mesh: str,
        name: str = "",
        tags: dict[str, list[str]] | None = None,
        valid_for: float = DEFAULT_VALID_FOR,
        proxy_type: str = "dataplane",
    ) -> str:
        """A signed token for a dataplane ``name`` (empty = any name) of ``mesh``."""
        if not mesh:
            raise ValueError("mesh: required to issue a dataplane token")
        if not valid_for > 0:
            raise ValueError(f"valid for: must be longer than 0, not {valid_for}s")
        if time.time() + valid_for >= _MAX_TIME:
            raise ValueError(f"valid for: {valid_for:.0f}s is too long (past the year 9999)")
        if proxy_type not in PROXY_TYPES:
            raise ValueError(
                f"proxy type: must be one of {', '.join(PROXY_TYPES)}, not {proxy_type!r}"
            )
        clean_tags: dict[str, list[str]] = {}
        for tag, values in (tags or {}).items():
            if isinstance(values, str) or not all(isinstance(v, str) for v in values):
                raise ValueError(f"tags.{tag}: must be a list of strings")
            clean_tags[tag] = list(values)
        key = await self._signing_key()
        now = int(time.time())
        claims = {
            "Name": name,
            "Mesh": mesh,
            "Tags": clean_tags,
            "Type": proxy_type,
            "jti": str(uuid.uuid4()),
            "iat": now,
            "nbf": now - NOT_BEFORE_SKEW,
            "exp": now + int(valid_for),
        }
        return encode_jwt(claims, key.private_key, key.kid)

    # --- verifying ------------------------------------------------------------------------

    async def verify(
        self, token: str | None, *, mesh: str, name: str, proxy_type: str | None = None
    ) -> TokenClaims:
        """The claims of a token valid for dataplane ``name`` of ``mesh`` (and ``proxy_type``
        when given); raises TokenError with the reason otherwise."""
        header, payload, signing_input, signature = _split(token)
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenError("malformed token: no kid in the header")
        key = await self._public_key(kid)
        if key is None:
            raise TokenError(
                f'unknown signing key (kid "{kid}"): the token was not issued by this control plane'
            )
        try:
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise TokenError(
                "signature does not verify: the token was not issued by this control plane"
            ) from None
        claims = _claims(payload, kid)
        now = time.time()
        if now >= claims.exp:
            raise TokenError(f"token expired at {_when(claims.exp)}")
        if now < claims.nbf:
            raise TokenError(f"token is not valid before {_when(claims.nbf)}")
        if claims.jti in await self.revoked():
            raise TokenError(f"token was revoked (jti {claims.jti})")
        if claims.mesh != mesh:
            raise TokenError(f"token is for mesh {claims.mesh}, not {mesh}")
        if claims.name and claims.name != name:
            raise TokenError(f"token is for dataplane {claims.name}, not {name}")
        if proxy_type is not None and claims.type and claims.type != proxy_type:
            raise TokenError(f"token is for a proxy of type {claims.type}, not {proxy_type}")
        return claims

    # --- revocation -----------------------------------------------------------------------

    async def revoke(self, jti: str) -> bool:
        """Revoke the token with this ``jti`` (effective at once, on every instance sharing
        the store). Returns False when it was already revoked."""
        jti = jti.strip()
        if not jti:
            raise ValueError("jti: required to revoke a token")
        while True:
            stored = await self._store.get(REVOCATIONS_TYPE, "", REVOCATIONS_NAME)
            jtis = list(stored.spec.get("jtis", [])) if stored is not None else []
            if jti in jtis:
                return False
            spec = {
                "type": REVOCATIONS_TYPE,
                "mesh": "",
                "name": REVOCATIONS_NAME,
                "jtis": [*jtis, jti],
            }
            try:
                await self._store.put(
                    REVOCATIONS_TYPE,
                    "",
                    REVOCATIONS_NAME,
                    spec,
                    expected_version=stored.version if stored is not None else 0,
                )
            except ConflictError:
                continue  # someone else revoked something meanwhile: merge and retry
            self._revoked = None
            self._generation += 1
            log.info("revoked dataplane token %s", jti)
            return True

    async def revoked(self) -> set[str]:
        """The ``jti`` of every revoked token."""
        cached = self._revoked
        if cached is None:
            generation = self._generation
            stored = await self._store.get(REVOCATIONS_TYPE, "", REVOCATIONS_NAME)
            cached = frozenset(stored.spec.get("jtis", [])) if stored is not None else frozenset()
            if generation == self._generation:  # no change arrived while reading
                self._revoked = cached
        return set(cached)

    # --- keys -----------------------------------------------------------------------------

    async def _load_keys(self) -> dict[str, _Key]:
        keys = self._keys
        if keys is not None:
            return keys
        generation = self._generation
        keys = {}
        listed = await self._store.list(SIGNING_KEY_TYPE, "")
        names = {res.name for res in listed}
        for res in listed:
            if not res.name.startswith(SIGNING_KEY_PREFIX):
                continue
            try:
                loaded = serialization.load_pem_private_key(
                    str(res.spec["keyPem"]).encode(), password=None
                )
            except (KeyError, ValueError, TypeError) as e:
                log.error("signing key %s is unreadable, ignored: %s", res.name, e)
                continue
            if not isinstance(loaded, rsa.RSAPrivateKey):
                log.error("signing key %s is not an RSA key, ignored", res.name)
                continue
            kid = str(res.spec.get("kid") or res.name.removeprefix(SIGNING_KEY_PREFIX))
            keys[kid] = _Key(kid=kid, private_key=loaded, public_key=loaded.public_key())
        if generation == self._generation:
            self._keys, self._key_names = keys, names
        return keys

    async def _public_key(self, kid: str) -> rsa.RSAPublicKey | None:
        keys = await self._load_keys()
        key = keys.get(kid)
        if key is None:
            # A key another instance added without this one hearing of it? Listing names is
            # cheap; keys are only parsed again when the set of names changed.
            names = {r.name for r in await self._store.list(SIGNING_KEY_TYPE, "")}
            if names != self._key_names:
                self._keys = None
                self._generation += 1
                key = (await self._load_keys()).get(kid)
        return key.public_key if key is not None else None

    async def _signing_key(self) -> _Key:
        """The newest signing key, created (serial 1) and stored on first use."""
        keys = await self._load_keys()
        if keys:
            return keys[max(keys, key=_serial)]
        async with self._lock:
            keys = await self._load_keys()
            if keys:
                return keys[max(keys, key=_serial)]
            private_key = await asyncio.to_thread(
                rsa.generate_private_key, public_exponent=65537, key_size=_RSA_BITS
            )
            kid = "1"
            name = SIGNING_KEY_PREFIX + kid
            pem = private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
            spec = {"type": SIGNING_KEY_TYPE, "mesh": "", "name": name, "keyPem": pem, "kid": kid}
            try:
                await self._store.put(SIGNING_KEY_TYPE, "", name, spec, expected_version=0)
                log.info("created dataplane token signing key %s", name)
            except ConflictError:
                pass  # another instance created it: use theirs
            self._keys = None
            self._generation += 1
            keys = await self._load_keys()
            if not keys:  # pragma: no cover - deleted right after creation
                raise TokenError("no dataplane token signing key in the store")
            return keys[max(keys, key=_serial)]


def _serial(kid: str) -> tuple[int, str]:
    return (int(kid), kid) if kid.isdigit() else (-1, kid)


# --- JWT encoding ------------------------------------------------------------------------


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


def _split(token: str | None) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
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


def _claims(payload: dict[str, Any], kid: str) -> TokenClaims:
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
            or not 0 <= value < _MAX_TIME
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


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = [
    "REVOCATIONS_TYPE",
    "SIGNING_KEY_TYPE",
    "TokenClaims",
    "TokenError",
    "TokenIssuer",
    "b64url_decode",
    "b64url_encode",
    "encode_jwt",
]
