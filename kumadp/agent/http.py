"""HTTP clients for the agent, kept light: the agent's resident memory is a product figure.

- Loopback clients (Envoy's admin API, local app metrics) get no TLS context: building one
  loads the CA bundle, about 1.3 MB per client.
- httpx's package import also imports its own command line (``httpx._main``), which pulls
  in rich and pygments when they are installed (typer installs them): about 5 MB the agent
  never uses. ``kumadp.agent`` blocks that module before httpx is first imported.
"""

from __future__ import annotations

from typing import Any

import httpx


def local_client(**kwargs: Any) -> httpx.AsyncClient:
    """A client for plain-http loopback endpoints."""
    return httpx.AsyncClient(verify=False, trust_env=False, **kwargs)
