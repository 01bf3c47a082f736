"""The public halves of the token signing keys, for the zones (global CP only).

Zone CPs verify dataplane tokens but never sign them, so they get the PUBLIC key of every
signing key: ``PublicKeyPublisher`` keeps one ``SigningPublicKey`` resource (``kid``,
``publicKeyPem``; same name as its private key) per stored ``SigningKey``, following the
store's change feed; KDS sends those (the private ``SigningKey`` type is never synced).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cryptography.hazmat.primitives import serialization

from kumadp.cp.store.base import ChangeEvent, Store
from kumadp.cp.store.feed import following
from kumadp.resources.registry import SIGNING_KEY_TYPE, SIGNING_PUBLIC_KEY_TYPE

log = logging.getLogger(__name__)


def public_key_document(private: dict[str, Any]) -> dict[str, Any] | None:
    """The ``SigningPublicKey`` of a stored ``SigningKey``; None when it is unreadable."""
    try:
        key = serialization.load_pem_private_key(str(private["keyPem"]).encode(), password=None)
    except (KeyError, ValueError, TypeError):
        return None
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    doc: dict[str, Any] = {"type": SIGNING_PUBLIC_KEY_TYPE, "name": private["name"]}
    if private.get("kid"):
        doc["kid"] = str(private["kid"])
    doc["publicKeyPem"] = pem.decode()
    return doc


class PublicKeyPublisher:
    """Component: ``SigningPublicKey`` in step with ``SigningKey``."""

    name = "public-key-publisher"

    def __init__(self, store: Store) -> None:
        self._store = store
        self._wake = asyncio.Event()

    def _on_change(self, event: ChangeEvent) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        watched = (SIGNING_KEY_TYPE, SIGNING_PUBLIC_KEY_TYPE)
        async with following(self._store, self._on_change, watched):
            stop_task = asyncio.ensure_future(stop.wait())
            try:
                while not stop.is_set():
                    self._wake.clear()
                    try:
                        await self.sync()
                    except Exception:
                        log.exception("publishing the public token signing keys failed")
                    wake = asyncio.ensure_future(self._wake.wait())
                    await asyncio.wait({wake, stop_task}, return_when="FIRST_COMPLETED")
                    wake.cancel()
            finally:
                stop_task.cancel()

    async def sync(self) -> None:
        """One pass: write the missing or changed public keys, delete the orphans."""
        wanted: dict[str, dict[str, Any]] = {}
        for stored in await self._store.list(SIGNING_KEY_TYPE, ""):
            doc = public_key_document(stored.spec)
            if doc is None:
                log.error("signing key %s is unreadable: no public key published", stored.name)
                continue
            wanted[stored.name] = doc
        for name, doc in wanted.items():
            _, created = await self._store.put(SIGNING_PUBLIC_KEY_TYPE, "", name, doc)
            if created:
                log.info("published the public half of token signing key %s", name)
        for stored in await self._store.list(SIGNING_PUBLIC_KEY_TYPE, ""):
            if stored.name not in wanted:
                await self._store.delete(SIGNING_PUBLIC_KEY_TYPE, "", stored.name)


__all__ = ["PublicKeyPublisher", "public_key_document"]
