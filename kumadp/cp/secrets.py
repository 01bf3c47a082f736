"""Private keys encrypted at rest: a thin layer over any store backend.

Which resources hold private keys (``SECRET_FIELDS``): ``MeshCA.keyPem`` (each mesh's CA key)
and ``SigningKey.keyPem`` (the token signing keys). With a secrets key (``--secrets-key-file``,
``KUMADP_SECRETS_KEY`` or ``KUMADP_SECRETS_KEY_FILE``) the CP wraps its store in
``SealedStore``: those fields are written as ``kumadp-sealed:v1:<key id>:<base64>``
(AES-256-GCM, a fresh 96-bit nonce per write, the resource's type/mesh/name/field as
associated data, so a sealed value cannot be moved to another resource) and opened again on
every read and change event. The backend (SQLite, memory, PostgreSQL) never sees a private
key, so a copied database file alone reveals none.

A plaintext key found in the store (written before encryption was turned on) is still read,
and ``seal_existing()`` rewrites every such key sealed at start. A sealed key with no secrets
key, or with another one, is a clear error naming what to pass.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kumadp.cp.store.base import ChangeEvent, ChangeSubscription, Store, StoredResource
from kumadp.cp.store.memory import canonical_json
from kumadp.resources.registry import MESH_CA_TYPE, SIGNING_KEY_TYPE

log = logging.getLogger(__name__)

SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    MESH_CA_TYPE: ("keyPem",),
    SIGNING_KEY_TYPE: ("keyPem",),
}
PREFIX = "kumadp-sealed:v1:"
KEY_ENV = "KUMADP_SECRETS_KEY"
KEY_FILE_ENV = "KUMADP_SECRETS_KEY_FILE"
MIN_KEY_TEXT = 16  # bytes of key material, at least
_INFO = b"kumadp store secrets v1"


class SecretsError(Exception):
    """A sealed value cannot be opened, or the secrets key cannot be read."""


class SecretsKey:
    """The AES-256-GCM key derived (SHA-256) from the key text given by the user."""

    def __init__(self, material: bytes) -> None:
        material = material.strip()
        if len(material) < MIN_KEY_TEXT:
            raise SecretsError(
                f"the secrets key must hold at least {MIN_KEY_TEXT} bytes "
                "(e.g. head -c 32 /dev/urandom | base64 > secrets.key)"
            )
        self._key = hashlib.sha256(_INFO + material).digest()
        self.id = hashlib.sha256(self._key).hexdigest()[:12]
        self._aead = AESGCM(self._key)

    def seal(self, plaintext: str, context: bytes) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context)
        return f"{PREFIX}{self.id}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, value: str, context: bytes, where: str) -> str:
        key_id, _, payload = value.removeprefix(PREFIX).partition(":")
        if key_id != self.id:
            raise SecretsError(
                f"{where} was encrypted with another secrets key (id {key_id}; this one is "
                f"{self.id}): start the control plane with the key it was written with"
            )
        try:
            raw = base64.b64decode(payload, validate=True)
            return self._aead.decrypt(raw[:12], raw[12:], context).decode()
        except (binascii.Error, ValueError, InvalidTag):
            raise SecretsError(f"{where}: the encrypted value is damaged") from None


def load_secrets_key(file: Path | None, environ: dict[str, str] | None = None) -> SecretsKey | None:
    """The key from ``file`` (the flag), else ``$KUMADP_SECRETS_KEY_FILE``, else
    ``$KUMADP_SECRETS_KEY``; None when none is given."""
    env = os.environ if environ is None else environ
    path = file or (Path(env[KEY_FILE_ENV]) if env.get(KEY_FILE_ENV) else None)
    if path is not None:
        try:
            return SecretsKey(path.read_bytes())
        except OSError as exc:
            raise SecretsError(
                f"--secrets-key-file: cannot read {path}: {exc.strerror or exc}"
            ) from None
    if env.get(KEY_ENV):
        return SecretsKey(env[KEY_ENV].encode())
    return None


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


class SealedStore:
    """A ``Store`` that seals ``SECRET_FIELDS`` on the way in and opens them on the way out
    (``key=None``: only opens nothing and refuses sealed values with a clear error). Works
    over any backend: it only uses the ``Store`` protocol."""

    def __init__(self, inner: Store, key: SecretsKey | None) -> None:
        self.inner = inner
        self.key = key

    def __getattr__(self, name: str) -> Any:  # backend extras (paths, pools...)
        return getattr(self.inner, name)

    @staticmethod
    def _context(type: str, mesh: str, name: str, field: str) -> bytes:
        return "\x00".join((type, mesh, name, field)).encode()

    def _open_spec(self, type: str, mesh: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        fields = SECRET_FIELDS.get(type, ())
        if not any(is_sealed(spec.get(f)) for f in fields):
            return spec
        out = dict(spec)
        for f in fields:
            if is_sealed(out.get(f)):
                where = f"{type} {mesh + '/' if mesh else ''}{name} ({f})"
                if self.key is None:
                    raise SecretsError(
                        f"{where} is encrypted: start the control plane with "
                        "--secrets-key-file (or KUMADP_SECRETS_KEY_FILE)"
                    )
                out[f] = self.key.open(out[f], self._context(type, mesh, name, f), where)
        return out

    def _open(self, res: StoredResource | None) -> StoredResource | None:
        if res is None or res.type not in SECRET_FIELDS:
            return res
        return replace(res, spec=self._open_spec(res.type, res.mesh, res.name, res.spec))

    def _open_event(self, event: ChangeEvent) -> ChangeEvent:
        if event.resource is None or event.type not in SECRET_FIELDS:
            return event
        try:
            return replace(event, resource=self._open(event.resource))
        except SecretsError as exc:  # a consumer re-reading gets the error; the feed goes on
            log.error("%s", exc)
            return event

    async def get(self, type: str, mesh: str, name: str) -> StoredResource | None:
        return self._open(await self.inner.get(type, mesh, name))

    async def list(self, type: str, mesh: str | None = None) -> list[StoredResource]:
        listed = await self.inner.list(type, mesh)
        if type not in SECRET_FIELDS:
            return listed
        return [r for r in (self._open(res) for res in listed) if r is not None]

    async def put(
        self,
        type: str,
        mesh: str,
        name: str,
        spec: dict[str, Any],
        expected_version: int | None = None,
    ) -> tuple[StoredResource, bool]:
        fields = SECRET_FIELDS.get(type, ())
        if self.key is None or not fields:
            stored, created = await self.inner.put(type, mesh, name, spec, expected_version)
            return self._open(stored) or stored, created
        current = await self.inner.get(type, mesh, name)
        if current is not None and canonical_json(
            self._open_spec(type, mesh, name, current.spec)
        ) == canonical_json(spec):
            # identical: keep the stored ciphertext (an unchanged write stays a no-op)
            stored, created = await self.inner.put(type, mesh, name, current.spec, expected_version)
            return self._open(stored) or stored, created
        sealed = dict(spec)
        for f in fields:
            if isinstance(sealed.get(f), str) and not is_sealed(sealed[f]):
                sealed[f] = self.key.seal(sealed[f], self._context(type, mesh, name, f))
        stored, created = await self.inner.put(type, mesh, name, sealed, expected_version)
        return self._open(stored) or stored, created

    async def delete(self, type: str, mesh: str, name: str) -> bool:
        return await self.inner.delete(type, mesh, name)

    def changes(self, types: Iterable[str] | None = None) -> ChangeSubscription:
        sub = self.inner.changes(types)
        sub.transform = self._open_event
        return sub

    async def close(self) -> None:
        await self.inner.close()

    async def prepare(self) -> int:
        """At start: check that every sealed key opens (``SecretsError`` naming the first
        that does not), and rewrite sealed every key held in plaintext; returns how many."""
        count = 0
        for type, fields in SECRET_FIELDS.items():
            for res in await self.inner.list(type):
                self._open_spec(type, res.mesh, res.name, res.spec)  # raises if it cannot
                plain = [
                    f
                    for f in fields
                    if isinstance(res.spec.get(f), str) and not is_sealed(res.spec[f])
                ]
                if self.key is None or not plain:
                    continue
                sealed = dict(res.spec)
                for f in plain:
                    sealed[f] = self.key.seal(sealed[f], self._context(type, res.mesh, res.name, f))
                await self.inner.put(type, res.mesh, res.name, sealed, res.version)
                count += 1
        if count:
            log.info("encrypted %d private key(s) found in plaintext in the store", count)
        return count


__all__ = [
    "KEY_ENV",
    "KEY_FILE_ENV",
    "SECRET_FIELDS",
    "SealedStore",
    "SecretsError",
    "SecretsKey",
    "is_sealed",
    "load_secrets_key",
]
