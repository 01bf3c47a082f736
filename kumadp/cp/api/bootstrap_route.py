"""``POST /bootstrap``: kuma-dp's request for its Envoy bootstrap.

The route only speaks HTTP; a ``BootstrapHandler`` does the work. Status codes follow what
kuma-dp expects: 404 with an EMPTY body means "dataplane not known yet, retry"; any other 4xx
is a request the agent should not retry (the body says why); 5xx is retried with backoff.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kumadp.cp.api.bodies import read_body
from kumadp.cp.api.errors import ApiError

log = logging.getLogger(__name__)


class BootstrapError(Exception):
    """Raised by a handler to answer with ``status``. ``BootstrapError(404, "")`` is the
    "not known yet" answer (empty body); other statuses carry ``message`` as a JSON error."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{status}: {message}" if message else str(status))


class BootstrapHandler(Protocol):
    async def handle(self, body: dict[str, Any], host: str) -> dict[str, Any]:
        """Build the bootstrap response for the request ``body``; ``host`` is the host name
        (no port, no IPv6 brackets) the agent used to reach this API."""
        ...


def request_host(request: Request) -> str:
    """The hostname part of the Host header (``[::1]:5681`` -> ``::1``)."""
    header = request.headers.get("host", "")
    if header:
        try:
            hostname = urlsplit(f"//{header}").hostname
        except ValueError:
            hostname = None
        if hostname:
            return hostname
    return request.url.hostname or ""


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def bootstrap_endpoint(handler: BootstrapHandler | None) -> Any:
    """The Starlette endpoint serving ``POST /bootstrap`` with ``handler``."""

    async def bootstrap(request: Request) -> Response:
        if handler is None:
            raise ApiError(404, "Not Found", "this control plane does not serve Envoy bootstraps")
        raw = await read_body(request)
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError.bad_request(f"request body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise ApiError.bad_request("request body must be a JSON object")
        try:
            result = await handler.handle(body, request_host(request))
        except BootstrapError as e:
            if e.status == 404:
                log.debug("bootstrap for %s.%s: not known yet", body.get("mesh"), body.get("name"))
                return Response(status_code=404)
            if e.status >= 500:
                log.error("bootstrap failed: %s", e)
            else:
                log.info("bootstrap request refused (%d): %s", e.status, e.message)
            raise ApiError(e.status, _phrase(e.status), e.message) from None
        return JSONResponse(result)

    return bootstrap


__all__ = ["BootstrapError", "BootstrapHandler", "bootstrap_endpoint", "request_host"]
