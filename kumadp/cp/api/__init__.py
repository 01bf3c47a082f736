"""The control plane's HTTP API (Starlette)."""

from kumadp.cp.api.app import create_app
from kumadp.cp.api.bootstrap_route import BootstrapHandler
from kumadp.cp.api.errors import ApiError
from kumadp.cp.api.resources import ResourceKind

__all__ = ["ApiError", "BootstrapHandler", "ResourceKind", "create_app"]
