"""What the xDS servers see of a stream, and how they refuse one, without gRPC.

``grpc_adapter`` wraps grpc.aio's request iterator and servicer context into an
``XdsStream``; tests use a fake one. ``StreamRejected`` carries a ``Code`` whose names are
gRPC's status names, so the adapter maps it one to one.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from typing import Protocol, TypeVar

Req = TypeVar("Req", covariant=True)
Resp = TypeVar("Resp", contravariant=True)


class Code(enum.Enum):
    """The gRPC status codes a stream can be refused with (same names as gRPC's)."""

    INVALID_ARGUMENT = "invalid argument"
    NOT_FOUND = "not found"
    PERMISSION_DENIED = "permission denied"
    UNAUTHENTICATED = "unauthenticated"
    UNAVAILABLE = "unavailable"
    UNIMPLEMENTED = "unimplemented"
    RESOURCE_EXHAUSTED = "resource exhausted"
    ALREADY_EXISTS = "already exists"
    FAILED_PRECONDITION = "failed precondition"
    ABORTED = "aborted"


class StreamRejected(Exception):
    """Raised by ``on_stream_open`` callbacks (or the server itself, for a malformed
    request) to end a stream with a status."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class XdsStream(Protocol[Req, Resp]):
    """One bidirectional xDS stream as the protocol logic sees it."""

    @property
    def metadata(self) -> Mapping[str, str]: ...

    def requests(self) -> AsyncIterator[Req]: ...

    async def send(self, response: Resp) -> None: ...
