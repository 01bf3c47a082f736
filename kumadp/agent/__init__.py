"""The data-plane agent (``kumadp run``): one module per concern.

- ``bootstrap``: the CP's ``POST /bootstrap`` client (retries, deadline);
- ``envoy``: finding the binary, its version, and the Envoy process component;
- ``admin``: a small client of Envoy's admin API;
- ``readiness``: the ``/ready`` state, its checker and its HTTP server;
- ``cp_channel``: the gRPC ``AgentChannel`` (``Leave``) to the CP's DP server;
- ``identity``: the dataplane resource / name and mesh, and the token, checked locally;
- ``signals``: the one place signals are handled; ``workdir``: the work directory;
- ``run``: the composition root, ``AgentConfig`` and ``run_agent``.
"""

import sys as _sys

# httpx's own CLI module imports rich and pygments (~5 MB); the agent never uses it, so it
# is blocked before httpx is first imported (see kumadp/agent/http.py).
_sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


from kumadp.agent.errors import AgentError, ConfigError  # noqa: E402 - after the block above
from kumadp.agent.run import AgentConfig, run_agent  # noqa: E402

__all__ = ["AgentConfig", "AgentError", "ConfigError", "run_agent"]
