"""The web UI's server side: the page at /gui and its deep links, the shipped assets, the
security headers, the resource types document; and that the assets stay self-contained
(nothing from another origin, no inline script or style) and the YAML they print parses."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kumadp.cp.api import create_app
from kumadp.cp.gui import CONTENT_SECURITY_POLICY, resource_type_descriptions
from kumadp.cp.gui.routes import ASSETS_DIR, load_assets
from kumadp.cp.store import MemoryStore
from kumadp.resources.registry import REGISTRY

BASE_URL = "http://127.0.0.1:5681"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(MemoryStore())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        yield c


def assert_hardened(resp: httpx.Response) -> None:
    csp = resp.headers["content-security-policy"]
    assert csp == CONTENT_SECURITY_POLICY
    for directive in (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ):
        assert directive in csp
    assert "unsafe" not in csp and "http" not in csp
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize(
    "path", ["/gui", "/gui/", "/gui/meshes/default/dataplanes/web-1", "/gui/zones", "/gui/x/y/z"]
)
async def test_every_gui_path_is_the_page(client: httpx.AsyncClient, path: str) -> None:
    resp = await client.get(path)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert '<base href="/gui/">' in resp.text
    assert '<script type="module" src="assets/app.js">' in resp.text
    assert_hardened(resp)


async def test_the_page_base_follows_a_mount_prefix() -> None:
    app = create_app(MemoryStore())
    transport = httpx.ASGITransport(app=app, root_path="/kuma")
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        resp = await c.get("/kuma/gui/meshes")
    assert resp.status_code == 200
    assert '<base href="/kuma/gui/">' in resp.text


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/gui/assets/app.js", "text/javascript"),
        ("/gui/assets/pages/dataplanes.js", "text/javascript"),
        ("/gui/assets/style.css", "text/css"),
        ("/gui/assets/icon.svg", "image/svg+xml"),
    ],
)
async def test_assets_are_served_with_their_type_and_a_validator(
    client: httpx.AsyncClient, path: str, media_type: str
) -> None:
    resp = await client.get(path)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith(media_type)
    assert resp.headers["cache-control"] == "no-cache"
    assert_hardened(resp)
    etag = resp.headers["etag"]
    again = await client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    head = await client.head(path)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(resp.content))


@pytest.mark.parametrize(
    "path",
    [
        "/gui/assets/nope.js",
        "/gui/assets/index.html",
        "/gui/assets/../routes.py",
        "/gui/assets/%2e%2e/routes.py",
        "/gui/assets/%2e%2e/__init__.py",
        "/gui/assets/",
    ],
)
async def test_only_shipped_assets_are_served(client: httpx.AsyncClient, path: str) -> None:
    resp = await client.get(path)
    assert "import " not in resp.text and "def " not in resp.text  # never a source file
    if resp.status_code == 200:  # a dot-dot path the client resolved: a page, not a file
        assert resp.headers["content-type"].startswith("text/html")
    else:
        assert resp.status_code == 404
        assert {"title", "details", "causes"} <= set(resp.json())  # the API's error shape


async def test_the_ui_is_read_only(client: httpx.AsyncClient) -> None:
    for method in ("POST", "PUT", "DELETE"):
        resp = await client.request(method, "/gui/meshes")
        assert resp.status_code == 405


async def test_resource_types_in_kumas_shape(client: httpx.AsyncClient) -> None:
    resp = await client.get("/gui/_resources")
    assert resp.status_code == 200
    assert_hardened(resp)
    types = {t["name"]: t for t in resp.json()["resources"]}
    assert set(types) == {t.name for t in REGISTRY.served()}
    required = {
        "name",
        "scope",
        "readOnly",
        "path",
        "singularDisplayName",
        "pluralDisplayName",
        "includeInFederation",
    }
    for t in types.values():
        assert required <= set(t)
    assert types["Mesh"]["scope"] == "Global" and "policy" not in types["Mesh"]
    assert types["Dataplane"]["scope"] == "Mesh" and "policy" not in types["Dataplane"]
    retry = types["MeshRetry"]
    assert retry["path"] == "meshretries" and retry["policy"] == {"isTargetRef": True}
    assert retry["singularDisplayName"] == "Mesh Retry"
    assert retry["pluralDisplayName"] == "Mesh Retries"
    assert types["MeshTrafficPermission"]["pluralDisplayName"] == "Mesh Traffic Permissions"
    assert types["Mesh"]["pluralDisplayName"] == "Meshes"
    policies = {name for name, t in types.items() if "policy" in t}
    assert policies == {t.name for t in REGISTRY.policies() if t.served}
    assert resource_type_descriptions() == resp.json()


def test_the_page_needs_nothing_from_another_origin() -> None:
    for path in sorted(ASSETS_DIR.rglob("*")):
        if not path.is_file():
            continue
        text = path.read_text()
        text = text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), path
        if path.suffix == ".css":
            assert "@import" not in text and "url(" not in text, path
        if path.suffix == ".js":
            assert "innerHTML" not in text and "eval(" not in text, path
            assert "new Function" not in text and "document.write" not in text, path


def test_the_page_has_no_inline_script_or_style() -> None:
    html = (ASSETS_DIR / "index.html").read_text()
    assert "<style" not in html and " style=" not in html
    for tag in re.findall(r"<script[^>]*>", html):
        assert "src=" in tag, tag
    assert not re.search(r"\son[a-z]+=", html)


def test_every_module_the_ui_imports_is_shipped() -> None:
    assets = load_assets()
    for name, asset in assets.items():
        if not name.endswith(".js"):
            continue
        for target in re.findall(r"from '(\.[^']+)'", asset.body.decode()):
            resolved = (Path(name).parent / target).as_posix()
            resolved = str(Path(resolved)).replace("\\", "/")
            parts: list[str] = []
            for part in resolved.split("/"):
                if part == "..":
                    parts.pop()
                elif part not in (".", ""):
                    parts.append(part)
            assert "/".join(parts) in assets, f"{name} imports {target}"


TRICKY_STRINGS = [
    *"yes no on null ~ true 1 1.9 0x10 1e3 -x [x] {x} *x &x !x %x @x `x 'x \"x |x >x x:".split(),
    *"2026-12-01T04:49:24Z 10:30 5s 250ms kuma.io/service ünïcode #x ?x ,x".split(),
    *["", " x", "x ", "a: b", "a #b", "line\nbreak", "tab\there"],
]
YAML_CASES: list[Any] = [
    {"type": "Mesh", "name": "default"},
    {
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}],
        }
    },
    {"strings": TRICKY_STRINGS},
    {"numbers": [0, -1, 3.5, 1e21], "bools": [True, False], "none": None},
    {"empty": {}, "list": [], "nested": [[1, 2], [], [{}], {"a": []}]},
    {"weird keys": {"a b": 1, "1": 2, "true": 3, "": 4, "x:y": 5, "-": 6}},
    [{"a": 1, "b": [{"c": 2}]}, "plain", 3],
    "scalar",
    {"deep": {"a": {"b": {"c": {"d": [1, {"e": "f"}]}}}}},
]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_yaml_the_ui_prints_reads_back_the_same() -> None:
    script = (
        f"import {{ toYaml }} from {json.dumps((ASSETS_DIR / 'yaml.js').as_uri())};\n"
        f"const cases = {json.dumps(YAML_CASES)};\n"
        "console.log(JSON.stringify(cases.map((c) => toYaml(c))));\n"
    )
    out = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    printed = json.loads(out.stdout)
    for case, text in zip(YAML_CASES, printed, strict=True):
        assert yaml.safe_load(text) == case, text
    assert printed[0] == "type: Mesh\nname: default\n"
