"""A small async client of Envoy's admin API (loopback only).

Used by the readiness checker (is Envoy LIVE, did it get its listeners?) and by the shutdown
sequence (fail health checks, drain listeners).
"""

from __future__ import annotations

import logging
from typing import Any

import yaml

from kumadp.agent.errors import AgentError
from kumadp.agent.http import httpx, local_client
from kumadp.resources.safe_load import load_yaml

log = logging.getLogger(__name__)

DEFAULT_ADMIN_PORT = 9901
_LDS_SUCCESS = "listener_manager.lds.update_success"


class AdminError(AgentError):
    """Envoy's admin API did not answer, or answered something unexpected."""


class EnvoyAdmin:
    def __init__(self, port: int, host: str = "127.0.0.1", *, timeout: float = 2.0) -> None:
        self.base_url = f"http://{host}:{port}"
        self._client = local_client(base_url=self.base_url, timeout=timeout)

    async def __aenter__(self) -> EnvoyAdmin:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _request(self, method: str, path: str, **params: Any) -> httpx.Response:
        try:
            return await self._client.request(method, path, params=params or None)
        except httpx.HTTPError as exc:
            raise AdminError(f"Envoy admin {method} {path}: {exc or type(exc).__name__}") from exc

    async def get(self, path: str) -> httpx.Response:
        """``GET path`` (a path with its query string) as Envoy answers it."""
        return await self._request("GET", path)

    async def get_json(self, path: str, **params: Any) -> dict[str, Any]:
        """``GET path`` as a JSON object (e.g. ``/stats`` with ``format="json"``)."""
        response = await self._request("GET", path, **params)
        if response.status_code != 200:
            raise AdminError(f"Envoy admin GET {path}: HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError as exc:
            raise AdminError(f"Envoy admin GET {path}: not JSON") from exc
        return data if isinstance(data, dict) else {}

    async def server_state(self) -> str:
        """Envoy's server state from ``GET /ready``: ``LIVE``, ``PRE_INITIALIZING``,
        ``INITIALIZING`` or ``DRAINING`` (Envoy answers 503 unless LIVE)."""
        response = await self._request("GET", "/ready")
        return response.text.strip()

    async def listeners_received(self) -> bool:
        """True once Envoy has accepted at least one LDS update."""
        response = await self._request(
            "GET", "/stats", filter=f"^{_LDS_SUCCESS.replace('.', '[.]')}$", format="json"
        )
        if response.status_code != 200:
            raise AdminError(f"Envoy admin GET /stats: HTTP {response.status_code}")
        try:
            stats = response.json().get("stats", [])
        except ValueError:
            return _text_stat(response.text, _LDS_SUCCESS) >= 1
        for stat in stats:
            if isinstance(stat, dict) and stat.get("name") == _LDS_SUCCESS:
                return int(stat.get("value", 0)) >= 1
        return False

    async def healthcheck_fail(self) -> None:
        """``POST /healthcheck/fail``: Envoy fails health checks from now on (its
        ``/ready`` keeps its server state), so peers and load balancers move away."""
        await self._post("/healthcheck/fail")

    async def drain_listeners(
        self, *, inbound_only: bool = True, graceful: bool = True, skip_exit: bool = True
    ) -> None:
        flags = [
            name
            for name, on in (
                ("inboundonly", inbound_only),
                ("graceful", graceful),
                ("skip_exit", skip_exit),
            )
            if on
        ]
        await self._post("/drain_listeners" + ("?" + "&".join(flags) if flags else ""))

    async def _post(self, path: str) -> None:
        response = await self._request("POST", path)
        if response.status_code != 200:
            raise AdminError(
                f"Envoy admin POST {path}: HTTP {response.status_code} {response.text.strip()}"
            )


def _text_stat(text: str, name: str) -> int:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            try:
                return int(value.strip())
            except ValueError:
                return 0
    return 0


def admin_port_from_bootstrap(bootstrap_yaml: bytes) -> int | None:
    """The admin port the CP put in the bootstrap (``admin.address.socket_address``)."""
    try:
        doc = load_yaml(bootstrap_yaml)
        port = doc["admin"]["address"]["socket_address"]["port_value"]
        return int(port)
    except (yaml.YAMLError, KeyError, TypeError, ValueError):
        return None
