"""The control plane's HTTP API (Starlette)."""

from kumadp.cp.api.app import create_app
from kumadp.cp.api.bootstrap_route import BootstrapError, BootstrapHandler
from kumadp.cp.api.errors import ApiError
from kumadp.cp.api.resources import ResourceKind

__all__ = ["ApiError", "BootstrapError", "BootstrapHandler", "ResourceKind", "create_app"]
