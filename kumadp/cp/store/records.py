"""What the store hands out: stored resources and change events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal


@dataclass(frozen=True)
class StoredResource:
    type: str
    mesh: str
    name: str
    spec: dict[str, Any]  # the whole resource document, incl. type/mesh/name
    version: int
    creation_time: datetime
    modification_time: datetime


@dataclass(frozen=True)
class ChangeEvent:
    op: Literal["create", "update", "delete", "resync"]
    type: str
    mesh: str
    name: str
    resource: StoredResource | None  # None for deletes and resyncs

    @property
    def is_resync(self) -> bool:
        return self.op == "resync"


RESYNC = ChangeEvent(op="resync", type="", mesh="", name="", resource=None)


__all__ = ["RESYNC", "ChangeEvent", "StoredResource"]
