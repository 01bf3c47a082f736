"""The bootstrap client: asks the control plane for this proxy's Envoy bootstrap.

``POST {cp}/bootstrap`` with the JSON body kuma-dp 2.x sends. Answers:

- 200: ``{"bootstrap": <base64 YAML>, "kumaSidecarConfiguration": {...}}``;
- 404 with an empty body: the CP does not know the dataplane yet; retried;
- any other 4xx: the request is invalid; fails at once with the CP's message;
- 5xx, connection errors, timeouts: retried with capped exponential backoff and jitter,
  until a total deadline passes.

Several CP addresses: each round tries them in order, without waiting in between; the first
that gives a bootstrap wins (``BootstrapResult.cp_address`` says which). The backoff is
between rounds. A 4xx from any of them still fails at once: the CPs of one zone share a
store, so what one rejects the others reject too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kumadp import __version__
from kumadp.agent.cp_trust import CA_HINT
from kumadp.agent.errors import AgentError
from kumadp.agent.http import httpx
from kumadp.lifecycle import Backoff, retry
from kumadp.wire import bootstrap as wire

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 300.0


class BootstrapFailed(AgentError):
    """The control plane did not give a bootstrap (invalid request, or gave up retrying)."""


@dataclass(frozen=True)
class BootstrapRequest:
    """What the agent tells the CP about itself. ``dataplane_resource`` is the resource
    as a dict (sent as a JSON string), or None when the CP must already know it.
    ``to_wire()`` gives the contract's request (``kumadp.wire.bootstrap``)."""

    mesh: str
    name: str
    proxy_type: str = "dataplane"
    dataplane_token: str = ""
    dataplane_token_path: str = ""
    dataplane_resource: dict[str, Any] | None = None
    envoy_version: str = ""
    envoy_build: str = ""
    envoy_compatible: bool = True
    ca_cert: str = ""
    dns_port: int = 0
    readiness_port: int = 0
    workdir: str = ""
    features: tuple[str, ...] = ()
    dynamic_metadata: dict[str, str] = field(default_factory=dict)

    def to_wire(self) -> wire.BootstrapRequest:
        resource = ""
        if self.dataplane_resource is not None:
            resource = json.dumps(self.dataplane_resource, separators=(",", ":"))
        return wire.BootstrapRequest(
            mesh=self.mesh,
            name=self.name,
            proxy_type=self.proxy_type,
            dataplane_token=self.dataplane_token,
            dataplane_token_path=self.dataplane_token_path,
            dataplane_resource=resource,
            version=wire.Version(
                kuma_dp=wire.KumaDpVersion(
                    version=__version__,
                    git_tag=f"v{__version__}",
                    git_commit="unknown",
                    build_date="unknown",
                ),
                envoy=wire.EnvoyInfo(
                    version=self.envoy_version,
                    build=self.envoy_build,
                    kuma_dp_compatible=self.envoy_compatible,
                ),
            ),
            ca_cert=self.ca_cert,
            dynamic_metadata=dict(self.dynamic_metadata),
            dns_port=self.dns_port,
            readiness_port=self.readiness_port,
            app_probe_proxy_disabled=True,
            operating_system=sys.platform,
            features=self.features,
            workdir=self.workdir,
        )

    def to_json(self) -> dict[str, Any]:
        """The request body, with kuma-dp 2.x's field names."""
        return self.to_wire().to_json()


@dataclass(frozen=True)
class BootstrapResult:
    bootstrap_yaml: bytes
    sidecar_config: dict[str, Any]
    cp_address: str = ""  # the CP that answered (one of several)


class _Retry(Exception):
    """One attempt failed in a way worth retrying; the message says how."""


class BootstrapClient:
    """Fetches the bootstrap, retrying as Kuma's agent does, within ``timeout`` seconds."""

    def __init__(
        self,
        cp_address: str | Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        request_timeout: float = 10.0,
        initial_backoff: float = 0.5,
        max_backoff: float = 5.0,
        verify: bool | ssl.SSLContext = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        addresses = [cp_address] if isinstance(cp_address, str) else list(cp_address)
        if not addresses:
            raise ValueError("no control plane address")
        self.cp_addresses = [a.rstrip("/") for a in addresses]
        self.cp_address = self.cp_addresses[0]
        self._timeout = timeout
        self._request_timeout = request_timeout
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._verify = verify
        self._transport = transport

    async def fetch(
        self,
        request: BootstrapRequest,
        request_for: Callable[[str], BootstrapRequest] | None = None,
    ) -> BootstrapResult:
        """The bootstrap from the first CP address that gives one. ``request_for(address)``,
        when given, adapts the request to each address (e.g. its trust bundle)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        backoff = Backoff(self._initial_backoff, self._max_backoff)
        bodies = {
            a: (request_for(a) if request_for else request).to_json() for a in self.cp_addresses
        }
        attempts = 0
        failures: dict[str, str] = {}
        # A plain-http CP needs no TLS context: building one loads the CA bundle (~50 ms).
        https = any(a.startswith("https:") for a in self.cp_addresses)
        verify = self._verify if https else False

        async def one_round(client: httpx.AsyncClient) -> BootstrapResult:
            """Each address once, in order, without waiting in between."""
            nonlocal attempts
            for address in self.cp_addresses:
                attempts += 1
                remaining = deadline - loop.time()
                try:
                    result = await self._attempt(
                        client,
                        address,
                        bodies[address],
                        min(self._request_timeout, max(remaining, 0.1)),
                    )
                except _Retry as retry_:
                    failures[address] = str(retry_)
                    if loop.time() >= deadline:
                        break
                    continue
                if len(self.cp_addresses) > 1:
                    log.info("got the bootstrap from the control plane at %s", address)
                return result
            raise _Retry("no control plane gave a bootstrap")

        async with httpx.AsyncClient(verify=verify, transport=self._transport) as client:
            try:
                result = await retry(
                    lambda: one_round(client),
                    backoff,
                    retry_on=(_Retry,),
                    deadline=deadline,
                    on_retry=lambda _, delay: log.debug("bootstrap retry in %.2fs", delay),
                )
            except _Retry:
                if len(self.cp_addresses) == 1:
                    where = f"the control plane at {self.cp_address}"
                    last_failure = failures[self.cp_address]
                else:
                    where = "any of the control planes at " + ", ".join(self.cp_addresses)
                    last_failure = "; ".join(f"{a}: {f}" for a, f in failures.items())
                raise BootstrapFailed(
                    f"could not get a bootstrap from {where} within {self._timeout:g}s "
                    f"({attempts} attempts); last failure: {last_failure}"
                ) from None
        assert result is not None  # no stop event: only a bootstrap or an error ends it
        return result

    async def _attempt(
        self, client: httpx.AsyncClient, cp_address: str, body: dict[str, Any], per_request: float
    ) -> BootstrapResult:
        url = f"{cp_address}/bootstrap"
        try:
            response = await client.post(
                url,
                json=body,
                headers={"accept": "application/json"},
                timeout=per_request,
            )
        except httpx.TransportError as exc:
            problem = tls_problem(exc, cp_address)
            if problem is not None:  # not worth retrying: it will not fix itself
                raise BootstrapFailed(problem) from exc
            reason = str(exc) or type(exc).__name__
            log.info("control plane at %s not reachable (%s), retrying", cp_address, reason)
            raise _Retry(f"{type(exc).__name__}: {reason}") from exc
        status = response.status_code
        if status == 200:
            return _parse_result(response, cp_address)
        text = response.text.strip()
        if status == 400 and PLAIN_TO_TLS in text:
            raise BootstrapFailed(
                f"{cp_address} is an HTTPS port (the control plane's DP server): use "
                f"{_with_scheme(cp_address, 'https')}"
            )
        if status == 404 and not text:
            log.info("dataplane not found yet, retrying")
            raise _Retry("HTTP 404: the control plane does not know the dataplane yet")
        if 400 <= status < 500:
            raise BootstrapFailed(
                f"the control plane at {cp_address} rejected the bootstrap request "
                f"(HTTP {status}): {_error_message(response)}"
            )
        message = _error_message(response)
        log.info("control plane at %s answered HTTP %d (%s), retrying", cp_address, status, message)
        raise _Retry(f"HTTP {status}: {message}")


PLAIN_TO_TLS = "Client sent an HTTP request to an HTTPS server"
_NOT_TLS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG")


def _with_scheme(address: str, scheme: str) -> str:
    return urlunsplit(urlsplit(address)._replace(scheme=scheme))


def _causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def tls_problem(exc: BaseException, cp_address: str) -> str | None:
    """What to tell the user when TLS to ``cp_address`` failed in a way retrying cannot fix
    (the certificate is not trusted, or the port does not speak TLS); None otherwise."""
    chain = _causes(exc)
    text = " ".join(str(e) for e in chain)
    verify = next((e for e in chain if isinstance(e, ssl.SSLCertVerificationError)), None)
    if verify is not None or "CERTIFICATE_VERIFY_FAILED" in text:
        reason = getattr(verify, "verify_message", "") or "certificate verify failed"
        return (
            f"the control plane's certificate at {cp_address} is not trusted ({reason}): {CA_HINT}"
        )
    if any(marker in text for marker in _NOT_TLS):
        return (
            f"{cp_address} does not speak TLS: use {_with_scheme(cp_address, 'http')} for the "
            "control plane's API port, or https://HOST:5678 for its DP server port"
        )
    return None


def _parse_result(response: httpx.Response, cp_address: str) -> BootstrapResult:
    try:
        parsed = wire.BootstrapResponse.from_json(response.json())
    except ValueError as exc:  # not JSON, or not the contract's shape (WireError)
        raise BootstrapFailed(
            f"the control plane at {cp_address} sent an invalid bootstrap response: {exc}"
        ) from exc
    return BootstrapResult(
        bootstrap_yaml=parsed.bootstrap_yaml,
        sidecar_config=parsed.kuma_sidecar_configuration.to_json(),
        cp_address=cp_address,
    )


def _error_message(response: httpx.Response) -> str:
    """The CP's explanation: Kuma's error JSON (title, details, causes) or the body text."""
    text = response.text.strip()
    try:
        data = response.json()
    except ValueError:
        return text or response.reason_phrase or "no details"
    if not isinstance(data, dict):
        return text
    parts: list[str] = []
    for key in ("title", "details", "detail"):
        value = data.get(key)
        if isinstance(value, str) and value and value not in parts:
            parts.append(value)
    causes = data.get("causes") or data.get("invalid_parameters") or []
    if isinstance(causes, list):
        for cause in causes:
            if isinstance(cause, dict):
                where = cause.get("field", "")
                why = cause.get("message") or cause.get("reason") or ""
                parts.append(f"{where}: {why}" if where else str(why))
    return "; ".join(parts) if parts else text
