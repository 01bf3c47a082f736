"""Run an ASGI app on uvicorn as a component (start, serve until stop, shut down), over plain
HTTP or TLS.

With TLS (``tls=``) a client may present a certificate: when the context verifies client
certificates (``server_tls_context(client_ca=...)``), a verified one's subject common name
is put in the ASGI scope under ``CLIENT_CERT_KEY`` for the app's authentication.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

CLIENT_CERT_KEY = "kumadp.client_certificate"  # the verified client certificate's CN


class _Server(uvicorn.Server):
    # Signals are handled once, by the command; uvicorn must not install its own.
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def server_tls_context(
    cert_pem: bytes,
    key_pem: bytes,
    *,
    client_ca: Path | None = None,
    require_client_cert: bool = False,
) -> ssl.SSLContext:
    """A TLS 1.2+ server context for ``cert_pem``/``key_pem``; with ``client_ca``, client
    certificates signed by it are verified (optional unless ``require_client_cert``)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="kumadp-tls-") as tmp:
        cert, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        cert.write_bytes(cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        context.load_cert_chain(cert, key)
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=str(client_ca))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"client CA file {client_ca}: {exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    elif require_client_cert:
        raise ValueError("requiring client certificates needs a client CA file")
    return context


def _common_name(peercert: Any) -> str:
    for rdn in (peercert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return "client certificate"


class _MarkClientCertificate:
    def __init__(self, app: ASGIApp, name: str) -> None:
        self.app = app
        self.name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[CLIENT_CERT_KEY] = self.name
        await self.app(scope, receive, send)


class _CertAwareH11(H11Protocol):
    """uvicorn's h11 protocol, telling the app about a verified client certificate."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        peercert = transport.get_extra_info("peercert")
        if peercert:  # only set when the TLS layer verified it against the client CA
            self.app = _MarkClientCertificate(self.app, _common_name(peercert))


class HttpServer:
    def __init__(
        self,
        name: str,
        app: ASGIApp,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        self._app = app
        self._host = host
        self._port = port
        self._tls = tls

    async def run(self, stop: asyncio.Event) -> None:
        config = uvicorn.Config(
            self._app,
            host=self._host,
            port=self._port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            # the caller is the TCP peer: X-Forwarded-For from a local relay is not trusted
            proxy_headers=False,
            http=_CertAwareH11 if self._tls is not None else "auto",
        )
        if self._tls is not None:
            config.load()
            config.ssl = self._tls
        server = _Server(config)
        serve = asyncio.create_task(server.serve(), name=f"{self.name}-serve")
        stop_wait = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait({serve, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if serve in done:
                serve.result()
                if not server.started:
                    raise OSError(f"{self.name}: cannot listen on {self._host}:{self._port}")
                return
            log.info("%s: shutting down", self.name)
            server.should_exit = True
            await serve
        finally:
            stop_wait.cancel()
            if not serve.done():
                server.force_exit = True
                serve.cancel()


__all__ = ["CLIENT_CERT_KEY", "HttpServer", "server_tls_context"]
