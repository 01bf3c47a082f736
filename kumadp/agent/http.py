"""HTTP clients for the agent, kept light: the agent's resident memory is a product figure.

- httpx's package import also imports its own command line (``httpx._main``), which pulls
  in rich and pygments when they are installed (typer installs them): about 5 MB the agent
  never uses. This module blocks that module before it imports httpx, so the agent's
  modules take ``httpx`` from here (``from kumadp.agent.http import httpx``), never
  directly.
- Loopback clients (Envoy's admin API, local app metrics) get no TLS context: building one
  loads the CA bundle, about 1.3 MB per client.
"""

from __future__ import annotations

import sys
from typing import Any

sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402 - after the block above

__all__ = ["httpx", "local_client", "scrape_client"]


def local_client(**kwargs: Any) -> httpx.AsyncClient:
    """A client for plain-http loopback endpoints."""
    return httpx.AsyncClient(verify=False, trust_env=False, **kwargs)


def scrape_client(timeout: float, tls: bool) -> httpx.AsyncClient:
    """A client for Prometheus endpoints: a TLS context only when one of them is https."""
    return httpx.AsyncClient(
        verify=tls,
        timeout=httpx.Timeout(timeout),
        trust_env=False,
        follow_redirects=False,
        limits=httpx.Limits(max_keepalive_connections=4),
    )
