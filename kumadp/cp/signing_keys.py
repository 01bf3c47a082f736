"""Token signing keys: RSA 2048 keys kept in the store, one series per purpose.

Each purpose (``dataplane``, ``zone``, ``user``) has its own keys, stored as ``SigningKey``
resources (``mesh=""``) named ``<purpose>-token-signing-key-<serial>`` with ``keyPem`` (the
private key, PKCS#8; sealed when the store encrypts secrets, see ``kumadp.cp.secrets``) and
``kid`` (the serial). The newest serial signs; every stored key verifies. A key is made on
first use, so tokens survive a restart and every instance on the same store accepts them.

Public keys can be shared without the private part (``public_signing_keys``: JWKs and PEMs)
and verified from only them (``PublicKeySet``): a zone control plane verifies tokens with
the public keys synced from the global one and never holds a private signing key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from kumadp.cp.jwt import TokenError
from kumadp.cp.store.base import ChangeEvent, ConflictError, Store
from kumadp.resources.registry import SIGNING_KEY_TYPE

log = logging.getLogger(__name__)

PURPOSES = ("dataplane", "zone", "user")
_RSA_BITS = 2048


def key_prefix(purpose: str) -> str:
    """``dataplane-token-signing-key-``: the stored name of a purpose's keys, less the kid."""
    return f"{purpose}-token-signing-key-"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey = field(repr=False)

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()


@dataclass(frozen=True)
class PublicSigningKey:
    """The public half of a stored signing key: what may leave the control plane."""

    name: str  # the stored key's name, e.g. zone-token-signing-key-1
    purpose: str
    kid: str
    public_key: rsa.RSAPublicKey = field(repr=False, compare=False)

    @property
    def pem(self) -> str:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def to_jwk(self) -> dict[str, Any]:
        jwk = RSAAlgorithm.to_jwk(self.public_key, as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": "RS256", "purpose": self.purpose}


def load_public_key(pem_or_jwk: str | Mapping[str, Any]) -> rsa.RSAPublicKey:
    """An RSA public key from a PEM text or a JWK (dict or JSON text); ValueError otherwise.
    A private key is refused: this is the way in for keys from elsewhere."""
    if isinstance(pem_or_jwk, str) and "-----BEGIN" in pem_or_jwk:
        if "PRIVATE KEY" in pem_or_jwk:
            raise ValueError("a private key was given where a public key is expected")
        key: Any = serialization.load_pem_public_key(pem_or_jwk.encode())
    else:
        jwk = dict(pem_or_jwk) if isinstance(pem_or_jwk, Mapping) else pem_or_jwk
        if isinstance(jwk, dict) and "d" in jwk:
            raise ValueError("a private key was given where a public key is expected")
        key = RSAAlgorithm.from_jwk(jwk)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


class PublicKeySet:
    """Verification keys of one purpose from public keys only (``kid`` -> key): what a zone
    CP builds from the keys global synced to it. Implements ``jwt.PublicKeySource``."""

    def __init__(self, keys: Mapping[str, rsa.RSAPublicKey] | None = None) -> None:
        self._keys = dict(keys or {})

    @classmethod
    def from_documents(
        cls, documents: Iterable[str | Mapping[str, Any]], purpose: str | None = None
    ) -> PublicKeySet:
        """From JWKs (each with its ``kid``; those of another ``purpose`` skipped when one
        is given) or ``{"kid", "publicKeyPem"}`` documents."""
        keys: dict[str, rsa.RSAPublicKey] = {}
        for doc in documents:
            if isinstance(doc, str):
                raise ValueError("a public key document needs its kid (give a JWK)")
            if purpose is not None and doc.get("purpose", purpose) != purpose:
                continue
            kid = str(doc.get("kid") or "")
            if not kid:
                raise ValueError("a public key document needs a kid")
            pem = doc.get("publicKeyPem")
            keys[kid] = load_public_key(str(pem) if pem else doc)
        return cls(keys)

    def set(self, kid: str, key: rsa.RSAPublicKey) -> None:
        self._keys[kid] = key

    def remove(self, kid: str) -> None:
        self._keys.pop(kid, None)

    def kids(self) -> list[str]:
        return sorted(self._keys)

    async def public_key(self, kid: str) -> rsa.RSAPublicKey | None:
        return self._keys.get(kid)


class SigningKeys:
    """The signing keys of one ``purpose`` in ``store``, cached; the cache follows store
    change events (drained before each use: no task, and a change committed before a call
    is seen by that call). Implements ``jwt.PublicKeySource``. ``close()`` when done."""

    def __init__(self, store: Store, purpose: str) -> None:
        if purpose not in PURPOSES:
            raise ValueError(f"signing key purpose must be one of {', '.join(PURPOSES)}")
        self.purpose = purpose
        self.prefix = key_prefix(purpose)
        self._store = store
        self._keys: dict[str, SigningKey] | None = None  # kid -> key; None = not loaded
        self._names: set[str] = set()  # names of this purpose's keys last loaded
        self._generation = 0
        self._lock = asyncio.Lock()
        self._changes = store.changes((SIGNING_KEY_TYPE,))

    def close(self) -> None:
        self._changes.close()

    def _catch_up(self) -> None:
        for event in self._changes.drain():
            if event.is_resync or self._concerns(event):
                self._invalidate()

    def _concerns(self, event: ChangeEvent) -> bool:
        return event.type == SIGNING_KEY_TYPE and event.name.startswith(self.prefix)

    def _invalidate(self) -> None:
        self._keys = None
        self._generation += 1

    async def _load(self) -> dict[str, SigningKey]:
        self._catch_up()
        if self._keys is not None:
            return self._keys
        generation = self._generation
        keys: dict[str, SigningKey] = {}
        listed = [r for r in await self._store.list(SIGNING_KEY_TYPE, "") if self._mine(r.name)]
        for res in listed:
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
            kid = str(res.spec.get("kid") or res.name.removeprefix(self.prefix))
            keys[kid] = SigningKey(kid=kid, private_key=loaded)
        self._catch_up()
        if generation == self._generation:  # no change arrived while reading
            self._keys, self._names = keys, {r.name for r in listed}
        return keys

    def _mine(self, name: str) -> bool:
        return name.startswith(self.prefix)

    async def public_key(self, kid: str) -> rsa.RSAPublicKey | None:
        key = (await self._load()).get(kid)
        if key is None:
            # A key another instance added without this one hearing of it? Listing names is
            # cheap; keys are parsed again only when the set of names changed.
            names = {
                r.name for r in await self._store.list(SIGNING_KEY_TYPE, "") if self._mine(r.name)
            }
            if names != self._names:
                self._invalidate()
                key = (await self._load()).get(kid)
        return key.public_key if key is not None else None

    async def public_keys(self) -> list[PublicSigningKey]:
        keys = await self._load()
        return [
            PublicSigningKey(self.prefix + kid, self.purpose, kid, keys[kid].public_key)
            for kid in sorted(keys, key=_serial)
        ]

    async def signing_key(self) -> SigningKey:
        """The newest key, created (serial 1) and stored on first use."""
        keys = await self._load()
        if keys:
            return keys[max(keys, key=_serial)]
        async with self._lock:
            keys = await self._load()
            if keys:
                return keys[max(keys, key=_serial)]
            private_key = await asyncio.to_thread(
                rsa.generate_private_key, public_exponent=65537, key_size=_RSA_BITS
            )
            kid = "1"
            name = self.prefix + kid
            pem = private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
            spec = {"type": SIGNING_KEY_TYPE, "mesh": "", "name": name, "keyPem": pem, "kid": kid}
            try:
                await self._store.put(SIGNING_KEY_TYPE, "", name, spec, expected_version=0)
                log.info("created %s token signing key %s", self.purpose, name)
            except ConflictError:
                pass  # another instance created it: use theirs
            self._invalidate()
            keys = await self._load()
            if not keys:  # pragma: no cover - deleted right after creation
                raise TokenError(f"no {self.purpose} token signing key in the store")
            return keys[max(keys, key=_serial)]


async def public_signing_keys(
    store: Store, purposes: Iterable[str] = PURPOSES
) -> list[PublicSigningKey]:
    """The public half of every stored signing key of ``purposes`` (never a private key):
    what a global CP hands to its zones."""
    out: list[PublicSigningKey] = []
    for purpose in purposes:
        keys = SigningKeys(store, purpose)
        try:
            out.extend(await keys.public_keys())
        finally:
            keys.close()
    return out


def public_jwks(keys: Iterable[PublicSigningKey]) -> dict[str, Any]:
    """A JWK Set (``{"keys": [...]}``) of public signing keys."""
    return {"keys": [key.to_jwk() for key in keys]}


def _serial(kid: str) -> tuple[int, str]:
    return (int(kid), kid) if kid.isdigit() else (-1, kid)


__all__ = [
    "PURPOSES",
    "PublicKeySet",
    "PublicSigningKey",
    "SigningKey",
    "SigningKeys",
    "key_prefix",
    "load_public_key",
    "public_jwks",
    "public_signing_keys",
]
