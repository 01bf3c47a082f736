"""Token revocation lists, one per kind of token, kept in the store.

One ``TokenRevocations`` document (``mesh=""``) per kind, named after it (``dataplane``,
``zone``, ``user``), holding the ``jti`` of every revoked token. Revoking is a compare-and-swap
write, so two instances revoking at once both win; the list is cached and the cache follows
store change events, so a check costs no store round trip.
"""

from __future__ import annotations

import logging

from kumadp.cp.store.base import ConflictError, Store
from kumadp.resources.registry import TOKEN_REVOCATIONS_TYPE

log = logging.getLogger(__name__)

MAX_JTI_LENGTH = 128


class Revocations:
    """The revoked ``jti`` of one kind of token (``name``) in ``store``. ``close()`` when
    done."""

    def __init__(self, store: Store, name: str) -> None:
        self.name = name
        self._store = store
        self._revoked: frozenset[str] | None = None  # None = not loaded
        self._generation = 0
        self._changes = store.changes((TOKEN_REVOCATIONS_TYPE,))

    def close(self) -> None:
        self._changes.close()

    def _catch_up(self) -> None:
        for event in self._changes.drain():
            if event.is_resync or event.name == self.name:
                self._revoked = None
                self._generation += 1

    async def revoked(self) -> frozenset[str]:
        """The ``jti`` of every revoked token of this kind."""
        self._catch_up()
        cached = self._revoked
        if cached is None:
            generation = self._generation
            stored = await self._store.get(TOKEN_REVOCATIONS_TYPE, "", self.name)
            cached = frozenset(stored.spec.get("jtis", [])) if stored is not None else frozenset()
            self._catch_up()
            if generation == self._generation:  # no change arrived while reading
                self._revoked = cached
        return cached

    async def is_revoked(self, jti: str) -> bool:
        return jti in await self.revoked()

    async def revoke(self, jti: str) -> bool:
        """Revoke the token with this ``jti`` (effective at once, on every instance sharing
        the store). Returns False when it was already revoked."""
        jti = jti.strip()
        if not jti:
            raise ValueError("jti: required to revoke a token")
        if len(jti) > MAX_JTI_LENGTH:
            raise ValueError(f"jti: longer than {MAX_JTI_LENGTH} characters")
        while True:
            stored = await self._store.get(TOKEN_REVOCATIONS_TYPE, "", self.name)
            jtis = list(stored.spec.get("jtis", [])) if stored is not None else []
            if jti in jtis:
                return False
            spec = {
                "type": TOKEN_REVOCATIONS_TYPE,
                "mesh": "",
                "name": self.name,
                "jtis": [*jtis, jti],
            }
            try:
                await self._store.put(
                    TOKEN_REVOCATIONS_TYPE,
                    "",
                    self.name,
                    spec,
                    expected_version=stored.version if stored is not None else 0,
                )
            except ConflictError:
                continue  # someone else revoked something meanwhile: merge and retry
            self._revoked = None
            self._generation += 1
            log.info("revoked %s token %s", self.name, jti)
            return True


__all__ = ["MAX_JTI_LENGTH", "Revocations"]
