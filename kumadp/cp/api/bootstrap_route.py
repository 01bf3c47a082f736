"""``POST /bootstrap``: kuma-dp's request for its Envoy bootstrap.

The route only speaks HTTP; a ``BootstrapHandler`` (``kumadp.cp.bootstrap``) does the work
and raises ``BootstrapError``s, whose kinds map to the statuses kuma-dp expects: 404 with an
EMPTY body means "dataplane not known yet, retry"; any other 4xx is a request the agent
should not retry (the body says why); 5xx is retried with backoff.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kumadp.cp.api.bodies import read_body
from kumadp.cp.api.errors import ApiError
from kumadp.cp.bootstrap import BootstrapError, ErrorKind
from kumadp.resources.safe_load import load_json

log = logging.getLogger(__name__)

STATUS = {
    ErrorKind.NOT_FOUND: HTTPStatus.NOT_FOUND,
    ErrorKind.MALFORMED: HTTPStatus.BAD_REQUEST,
    ErrorKind.INVALID: HTTPStatus.UNPROCESSABLE_ENTITY,  # Kuma's answer to a bad request
    ErrorKind.UNAUTHORIZED: HTTPStatus.UNAUTHORIZED,
}


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


def bootstrap_endpoint(handler: BootstrapHandler | None) -> Any:
    """The Starlette endpoint serving ``POST /bootstrap`` with ``handler``."""

    async def bootstrap(request: Request) -> Response:
        if handler is None:
            raise ApiError(404, "Not Found", "this control plane does not serve Envoy bootstraps")
        raw = await read_body(request)
        try:
            body = load_json(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError.bad_request(f"request body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise ApiError.bad_request("request body must be a JSON object")
        try:
            result = await handler.handle(body, request_host(request))
        except BootstrapError as e:
            status = STATUS[e.kind]
            if status == HTTPStatus.NOT_FOUND:
                log.debug("bootstrap for %s.%s: not known yet", body.get("mesh"), body.get("name"))
                return Response(status_code=status)
            log.info("bootstrap request refused (%d): %s", status, e.message)
            raise ApiError(status, status.phrase, e.message) from None
        return JSONResponse(result)

    return bootstrap


__all__ = ["STATUS", "BootstrapHandler", "bootstrap_endpoint", "request_host"]
