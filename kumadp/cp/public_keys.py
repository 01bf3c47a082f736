"""Verification keys a zone control plane holds: the PUBLIC halves of the global CP's token
signing keys, synced to it over KDS as ``SigningPublicKey`` resources (``kumadp.cp.kds.keys``
publishes them on global; same name as the private key, ``<purpose>-token-signing-key-<n>``,
with ``kid`` and ``publicKeyPem``).

``StoredPublicKeys(store, purpose)`` is a ``jwt.PublicKeySource`` over them: cached, the
cache dropped on every change of the type (drained before each use, as ``SigningKeys``).
It never sees a private key: a document that carries one is refused by ``load_public_key``.
"""

from __future__ import annotations

import logging

from cryptography.hazmat.primitives.asymmetric import rsa

from kumadp.cp.signing_keys import PURPOSES, key_prefix, load_public_key
from kumadp.cp.store.base import Store
from kumadp.resources.registry import SIGNING_PUBLIC_KEY_TYPE

log = logging.getLogger(__name__)


class StoredPublicKeys:
    """The synced public keys of one ``purpose`` (``dataplane``, ``zone``, ``user``)."""

    def __init__(self, store: Store, purpose: str) -> None:
        if purpose not in PURPOSES:
            raise ValueError(f"signing key purpose must be one of {', '.join(PURPOSES)}")
        self._store = store
        self._prefix = key_prefix(purpose)
        self._keys: dict[str, rsa.RSAPublicKey] | None = None  # kid -> key; None: not loaded
        self._changes = store.changes((SIGNING_PUBLIC_KEY_TYPE,))

    def close(self) -> None:
        self._changes.close()

    async def _load(self) -> dict[str, rsa.RSAPublicKey]:
        if self._changes.drain():
            self._keys = None
        if self._keys is not None:
            return self._keys
        keys: dict[str, rsa.RSAPublicKey] = {}
        for stored in await self._store.list(SIGNING_PUBLIC_KEY_TYPE, ""):
            if not stored.name.startswith(self._prefix):
                continue
            kid = str(stored.spec.get("kid") or stored.name.removeprefix(self._prefix))
            try:
                keys[kid] = load_public_key(str(stored.spec.get("publicKeyPem") or ""))
            except ValueError as exc:
                log.error("public signing key %s is unusable, ignored: %s", stored.name, exc)
        if not self._changes.drain():  # nothing changed while reading: keep it
            self._keys = keys
        return keys

    async def public_key(self, kid: str) -> rsa.RSAPublicKey | None:
        return (await self._load()).get(kid)


__all__ = ["StoredPublicKeys"]
