"""Resource stores of the control plane: the protocol (``base``) and its backends."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from kumadp.cp.store.base import (
    RESYNC,
    ChangeEvent,
    ChangeSubscription,
    ConflictError,
    NotFoundError,
    NotLeaderError,
    Store,
    StoredResource,
    StoreError,
)
from kumadp.cp.store.feed import ChangeFeed, following
from kumadp.cp.store.memory import MemoryStore
from kumadp.cp.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from kumadp.cp.store.postgres_settings import PostgresSettings

STORE_KINDS = ("memory", "sqlite", "postgres")
SQLITE_FILE_NAME = "kumadp.db"
SHARED_STORE_KINDS = frozenset({"postgres"})  # several CP instances may share one


async def open_store(
    kind: str, data_dir: Path | None, postgres: PostgresSettings | None = None
) -> Store:
    """Open the store selected by ``--store``: ``memory``, ``sqlite`` in
    ``<data_dir>/kumadp.db`` (the directory is created if missing), or ``postgres`` (with
    ``postgres`` settings; connected and its schema checked before this returns)."""
    if kind == "postgres":
        return await _open_postgres(postgres)
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        if data_dir is None:
            raise ValueError("the sqlite store needs a data directory (--data-dir)")
        data_dir = Path(data_dir)
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create data directory {data_dir}: {e}") from e
        return SqliteStore(data_dir / SQLITE_FILE_NAME)
    raise ValueError(f"unknown store kind {kind!r}: expected one of {', '.join(STORE_KINDS)}")


async def _open_postgres(settings: PostgresSettings | None) -> Store:
    try:
        from kumadp.cp.store.postgres import PostgresStore
        from kumadp.cp.store.postgres_settings import PostgresSettings
    except ImportError as e:  # psycopg is an optional extra
        raise StoreError(
            f"the postgres store needs psycopg: pip install 'kumadp[postgres]' ({e})"
        ) from e
    store = PostgresStore(settings or PostgresSettings())
    await store.open()
    return store


__all__ = [
    "RESYNC",
    "SHARED_STORE_KINDS",
    "STORE_KINDS",
    "ChangeEvent",
    "ChangeFeed",
    "ChangeSubscription",
    "ConflictError",
    "MemoryStore",
    "NotFoundError",
    "NotLeaderError",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoredResource",
    "following",
    "open_store",
]
