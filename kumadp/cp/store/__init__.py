"""Resource stores of the control plane: the protocol (``base``) and its backends."""

from __future__ import annotations

from pathlib import Path

from kumadp.cp.store.base import (
    RESYNC,
    ChangeEvent,
    ChangeSubscription,
    ConflictError,
    NotFoundError,
    Store,
    StoredResource,
    StoreError,
)
from kumadp.cp.store.feed import ChangeFeed, following
from kumadp.cp.store.memory import MemoryStore
from kumadp.cp.store.sqlite import SqliteStore

STORE_KINDS = ("memory", "sqlite")
SQLITE_FILE_NAME = "kumadp.db"


def open_store(kind: str, data_dir: Path | None) -> Store:
    """Open the store selected by ``--store``: ``memory``, or ``sqlite`` in
    ``<data_dir>/kumadp.db`` (the directory is created if missing)."""
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


__all__ = [
    "RESYNC",
    "STORE_KINDS",
    "ChangeEvent",
    "ChangeFeed",
    "ChangeSubscription",
    "ConflictError",
    "MemoryStore",
    "NotFoundError",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoredResource",
    "following",
    "open_store",
]
