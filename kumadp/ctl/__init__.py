"""The logic behind ``kumadp ctl``: an HTTP client of the control plane's API, the
control-planes config file, table rendering and the get/apply/delete/inspect operations.

Everything here raises ``CtlError`` (a one-line message, or a summary followed by
``field: message`` lines) for the CLI to print; nothing prints tracebacks.
"""

from kumadp.ctl.client import ApiClient, CtlError, NotFoundError

__all__ = ["ApiClient", "CtlError", "NotFoundError"]
