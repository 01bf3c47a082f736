"""One JSON error shape for every failure of the HTTP API, Kuma's (2.x) both generations:

``{"type": "/std-errors", "status": 400, "title": "...", "detail": "...",
"invalid_parameters": [{"field": "a.b[0]", "reason": "..."}],
"details": "...", "causes": [{"field": "a.b[0]", "message": "..."}]}``

(``invalid_parameters`` only when there are causes, as Kuma; ``causes`` always.)

Handlers raise ``ApiError``; Starlette's own 404/405 are rendered in the same shape; anything
unexpected is logged with its traceback and answered with a bare 500, so no traceback ever
reaches a client.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kumadp.cp.store.base import ConflictError, StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cause:
    """One field-level problem of a request."""

    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class ApiError(Exception):
    """An error answered to the client as ``status`` with the common JSON body."""

    def __init__(
        self,
        status: int,
        title: str,
        details: str = "",
        causes: Iterable[Cause] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.title = title
        self.details = details
        self.causes: Sequence[Cause] = tuple(causes)
        self.headers = headers
        super().__init__(f"{status} {title}: {details}")

    @classmethod
    def bad_request(cls, details: str, causes: Iterable[Cause] = ()) -> ApiError:
        return cls(400, "Bad Request", details, causes)

    @classmethod
    def invalid_field(cls, field: str, message: str) -> ApiError:
        """400 for one bad field; ``details`` reads ``field: message``."""
        return cls(400, "Resource is not valid", f"{field}: {message}", [Cause(field, message)])

    @classmethod
    def not_found(cls, details: str) -> ApiError:
        return cls(404, "Not Found", details)


ERROR_TYPE = "/std-errors"  # Kuma's problem type (RFC 7807 style)


def error_body(
    title: str, details: str = "", causes: Iterable[Cause] = (), status: int | None = None
) -> dict[str, Any]:
    """Our fields (``title``, ``details``, ``causes``) and Kuma's newer ones beside them
    (``type``, ``status``, ``detail``, ``invalid_parameters``)."""
    causes = list(causes)
    body: dict[str, Any] = {"type": ERROR_TYPE}
    if status is not None:
        body["status"] = status
    body.update({"title": title, "detail": details})
    if causes:
        body["invalid_parameters"] = [{"field": c.field, "reason": c.message} for c in causes]
    body.update({"details": details, "causes": [c.to_dict() for c in causes]})
    return body


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(error.title, error.details, error.causes, error.status),
        status_code=error.status,
        headers=error.headers,
    )


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if exc.status >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc)
    return error_response(exc)


async def store_error_handler(request: Request, exc: Exception) -> Response:
    """The store failed under a request: 409 for a conflict, else 503 (the database is
    unreachable, e.g. PostgreSQL restarting; clients retry)."""
    assert isinstance(exc, StoreError)
    if isinstance(exc, ConflictError):
        return error_response(ApiError(409, "Conflict", str(exc)))
    log.warning("%s %s: store unavailable: %s", request.method, request.url.path, exc)
    return error_response(ApiError(503, "Service Unavailable", f"store unavailable: {exc}"))


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no route: 404, wrong method: 405) in our shape."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    details = exc.detail if exc.detail and exc.detail != phrase else ""
    if status == 404 and not details:
        details = f"no such endpoint: {request.url.path}"
    elif status == 405 and not details:
        details = f"method {request.method} is not allowed on {request.url.path}"
    return error_response(ApiError(status, phrase, details, headers=exc.headers))


INTERNAL_ERROR_BODY = json.dumps(
    error_body("Internal error", "an unexpected error occurred; see the control plane log", (), 500)
).encode()


class CatchAllMiddleware:
    """Turn any exception that escaped the handlers into a logged 500 with a JSON body.

    Sits inside Starlette's ``ServerErrorMiddleware`` (which would answer with a plain-text
    body and then re-raise into the server), so the client always gets our shape."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error serving %s %s", scope.get("method"), scope.get("path"))
            if started:
                # Too late for a clean answer: let the server drop the connection.
                raise
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(INTERNAL_ERROR_BODY)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": INTERNAL_ERROR_BODY})


__all__ = [
    "ERROR_TYPE",
    "ApiError",
    "CatchAllMiddleware",
    "Cause",
    "api_error_handler",
    "error_body",
    "error_response",
    "http_exception_handler",
    "store_error_handler",
]
