"""The web UI at ``/gui`` on the API port: static ES modules and CSS shipped in the wheel
(no bundler, no build step, nothing fetched from outside), served by the API app itself in
every mode, under a strict Content-Security-Policy. The pages read the same HTTP API that
``kumadp ctl`` reads, with same-origin requests, so they see exactly what the API lets the
browser's user see. See docs/gui.md."""

from kumadp.cp.gui.routes import CONTENT_SECURITY_POLICY, SECURITY_HEADERS, gui_routes
from kumadp.cp.gui.types import resource_type_descriptions

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "SECURITY_HEADERS",
    "gui_routes",
    "resource_type_descriptions",
]
