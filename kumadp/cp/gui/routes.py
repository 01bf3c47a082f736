"""The routes of the web UI:

- ``GET /gui``, ``GET /gui/`` and every deep link ``GET /gui/<page path>``: the one HTML
  page (the client-side router shows the page the path names; a reload or a shared link
  lands on the same page);
- ``GET /gui/assets/<file>``: the scripts, styles and icon shipped in this package (only the
  files that exist there, read once at start; ``ETag`` and ``304``);
- ``GET /gui/_resources``: the resource types (see ``kumadp.cp.gui.types``).

Every answer carries a strict Content-Security-Policy (scripts, styles, images and API calls
from this origin only; no inline script or style, no frames, no forms) and the usual
hardening headers.
"""

from __future__ import annotations

import hashlib
import html
import logging
from dataclasses import dataclass
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kumadp.cp.gui.types import resource_type_descriptions
from kumadp.resources.registry import REGISTRY, Registry

log = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).parent / "assets"
INDEX = "index.html"
BASE_PLACEHOLDER = "__KUMADP_GUI_BASE__"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'none'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def load_assets(directory: Path = ASSETS_DIR) -> dict[str, Asset]:
    """Every servable file under ``directory`` by its path relative to it (``pages/x.js``);
    files of other kinds are not served."""
    assets: dict[str, Asset] = {}
    for path in sorted(directory.rglob("*")):
        media_type = MEDIA_TYPES.get(path.suffix)
        if not path.is_file() or media_type is None:
            continue
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        assets[path.relative_to(directory).as_posix()] = Asset(body, media_type, etag)
    if INDEX not in assets:
        raise RuntimeError(f"the web UI's {INDEX} is missing from {directory}")
    return assets


def _answer(request: Request, asset: Asset) -> Response:
    headers = {**SECURITY_HEADERS, "ETag": asset.etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else asset.body
    response = Response(body, media_type=asset.media_type, headers=headers)
    if request.method == "HEAD":
        response.headers["content-length"] = str(len(asset.body))
    return response


def gui_routes(registry: Registry = REGISTRY, assets_dir: Path = ASSETS_DIR) -> list[BaseRoute]:
    """The web UI's routes, for the API app."""
    assets = load_assets(assets_dir)
    template = assets[INDEX].body.decode()
    types_document = resource_type_descriptions(registry)

    def index(request: Request) -> Response:
        # The page's <base> is where the UI lives, so its relative links and assets resolve
        # the same from any deep link, also behind a proxy that mounts the API under a prefix.
        base = html.escape(f"{request.scope.get('root_path', '')}/gui/", quote=True)
        body = template.replace(BASE_PLACEHOLDER, base).encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        return _answer(request, Asset(body, MEDIA_TYPES[".html"], etag))

    async def page(request: Request) -> Response:
        return index(request)

    async def asset(request: Request) -> Response:
        found = assets.get(str(request.path_params["path"]))
        if found is None or found is assets[INDEX]:
            raise HTTPException(404, f"no such file in the web UI: {request.url.path}")
        return _answer(request, found)

    async def resource_types(request: Request) -> Response:
        return JSONResponse(types_document, headers=SECURITY_HEADERS)

    methods = ["GET", "HEAD"]
    return [
        Route("/gui/_resources", resource_types, methods=["GET"]),
        Route("/gui/assets/{path:path}", asset, methods=methods),
        Route("/gui", page, methods=methods),
        Route("/gui/{page:path}", page, methods=methods),
    ]


__all__ = [
    "CONTENT_SECURITY_POLICY",
    "SECURITY_HEADERS",
    "Asset",
    "gui_routes",
    "load_assets",
]
