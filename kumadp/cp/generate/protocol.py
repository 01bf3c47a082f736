"""``kuma.io/protocol`` values and what they mean for Envoy."""

from __future__ import annotations

from collections.abc import Iterable

from kumadp.resources.model import DEFAULT_PROTOCOL

TCP = "tcp"
HTTP = "http"
HTTP2 = "http2"
GRPC = "grpc"

# Each protocol with the ones it can also be handled as, most specific first: gRPC is
# HTTP/2, and everything is TCP. Unknown values are plain TCP.
_STACKS: dict[str, tuple[str, ...]] = {
    TCP: (TCP,),
    HTTP: (HTTP, TCP),
    HTTP2: (HTTP2, TCP),
    GRPC: (GRPC, HTTP2, TCP),
}


def _stack(protocol: str) -> tuple[str, ...]:
    return _STACKS.get(protocol, (TCP,))


def normalise(protocol: str | None) -> str:
    return _stack(protocol or DEFAULT_PROTOCOL)[0]


def is_http(protocol: str) -> bool:
    """Handled by an HTTP connection manager rather than a TCP proxy."""
    return normalise(protocol) in (HTTP, HTTP2, GRPC)


def uses_http2(protocol: str) -> bool:
    """The upstream (application or endpoint) must be spoken to in HTTP/2."""
    return HTTP2 in _stack(protocol)


def common_protocol(protocols: Iterable[str]) -> str:
    """The most specific protocol every one of ``protocols`` can be handled as.

    ``http`` + ``http`` is ``http``; ``grpc`` + ``http2`` is ``http2``; ``http`` + ``http2``
    is ``tcp``; no protocol at all is ``tcp``.
    """
    stacks = [_stack(p) for p in protocols]
    if not stacks:
        return TCP
    shared = set(stacks[0]).intersection(*stacks[1:])
    return next(p for p in stacks[0] if p in shared)
