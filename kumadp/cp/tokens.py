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

In a zone CP (``public_only``) tokens are verified with the PUBLIC keys synced from the
global CP (type ``SigningPublicKey``, ``kumadp.cp.kds.keys``) and never issued.

JWT encoding and strict decoding are in ``kumadp.cp.jwt``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kumadp.cp.jwt import (
    MAX_TIME,
    TokenClaims,
    TokenError,
    b64url_decode,
    b64url_encode,
    claims_from_payload,
    decode_jwt,
    encode_jwt,
)
from kumadp.cp.store.base import ChangeEvent, ConflictError, Store
from kumadp.resources.registry import (
    SIGNING_KEY_TYPE,
    SIGNING_PUBLIC_KEY_TYPE,
    TOKEN_REVOCATIONS_TYPE,
)
from kumadp.wire.names import PROXY_TYPES

log = logging.getLogger(__name__)

SIGNING_KEY_PREFIX = "dataplane-token-signing-key-"
REVOCATIONS_TYPE = TOKEN_REVOCATIONS_TYPE
REVOCATIONS_NAME = "dataplane"
DEFAULT_VALID_FOR = 10 * 365 * 86400.0
NOT_BEFORE_SKEW = 5 * 60  # seconds, as Kuma
_RSA_BITS = 2048
ISSUE_ON_GLOBAL = "zone control plane: generate tokens on the global control plane"


@dataclass(frozen=True)
class _Key:
    kid: str
    private_key: rsa.RSAPrivateKey | None = field(repr=False)  # None: verify only
    public_key: rsa.RSAPublicKey = field(repr=False)


class TokenIssuer:
    """Issues, verifies and revokes dataplane tokens; state in ``store``.

    Call ``close()`` to stop following store events."""

    def __init__(self, store: Store, *, public_only: bool = False) -> None:
        self._store = store
        self.public_only = public_only
        self._key_type = SIGNING_PUBLIC_KEY_TYPE if public_only else SIGNING_KEY_TYPE
        self._keys: dict[str, _Key] | None = None  # kid -> key; None = not loaded
        self._key_names: set[str] = set()  # names of the stored keys last loaded
        self._revoked: frozenset[str] | None = None  # None = not loaded
        self._generation = 0  # bumped on every relevant store change
        self._lock = asyncio.Lock()
        # Drained before each use of a cache: no task needed, and a change committed before
        # a call is seen by that call.
        self._changes = store.changes((REVOCATIONS_TYPE, self._key_type))

    def close(self) -> None:
        self._changes.close()

    def _catch_up(self) -> None:
        for event in self._changes.drain():
            self._on_change(event)

    def _on_change(self, event: ChangeEvent) -> None:
        if event.is_resync:
            self._revoked = None
            self._keys = None
            self._generation += 1
        elif event.type == REVOCATIONS_TYPE and event.name == REVOCATIONS_NAME:
            self._revoked = None
            self._generation += 1
        elif event.type == self._key_type:
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
        if self.public_only:
            raise TokenError(ISSUE_ON_GLOBAL)
        if not mesh:
            raise ValueError("mesh: required to issue a dataplane token")
        if not valid_for > 0:
            raise ValueError(f"valid for: must be longer than 0, not {valid_for}s")
        if time.time() + valid_for >= MAX_TIME:
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
        assert key.private_key is not None  # a signing CP loads private keys
        return encode_jwt(claims, key.private_key, key.kid)

    # --- verifying ------------------------------------------------------------------------

    async def verify(
        self, token: str | None, *, mesh: str, name: str, proxy_type: str | None = None
    ) -> TokenClaims:
        """The claims of a token valid for dataplane ``name`` of ``mesh`` (and ``proxy_type``
        when given); raises TokenError with the reason otherwise."""
        header, payload, signing_input, signature = decode_jwt(token)
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
        claims = claims_from_payload(payload, kid)
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
        self._catch_up()
        cached = self._revoked
        if cached is None:
            generation = self._generation
            stored = await self._store.get(REVOCATIONS_TYPE, "", REVOCATIONS_NAME)
            cached = frozenset(stored.spec.get("jtis", [])) if stored is not None else frozenset()
            self._catch_up()
            if generation == self._generation:  # no change arrived while reading
                self._revoked = cached
        return set(cached)

    # --- keys -----------------------------------------------------------------------------

    async def _load_keys(self) -> dict[str, _Key]:
        self._catch_up()
        keys = self._keys
        if keys is not None:
            return keys
        generation = self._generation
        keys = {}
        listed = await self._store.list(self._key_type, "")
        names = {res.name for res in listed}
        for res in listed:
            if not res.name.startswith(SIGNING_KEY_PREFIX):
                continue
            key = _read_key(res.name, res.spec, self.public_only)
            if key is not None:
                kid = str(res.spec.get("kid") or res.name.removeprefix(SIGNING_KEY_PREFIX))
                keys[kid] = _Key(kid=kid, private_key=key[0], public_key=key[1])
        self._catch_up()
        if generation == self._generation:
            self._keys, self._key_names = keys, names
        return keys

    async def _public_key(self, kid: str) -> rsa.RSAPublicKey | None:
        keys = await self._load_keys()
        key = keys.get(kid)
        if key is None:
            # A key another instance added without this one hearing of it? Listing names is
            # cheap; keys are only parsed again when the set of names changed.
            names = {r.name for r in await self._store.list(self._key_type, "")}
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


def _read_key(
    name: str, spec: dict[str, object], public_only: bool
) -> tuple[rsa.RSAPrivateKey | None, rsa.RSAPublicKey] | None:
    """A stored key (private, or public only); None (logged) when it is unusable."""
    try:
        if public_only:
            loaded: object = serialization.load_pem_public_key(str(spec["publicKeyPem"]).encode())
        else:
            loaded = serialization.load_pem_private_key(str(spec["keyPem"]).encode(), None)
    except (KeyError, ValueError, TypeError) as e:
        log.error("signing key %s is unreadable, ignored: %s", name, e)
        return None
    if isinstance(loaded, rsa.RSAPrivateKey):
        return loaded, loaded.public_key()
    if isinstance(loaded, rsa.RSAPublicKey):
        return None, loaded
    log.error("signing key %s is not an RSA key, ignored", name)
    return None


def _serial(kid: str) -> tuple[int, str]:
    return (int(kid), kid) if kid.isdigit() else (-1, kid)


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
