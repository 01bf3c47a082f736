"""Request bodies (JSON or YAML, size-limited) and response documents of the HTTP API."""

from __future__ import annotations

import json
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse

from kumadp.cp.api.errors import ApiError
from kumadp.cp.store.base import StoredResource
from kumadp.resources.errors import FieldError, quoted
from kumadp.resources.safe_load import MAX_DOCUMENT_BYTES, load_json, load_yaml, yaml_error_text
from kumadp.timefmt import format_time

MAX_BODY_BYTES = MAX_DOCUMENT_BYTES  # 1 MiB; the app's ``state.max_body_bytes`` overrides
YAML_MEDIA_TYPES = frozenset(
    {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "application/x-yml"}
)
_META_KEYS = ("type", "mesh", "name")


def body_limit(request: Request) -> int:
    return int(getattr(request.app.state, "max_body_bytes", MAX_BODY_BYTES))


def check_media_type(request: Request) -> None:
    """415 unless the body is declared JSON or YAML (or not declared at all): a browser's
    cross-site "simple" POST (text/plain, a form) never reaches a handler."""
    media_type = _media_type(request)
    if media_type and not (
        media_type == "application/json"
        or media_type.endswith("+json")
        or media_type in YAML_MEDIA_TYPES
    ):
        raise ApiError(
            415,
            "Unsupported Media Type",
            f"Content-Type {quoted(media_type)}: send application/json (or YAML)",
        )


async def read_body(request: Request, limit: int | None = None) -> bytes:
    """The raw request body (JSON or YAML by its Content-Type: 415 otherwise); 413 once it
    grows past ``limit`` bytes (default: the app's)."""
    check_media_type(request)
    limit = body_limit(request) if limit is None else limit
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "Payload Too Large", f"request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "Payload Too Large", f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def decode_document(raw: bytes, media_type: str) -> Any:
    """Decode a JSON body, or a YAML one when the content type says so or the body is not
    JSON. Raises a 400 ``ApiError`` naming the parse problem."""
    if not raw.strip():
        raise ApiError.bad_request("request body is empty")
    if media_type not in YAML_MEDIA_TYPES:
        try:
            return load_json(raw)
        except (ValueError, UnicodeDecodeError) as json_error:
            if media_type == "application/json":
                raise ApiError.bad_request(
                    f"request body is not valid JSON: {json_error}"
                ) from None
    try:
        return load_yaml(raw)
    except yaml.YAMLError as e:
        message = yaml_error_text(e)
        raise ApiError.bad_request(f"request body is not valid JSON or YAML: {message}") from None
    except RecursionError:  # pragma: no cover - the loader caps the depth first
        raise ApiError.bad_request("request body nests too deeply") from None


async def read_json_object(request: Request) -> dict[str, Any]:
    """A JSON object body (size-capped, depth-capped); 400 otherwise."""
    raw = await read_body(request)
    try:
        body = load_json(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError.bad_request(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError.bad_request("request body must be a JSON object")
    return body


async def read_document(request: Request) -> Any:
    return decode_document(await read_body(request), _media_type(request))


def render_resource(res: StoredResource) -> dict[str, Any]:
    """The stored document with ``creationTime``/``modificationTime`` after its
    ``type``/``mesh``/``name``, as Kuma's API shows resources."""
    spec = res.spec
    out: dict[str, Any] = {k: spec[k] for k in _META_KEYS if k in spec}
    out["creationTime"] = format_time(res.creation_time)
    out["modificationTime"] = format_time(res.modification_time)
    for key, value in spec.items():
        if key not in out:
            out[key] = value
    return out


WARNING_HEADER = "warning"


def warnings_response(
    body: dict[str, Any],
    warnings: list[FieldError],
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """``body`` with the validation warnings of the request (Kuma fields kumadp accepted
    without implementing them): a ``warnings`` list of ``"field: reason"`` in the body and
    one ``Warning: 299 kumadp "..."`` header each (RFC 7234's form, as Kubernetes does).
    Kuma has no such channel; without warnings the answer is Kuma's."""
    if not warnings:
        return JSONResponse(body, status_code=status_code, headers=headers)
    texts = [str(w) for w in warnings]
    response = JSONResponse({**body, "warnings": texts}, status_code=status_code, headers=headers)
    for text in texts:
        ascii_text = text.encode("ascii", "backslashreplace").decode()
        quoted = ascii_text.replace("\\", "\\\\").replace('"', '\\"')
        response.headers.append(WARNING_HEADER, f'299 kumadp "{quoted}"')
    return response


def check_json_representable(doc: dict[str, Any]) -> None:
    """400 when a document holds values JSON cannot carry (NaN, YAML dates in free-form
    sections...), rather than a store error later."""
    try:
        json.dumps(doc, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ApiError.bad_request(f"resource holds a value JSON cannot represent: {e}") from None


__all__ = [
    "MAX_BODY_BYTES",
    "WARNING_HEADER",
    "body_limit",
    "check_json_representable",
    "decode_document",
    "format_time",
    "read_body",
    "read_document",
    "read_json_object",
    "render_resource",
    "warnings_response",
]
