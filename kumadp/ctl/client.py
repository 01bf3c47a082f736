"""A small synchronous client of the control plane's HTTP API with errors a user can read.

Every failure is a ``CtlError``: the CP cannot be reached, it answered something that is not
its API, or it answered an error (``{title, details, causes[{field, message}]}``), which is
turned into a summary line plus one ``field: message`` line per cause.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpx

DEFAULT_CP_URL = "http://127.0.0.1:5681"
DEFAULT_TIMEOUT = 10.0
MAX_PAGES = 10_000


class CtlError(Exception):
    """A failure to show the user as is (first line: what went wrong; more lines: causes)."""


class NotFoundError(CtlError):
    """The CP answered 404."""


class UnreachableError(CtlError):
    """No answer from the CP (connection refused, timeout, TLS...)."""


class ApiError(CtlError):
    """The CP answered an error status; ``status``, ``title``, ``details`` and ``causes``
    come from its error body (``causes`` as ``(field, message)`` pairs)."""

    def __init__(
        self, status: int, title: str, details: str, causes: list[tuple[str, str]]
    ) -> None:
        self.status = status
        self.title = title
        self.details = details
        self.causes = causes
        super().__init__(self._message())

    def _message(self) -> str:
        summary = self.details or self.title or f"HTTP {self.status}"
        if self.causes:
            # The causes say it all; the details of a validation error repeat them.
            summary = self.title or summary
            lines = [f"{field}: {message}" if field else message for field, message in self.causes]
            return "\n".join([summary, *lines])
        return summary


def check_url(url: str, flag: str = "--cp-address") -> str:
    """``url`` without a trailing slash; ``CtlError`` when it is not an http(s) URL."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CtlError(f'{flag}: "{url}" is not an http:// or https:// URL')
    return url.strip().rstrip("/")


def segment(value: str) -> str:
    """One URL path segment (a resource or mesh name), escaped."""
    return quote(value, safe="")


def _error_from(resp: httpx.Response) -> ApiError:
    title = details = ""
    causes: list[tuple[str, str]] = []
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        title = str(body.get("title") or "")
        details = str(body.get("details") or "")
        for cause in body.get("causes") or []:
            if isinstance(cause, dict):
                causes.append((str(cause.get("field") or ""), str(cause.get("message") or "")))
    else:
        details = " ".join(resp.text.split())[:200]
    if not title and not details:
        details = f"HTTP {resp.status_code} {resp.reason_phrase}".strip()
    return ApiError(resp.status_code, title, details, causes)


class ApiClient:
    """``base_url`` is the CP's API (``http://127.0.0.1:5681``); ``token`` a user token sent
    as ``Authorization: Bearer``; ``ca_cert_file`` the CA of an HTTPS API's certificate
    (default: the system's); ``cert`` a client certificate and key. ``transport`` is for
    tests."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        token: str | None = None,
        ca_cert_file: str | None = None,
        cert: tuple[str, str] | None = None,
    ) -> None:
        self.base_url = check_url(base_url)
        headers = {"Authorization": f"Bearer {token.strip()}"} if token else None
        verify: ssl.SSLContext | bool = True
        if ca_cert_file or cert:
            try:
                verify = ssl.create_default_context(cafile=ca_cert_file or None)
                if cert:
                    verify.load_cert_chain(*cert)
            except (OSError, ssl.SSLError) as exc:
                raise CtlError(f"cannot load the TLS files of {self.base_url}: {exc}") from None
        self._client = httpx.Client(
            timeout=timeout, transport=transport, headers=headers, verify=verify
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str) -> str:
        return self.base_url + path

    def request(self, method: str, path_or_url: str, **kwargs: Any) -> httpx.Response:
        """The response of a 2xx answer; ``CtlError`` otherwise."""
        url = path_or_url if "://" in path_or_url else self.url(path_or_url)
        try:
            resp = self._client.request(method, url, **kwargs)
        except httpx.TimeoutException:
            raise UnreachableError(
                f"cannot reach the control plane at {self.base_url}: "
                f"no answer within {self._client.timeout.read or DEFAULT_TIMEOUT:g}s"
            ) from None
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise UnreachableError(
                f"cannot reach the control plane at {self.base_url}: {reason}"
            ) from None
        if resp.status_code == 404:
            error = _error_from(resp)
            raise NotFoundError(str(error))
        if not 200 <= resp.status_code < 300:
            raise _error_from(resp)
        return resp

    def get_json(self, path_or_url: str, **kwargs: Any) -> Any:
        resp = self.request("GET", path_or_url, **kwargs)
        try:
            return resp.json()
        except ValueError:
            raise CtlError(
                f"{resp.request.url}: the answer is not JSON; is {self.base_url} "
                "a kumadp control plane's API?"
            ) from None

    def get_object(self, path: str) -> dict[str, Any]:
        body = self.get_json(path)
        if not isinstance(body, dict):
            raise CtlError(f"{self.url(path)}: expected a JSON object, got {type(body).__name__}")
        return body

    def iter_list(self, path: str) -> Iterator[dict[str, Any]]:
        """Every item of a paged list (``{total, items, next}``), following ``next``."""
        url: str | None = self.url(path)
        seen: set[str] = set()
        pages = 0
        while url:
            if url in seen or pages >= MAX_PAGES:
                raise CtlError(f"{url}: the control plane's paging does not end")
            seen.add(url)
            pages += 1
            body = self.get_json(url)
            if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                raise CtlError(f"{url}: expected a list ({{total, items, next}})")
            for item in body["items"]:
                if isinstance(item, dict):
                    yield item
            nxt = body.get("next")
            url = urljoin(url, nxt) if isinstance(nxt, str) and nxt else None

    def list_items(self, path: str) -> list[dict[str, Any]]:
        return list(self.iter_list(path))

    def put(self, path: str, doc: dict[str, Any]) -> bool:
        """PUT a resource; True when the CP created it (201), False when it updated it."""
        body = json.dumps(doc, default=str).encode()
        resp = self.request("PUT", path, content=body, headers={"content-type": "application/json"})
        return resp.status_code == 201

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def post_text(self, path: str, body: dict[str, Any]) -> str:
        return self.request("POST", path, json=body).text


__all__ = [
    "DEFAULT_CP_URL",
    "ApiClient",
    "ApiError",
    "CtlError",
    "NotFoundError",
    "UnreachableError",
    "check_url",
    "segment",
]
