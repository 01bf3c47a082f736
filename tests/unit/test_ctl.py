"""``kumadp ctl``: get / inspect / apply / delete / config control-planes against a fake CP
(a Starlette app served by uvicorn on a free port), and the table and config helpers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from typer.testing import CliRunner

from kumadp.cli import ctl as cli_ctl
from kumadp.cp.api import create_app
from kumadp.cp.store import MemoryStore
from kumadp.ctl import config as ctl_config
from kumadp.ctl import tables
from kumadp.resources import ValidationError, parse_resource
from testkit.procs import free_port, wait_until

NOW = datetime.now(UTC)


def ts(delta: timedelta) -> str:
    """A time ``delta`` from now, RFC 3339 with a Z."""
    return (NOW + delta).isoformat().replace("+00:00", "Z")


THREE_DAYS_AGO = ts(-timedelta(days=3, minutes=5))
FIVE_HOURS_AGO = ts(-timedelta(hours=5, minutes=5))


# --- a fake control plane -----------------------------------------------------------------


def _error(status: int, title: str, details: str = "", causes: Any = ()) -> JSONResponse:
    body = {"title": title, "details": details, "causes": list(causes)}
    return JSONResponse(body, status_code=status)


class FakeCP:
    """Resources in a dict, lists paged by ``page_size`` with absolute ``next`` URLs, and
    dataplane overviews from ``overviews`` (insights off: 404 as a CP without the API)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.resources: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.overviews: list[dict[str, Any]] = []
        self.insights = True
        self.page_size = 2
        self.requests: list[tuple[str, str]] = []
        self.put_error: JSONResponse | None = None
        self.tokens: list[dict[str, Any]] = []

    def add(self, plural: str, doc: dict[str, Any], created: str = THREE_DAYS_AGO) -> None:
        doc = {**doc, "creationTime": created, "modificationTime": created}
        self.resources[(plural, doc.get("mesh", ""), doc["name"])] = doc

    def _page(self, request: Request, items: list[dict[str, Any]]) -> JSONResponse:
        offset = int(request.query_params.get("offset", "0"))
        chunk = items[offset : offset + self.page_size]
        nxt = None
        if offset + self.page_size < len(items):
            nxt = str(request.url.include_query_params(offset=offset + self.page_size))
        return JSONResponse({"total": len(items), "items": chunk, "next": nxt})

    async def handle(self, request: Request) -> Response:
        self.requests.append((request.method, request.url.path))
        parts = request.url.path.strip("/").split("/")
        if parts == [""]:
            return JSONResponse({"tagline": "kumadp", "version": "0.1.0", "product": "kumadp"})
        if parts[0] == "tokens":
            self.tokens.append(await request.json())
            return PlainTextResponse("a.b.c\n")
        if parts[0].endswith("+insights") or (len(parts) == 3 and "+insights" in parts[2]):
            if not self.insights:
                return _error(404, "Not Found", f"no such endpoint: {request.url.path}")
            mesh = parts[1] if len(parts) == 3 else None
            items = [o for o in self.overviews if mesh is None or o.get("mesh") == mesh]
            return self._page(request, items)
        if parts[0] == "meshes" and len(parts) <= 2:
            plural, mesh, name = "meshes", "", parts[1] if len(parts) == 2 else None
        elif parts[0] == "meshes":
            plural, mesh = parts[2], parts[1]
            name = parts[3] if len(parts) == 4 else None
        else:
            plural, mesh, name = parts[0], None, None  # /dataplanes: every mesh
        if name is None:
            items = [
                doc
                for (p, m, _), doc in sorted(self.resources.items())
                if p == plural and (mesh is None or m == mesh)
            ]
            return self._page(request, items)
        key = (plural, mesh or "", name)
        if request.method == "GET":
            if key not in self.resources:
                return _error(404, "Not Found", f"{plural} {name} not found")
            return JSONResponse(self.resources[key])
        if request.method == "DELETE":
            if self.resources.pop(key, None) is None:
                return _error(404, "Not Found", f"{plural} {name} not found")
            return JSONResponse({})
        if self.put_error is not None:
            return self.put_error
        doc = await request.json()
        try:
            parse_resource(doc)
        except ValidationError as exc:
            causes = [{"field": e.path, "message": e.reason} for e in exc.errors]
            return _error(400, "Resource is not valid", str(exc), causes)
        created = key not in self.resources
        self.add(plural, doc, ts(timedelta()))
        return JSONResponse({}, status_code=201 if created else 200)


class Served:
    """An ASGI app served by uvicorn on a free 127.0.0.1 port in a thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=10, what="fake CP started")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def served_fake() -> Iterator[tuple[FakeCP, Served]]:
    fake = FakeCP()
    app = Starlette(
        routes=[Route("/{path:path}", fake.handle, methods=["GET", "PUT", "DELETE", "POST"])]
    )
    served = Served(app)
    try:
        yield fake, served
    finally:
        served.stop()


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ctl" / "config.yaml"
    monkeypatch.setenv("KUMADP_CONFIG", str(path))
    monkeypatch.delenv("KUMADP_CP_URL", raising=False)
    return path


@pytest.fixture
def cp(served_fake: tuple[FakeCP, Served]) -> FakeCP:
    fake, _ = served_fake
    fake.reset()
    return fake


@pytest.fixture
def cp_url(served_fake: tuple[FakeCP, Served]) -> str:
    return served_fake[1].url


def _cli() -> typer.Typer:
    app = typer.Typer()
    cli_ctl.register(app)
    return app


def run(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(_cli(), ["ctl", *args], input=input)


def ok(*args: str, input: str | None = None) -> str:
    result = run(*args, input=input)
    assert result.exit_code == 0, result.output
    return str(result.stdout)


def failed(*args: str, input: str | None = None) -> str:
    """The stderr of a command that must fail with ``Error: ...`` and no traceback."""
    result = run(*args, input=input)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return str(result.stderr)


def dataplane(mesh: str, name: str, service: str, port: int = 20001) -> dict[str, Any]:
    return {
        "type": "Dataplane",
        "mesh": mesh,
        "name": name,
        "networking": {
            "address": "127.0.0.1",
            "inbound": [
                {
                    "port": port,
                    "servicePort": 8080,
                    "tags": {"kuma.io/service": service, "kuma.io/protocol": "http"},
                }
            ],
        },
    }


def populate(cp: FakeCP) -> None:
    cp.add("meshes", {"type": "Mesh", "name": "default"})
    cp.add(
        "meshes",
        {
            "type": "Mesh",
            "name": "payments",
            "mtls": {
                "enabledBackend": "ca-1",
                "backends": [{"name": "ca-1", "type": "builtin", "mode": "STRICT"}],
            },
        },
        FIVE_HOURS_AGO,
    )
    cp.add("dataplanes", dataplane("default", "backend-1", "backend"))
    cp.add("dataplanes", dataplane("default", "web-1", "web"), FIVE_HOURS_AGO)
    cp.add("dataplanes", dataplane("payments", "ledger-1", "ledger"))
    cp.add(
        "meshtrafficpermissions",
        {
            "type": "MeshTrafficPermission",
            "mesh": "default",
            "name": "allow-all-default",
            "spec": {
                "targetRef": {"kind": "Mesh"},
                "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}],
            },
        },
    )
    cp.add(
        "meshtrafficpermissions",
        {
            "type": "MeshTrafficPermission",
            "mesh": "default",
            "name": "web-to-backend",
            "spec": {
                "targetRef": {"kind": "MeshService", "name": "backend"},
                "from": [
                    {
                        "targetRef": {"kind": "MeshService", "name": "web"},
                        "default": {"action": "Allow"},
                    }
                ],
            },
        },
    )


# --- get ----------------------------------------------------------------------------------


def test_get_meshes_table(cp: FakeCP, cp_url: str) -> None:
    populate(cp)
    assert ok("get", "meshes", "--cp-address", cp_url) == (
        "NAME       MTLS          AGE\ndefault    off           3d\npayments   ca-1/STRICT   5h\n"
    )


def test_get_dataplanes_table_every_mesh_across_pages(cp: FakeCP, cp_url: str) -> None:
    populate(cp)
    out = ok("get", "dataplanes", "--all-meshes", "--cp-address", cp_url)
    assert out == (
        "MESH       NAME        TAGS                                            ADDRESS     AGE\n"
        "default    backend-1   kuma.io/service=backend,kuma.io/protocol=http   127.0.0.1   3d\n"
        "default    web-1       kuma.io/service=web,kuma.io/protocol=http       127.0.0.1   5h\n"
        "payments   ledger-1    kuma.io/service=ledger,kuma.io/protocol=http    127.0.0.1   3d\n"
    )
    # three items, pages of two: the second page was followed from ``next``
    assert cp.requests.count(("GET", "/dataplanes")) == 2


def test_get_dataplanes_of_one_mesh(cp: FakeCP, cp_url: str) -> None:
    populate(cp)
    out = ok("get", "dataplanes", "--mesh", "payments", "--cp-address", cp_url)
    assert out.splitlines()[1:] == [
        "payments   ledger-1   kuma.io/service=ledger,kuma.io/protocol=http   127.0.0.1   3d"
    ]
    assert ("GET", "/meshes/payments/dataplanes") in cp.requests
    err = failed("get", "dataplanes", "--mesh", "nope", "--cp-address", cp_url)
    assert err == 'Error: mesh "nope" not found\n'


def test_get_defaults_to_the_default_mesh_as_kumactl(cp: FakeCP, cp_url: str) -> None:
    populate(cp)
    out = ok("get", "dataplanes", "--cp-address", cp_url)
    assert [line.split()[1] for line in out.splitlines()[1:]] == ["backend-1", "web-1"]
    assert ("GET", "/meshes/default/dataplanes") in cp.requests
    populate_overviews(cp)
    out = ok("inspect", "dataplanes", "--cp-address", cp_url)
    assert [line.split()[1] for line in out.splitlines()[1:]] == ["backend-1", "web-1"]


def test_get_meshtrafficpermissions_table(cp: FakeCP, cp_url: str) -> None:
    populate(cp)
    assert ok("get", "meshtrafficpermissions", "--cp-address", cp_url) == (
        "MESH      NAME                TARGET                AGE\n"
        "default   allow-all-default   Mesh                  3d\n"
        "default   web-to-backend      MeshService backend   3d\n"
    )


def test_get_empty_list_prints_the_headers(cp: FakeCP, cp_url: str) -> None:
    cp.add("meshes", {"type": "Mesh", "name": "default"})
    assert ok("get", "dataplanes", "--cp-address", cp_url) == (
        "MESH   NAME   TAGS   ADDRESS   AGE\n"
    )


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_get_list_as_json_and_yaml(cp: FakeCP, cp_url: str, fmt: str) -> None:
    populate(cp)
    out = ok("get", "dataplanes", "-A", "-o", fmt, "--cp-address", cp_url)
    body = json.loads(out) if fmt == "json" else yaml.safe_load(out)
    assert body["total"] == 3 and body["next"] is None
    assert [item["name"] for item in body["items"]] == ["backend-1", "web-1", "ledger-1"]
    assert (
        body["items"][0]["networking"] == dataplane("default", "backend-1", "backend")["networking"]
    )


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_get_one_resource(cp: FakeCP, cp_url: str, fmt: str) -> None:
    populate(cp)
    out = ok("get", "dataplane", "web-1", "-o", fmt, "--cp-address", cp_url)
    body = json.loads(out) if fmt == "json" else yaml.safe_load(out)
    assert body == cp.resources[("dataplanes", "default", "web-1")]
    table = ok("get", "mesh", "payments", "--cp-address", cp_url)
    assert table == "NAME       MTLS          AGE\npayments   ca-1/STRICT   5h\n"


def test_get_errors(cp: FakeCP, cp_url: str) -> None:
    populate(cp)
    assert (
        failed("get", "dataplane", "x", "--cp-address", cp_url)
        == 'Error: dataplane "x" not found in mesh "default"\n'
    )
    assert (
        failed("get", "dataplane", "x", "--mesh", "payments", "--cp-address", cp_url)
        == 'Error: dataplane "x" not found in mesh "payments"\n'
    )
    assert failed("get", "mesh", "x", "--cp-address", cp_url) == 'Error: mesh "x" not found\n'
    assert failed("get", "gateways", "--cp-address", cp_url).startswith(
        'Error: unknown resource type "gateways" (supported: meshes, dataplanes, '
    )
    assert failed("get", "meshes", "-o", "xml", "--cp-address", cp_url) == (
        'Error: -o/--output: "xml" is not one of table, json, yaml\n'
    )


# --- inspect ------------------------------------------------------------------------------


def overview(mesh: str, name: str, service: str, insight: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": "DataplaneOverview",
        "mesh": mesh,
        "name": name,
        "creationTime": THREE_DAYS_AGO,
        "modificationTime": THREE_DAYS_AGO,
        "dataplane": {"networking": dataplane(mesh, name, service)["networking"]},
    }
    if insight is not None:
        doc["dataplaneInsight"] = insight
    return doc


def subscription(connected: timedelta, disconnected: timedelta | None = None) -> dict[str, Any]:
    sub: dict[str, Any] = {
        "id": "s1",
        "controlPlaneInstanceId": "cp-1",
        "connectTime": ts(-connected),
        "status": {
            "lastUpdateTime": ts(-connected),
            "total": {"responsesSent": "4", "responsesAcknowledged": "4"},
        },
        "version": {
            "kumaDp": {"version": "0.1.0", "gitTag": "v0.1.0"},
            "envoy": {"version": "1.34.1", "build": "abc/1.34.1/Clean/RELEASE"},
        },
    }
    if disconnected is not None:
        sub["disconnectTime"] = ts(-disconnected)
    return sub


def populate_overviews(cp: FakeCP) -> None:
    cp.overviews = [
        overview(
            "default",
            "backend-1",
            "backend",
            {
                "online": True,
                "subscriptions": [
                    subscription(timedelta(hours=6), timedelta(hours=5, minutes=30)),
                    subscription(timedelta(hours=5, minutes=5)),
                ],
                "mTLS": {
                    "certificateExpirationTime": ts(timedelta(hours=23, minutes=30)),
                    "certificateRegenerations": 1,
                },
            },
        ),
        # offline; older kuma-dp insight without "online": derived from the subscriptions
        overview(
            "default",
            "web-1",
            "web",
            {"subscriptions": [subscription(timedelta(days=2, hours=1), timedelta(days=1))]},
        ),
        # nothing known yet
        overview("payments", "ledger-1", "ledger", None),
    ]


INSPECT_TABLE = (
    "MESH       NAME        TAGS                                            STATUS    "
    "LAST CONNECTED   CERT EXPIRY   AGENT   ENVOY\n"
    "default    backend-1   kuma.io/service=backend,kuma.io/protocol=http   Online    "
    "5h ago           in 23h        0.1.0   1.34.1\n"
    "default    web-1       kuma.io/service=web,kuma.io/protocol=http       Offline   "
    "2d ago           -             0.1.0   1.34.1\n"
    "payments   ledger-1    kuma.io/service=ledger,kuma.io/protocol=http    Offline   "
    "-                -             -       -\n"
)


def test_inspect_dataplanes_table(cp: FakeCP, cp_url: str) -> None:
    populate(cp)
    populate_overviews(cp)
    assert ok("inspect", "dataplanes", "--all-meshes", "--cp-address", cp_url) == INSPECT_TABLE
    assert ("GET", "/dataplanes+insights") in cp.requests


def test_inspect_dataplanes_shows_zones_at_global(cp: FakeCP, cp_url: str) -> None:
    populate(cp)
    populate_overviews(cp)
    cp.overviews[0]["labels"] = {"kuma.io/zone": "zone-a", "kuma.io/origin": "zone"}
    lines = ok("inspect", "dataplanes", "--cp-address", cp_url).splitlines()
    assert lines[0].split()[:3] == ["MESH", "ZONE", "NAME"]
    assert lines[1].split()[:3] == ["default", "zone-a", "backend-1"]
    assert lines[2].split()[:3] == ["default", "-", "web-1"]


def test_inspect_dataplanes_of_one_mesh(cp: FakeCP, cp_url: str) -> None:
    populate(cp)
    populate_overviews(cp)
    out = ok("inspect", "dataplanes", "--mesh", "payments", "--cp-address", cp_url)
    assert out.splitlines()[1].split() == [
        "payments",
        "ledger-1",
        "kuma.io/service=ledger,kuma.io/protocol=http",
        "Offline",
        "-",
        "-",
        "-",
        "-",
    ]
    assert ("GET", "/meshes/payments/dataplanes+insights") in cp.requests


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_inspect_dataplanes_json_yaml(cp: FakeCP, cp_url: str, fmt: str) -> None:
    populate(cp)
    populate_overviews(cp)
    out = ok("inspect", "dataplanes", "-A", "-o", fmt, "--cp-address", cp_url)
    body = json.loads(out) if fmt == "json" else yaml.safe_load(out)
    assert body == {"total": 3, "items": cp.overviews, "next": None}


def test_inspect_without_the_insights_api(cp: FakeCP, cp_url: str) -> None:
    cp.insights = False
    err = failed("inspect", "dataplanes", "-A", "--cp-address", cp_url)
    assert err == (
        f"Error: the control plane at {cp_url} does not serve /dataplanes+insights "
        "(a kumadp control plane without the insights API?)\n"
    )


# --- apply --------------------------------------------------------------------------------

MULTI = """\
type: MeshTrafficPermission
mesh: default
name: web-to-{{ service }}
spec:
  targetRef: {kind: MeshService, name: "{{ service }}"}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Allow}
---
# the dataplane
type: Dataplane
mesh: default
name: "{{ service }}-1"
networking:
  address: 127.0.0.1
  inbound:
    - port: {{ port }}
      servicePort: 8080
      tags: {kuma.io/service: "{{ service }}"}
"""


def test_apply_file_creates_then_updates(cp: FakeCP, cp_url: str, tmp_path: Path) -> None:
    populate(cp)
    path = tmp_path / "res.yaml"
    path.write_text(MULTI)
    args = ("apply", "-f", str(path), "-v", "service=db", "-v", "port=20005")
    assert ok(*args, "--cp-address", cp_url) == (
        'MeshTrafficPermission "web-to-db" in mesh "default" created\n'
        'Dataplane "db-1" in mesh "default" created\n'
    )
    stored = cp.resources[("dataplanes", "default", "db-1")]
    assert stored["networking"]["inbound"][0]["port"] == 20005
    assert cp.resources[("meshtrafficpermissions", "default", "web-to-db")]["spec"][
        "targetRef"
    ] == {
        "kind": "MeshService",
        "name": "db",
    }
    assert ok(*args, "--cp-address", cp_url).splitlines() == [
        'MeshTrafficPermission "web-to-db" in mesh "default" updated',
        'Dataplane "db-1" in mesh "default" updated',
    ]


def test_apply_from_stdin(cp: FakeCP, cp_url: str) -> None:
    populate(cp)
    doc = json.dumps({"type": "Mesh", "name": "orders"})
    assert ok("apply", "-f", "-", "--cp-address", cp_url, input=doc) == ('Mesh "orders" created\n')
    assert ("PUT", "/meshes/orders") in cp.requests


def test_apply_validates_every_document_first(cp: FakeCP, cp_url: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "type: Mesh\nname: fine\n---\n"
        "type: Dataplane\nmesh: default\nname: db-1\n"
        "networking:\n  address: 127.0.0.1\n  inbound:\n    - port: 70000\n      tags: {}\n"
        "---\ntype: MeshGateway\nname: z\n"
    )
    err = failed("apply", "-f", str(path), "--cp-address", cp_url)
    lines = err.splitlines()
    assert lines[0] == f"Error: {path}: 2 documents are not valid; nothing was applied"
    assert "document 2 (db-1): networking.inbound[0].port: must be 1-65535" in lines
    assert any(line.startswith("document 3 (z): type: unknown type") for line in lines)
    assert not [r for r in cp.requests if r[0] == "PUT"]


def test_apply_template_and_yaml_errors(cp: FakeCP, cp_url: str, tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(MULTI)
    err = failed("apply", "-f", str(path), "-v", "service=db", "--cp-address", cp_url)
    assert err.splitlines() == [
        f"Error: {path}: bad template",
        "{{ port }}: no value given (use --dataplane-var port=...)",
    ]
    path.write_text("type: Mesh\nname: a\nname: b\n")
    err = failed("apply", "-f", str(path), "--cp-address", cp_url)
    assert err == f'Error: {path}: invalid YAML at line 3, column 1: duplicate key "name"\n'
    err = failed("apply", "-f", str(tmp_path / "missing.yaml"), "--cp-address", cp_url)
    assert (
        err
        == f"Error: --file: cannot read {tmp_path / 'missing.yaml'}: No such file or directory\n"
    )
    assert failed("apply", "-f", "-", "--cp-address", cp_url, input="# nothing\n") == (
        "Error: <stdin>: no resource in it\n"
    )
    assert cp.requests == []


def test_apply_dry_run_sends_nothing(cp: FakeCP, cp_url: str, tmp_path: Path) -> None:
    path = tmp_path / "res.yaml"
    path.write_text(MULTI)
    out = ok("apply", "-f", str(path), "-v", "service=db", "-v", "port=1", "--dry-run")
    docs = list(yaml.safe_load_all(out))
    assert [d["name"] for d in docs] == ["web-to-db", "db-1"]
    assert docs[1]["networking"]["inbound"][0]["port"] == 1
    assert cp.requests == []


def test_apply_shows_the_cps_causes(cp: FakeCP, cp_url: str) -> None:
    cp.put_error = _error(
        400,
        "Resource is not valid",
        'mesh: mesh "nope" does not exist',
        [{"field": "mesh", "message": 'mesh "nope" does not exist'}],
    )
    doc = yaml.safe_dump(dataplane("nope", "db-1", "db"))
    err = failed("apply", "-f", "-", "--cp-address", cp_url, input=doc)
    assert err.splitlines() == [
        'Error: Dataplane "db-1" in mesh "nope": Resource is not valid',
        'mesh: mesh "nope" does not exist',
    ]


# --- delete -------------------------------------------------------------------------------


def test_delete(cp: FakeCP, cp_url: str) -> None:
    populate(cp)
    assert ok("delete", "dataplane", "web-1", "--cp-address", cp_url) == (
        'Dataplane "web-1" in mesh "default" deleted\n'
    )
    assert ("dataplanes", "default", "web-1") not in cp.resources
    assert (
        ok("delete", "mtp", "web-to-backend", "--cp-address", cp_url)
        == 'MeshTrafficPermission "web-to-backend" in mesh "default" deleted\n'
    )
    assert ok("delete", "mesh", "payments", "--cp-address", cp_url) == ('Mesh "payments" deleted\n')
    assert (
        failed("delete", "dataplane", "x", "--cp-address", cp_url)
        == 'Error: dataplane "x" not found in mesh "default"\n'
    )
    assert (
        failed("delete", "meshtrafficpermission", "x", "-m", "payments", "--cp-address", cp_url)
        == 'Error: meshtrafficpermission "x" not found in mesh "payments"\n'
    )


# --- errors -------------------------------------------------------------------------------


def test_unreachable_cp_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (
        ("get", "meshes"),
        ("inspect", "dataplanes"),
        ("delete", "mesh", "x"),
        ("apply", "-f", "-"),
    ):
        err = failed(*args, "--cp-address", url, input='{"type": "Mesh", "name": "x"}')
        assert err.startswith(f"Error: cannot reach the control plane at {url}: "), err
        assert err.count("\n") == 1


def test_bad_address_and_non_api_answers(served_fake: tuple[FakeCP, Served]) -> None:
    assert failed("get", "meshes", "--cp-address", "127.0.0.1:5681") == (
        'Error: --cp-address: "127.0.0.1:5681" is not an http:// or https:// URL\n'
    )

    async def text(request: Request) -> Response:
        return PlainTextResponse("hello", status_code=200 if request.url.path == "/" else 500)

    other = Served(Starlette(routes=[Route("/{p:path}", text)]))
    try:
        err = failed("get", "meshes", "--cp-address", other.url)
        assert err == "Error: hello\n", err
        err = failed("config", "control-planes", "add", "--name", "x", "--address", other.url)
        assert "the answer is not JSON" in err
    finally:
        other.stop()


def test_server_errors_show_the_details(cp: FakeCP, cp_url: str) -> None:
    cp.put_error = _error(500, "Internal error", "an unexpected error occurred")
    err = failed("apply", "-f", "-", "--cp-address", cp_url, input="type: Mesh\nname: m\n")
    assert err == 'Error: Mesh "m": an unexpected error occurred\n'


# --- config control-planes ----------------------------------------------------------------


def test_control_planes_round_trip(cp: FakeCP, cp_url: str, isolated_config: Path) -> None:
    assert ok("config", "control-planes", "list") == "ACTIVE   NAME   ADDRESS\n"
    out = ok("config", "control-planes", "add", "--name", "local", "--address", cp_url)
    assert out == 'added Control Plane "local"\nswitched active Control Plane to "local"\n'
    assert ("GET", "/") in cp.requests
    ok("config", "control-planes", "add", "--name", "other", "--address", "http://10.0.0.1:5681",
       "--no-check")  # fmt: skip
    assert oct(isolated_config.stat().st_mode & 0o777) == "0o600"
    assert yaml.safe_load(isolated_config.read_text()) == {
        "controlPlanes": [
            {"name": "local", "coordinates": {"apiServer": {"url": cp_url}}},
            {"name": "other", "coordinates": {"apiServer": {"url": "http://10.0.0.1:5681"}}},
        ],
        "contexts": [
            {"name": "local", "controlPlane": "local"},
            {"name": "other", "controlPlane": "other"},
        ],
        "currentContext": "other",
    }
    assert ok("config", "control-planes", "list") == (
        f"ACTIVE   NAME    ADDRESS\n"
        f"         local   {cp_url}\n"
        f"*        other   http://10.0.0.1:5681\n"
    )
    assert ok("config", "control-planes", "switch", "--name", "local") == (
        'switched active Control Plane to "local"\n'
    )
    assert ctl_config.load().current == "local"
    # the current control plane is used when --cp-address is not given
    populate(cp)
    assert ok("get", "meshes").splitlines()[1].startswith("default ")
    out = ok("config", "control-planes", "remove", "--name", "local")
    assert out.splitlines()[0] == 'removed Control Plane "local"'
    loaded = ctl_config.load()
    assert [c.name for c in loaded.control_planes] == ["other"] and loaded.current == ""


def test_control_planes_errors(cp: FakeCP, cp_url: str, isolated_config: Path) -> None:
    ok("config", "control-planes", "add", "--name", "local", "--address", cp_url)
    err = failed("config", "control-planes", "add", "--name", "local", "--address", cp_url)
    assert err == 'Error: control plane "local" already exists; use --overwrite to replace it\n'
    ok("config", "control-planes", "add", "--name", "local", "--address", cp_url + "/",
       "--overwrite")  # fmt: skip
    assert ctl_config.load().current_url() == cp_url
    dead = f"http://127.0.0.1:{free_port()}"
    err = failed("config", "control-planes", "add", "--name", "dead", "--address", dead)
    assert err.startswith(f"Error: cannot reach the control plane at {dead}: ")
    assert ctl_config.load().find("dead") is None
    assert failed("config", "control-planes", "switch", "--name", "nope") == (
        'Error: there is no control plane "nope" (known: local)\n'
    )
    assert failed("config", "control-planes", "remove", "--name", "nope") == (
        'Error: there is no control plane "nope" (known: local)\n'
    )
    isolated_config.write_text("controlPlanes: [\n")
    err = failed("config", "control-planes", "list")
    assert err.startswith(f"Error: config file {isolated_config}: invalid YAML")


def test_cp_address_flag_and_env_override_the_config(
    cp: FakeCP, cp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(cp)
    dead = f"http://127.0.0.1:{free_port()}"
    ok("config", "control-planes", "add", "--name", "dead", "--address", dead, "--no-check")
    assert "cannot reach the control plane at " + dead in failed("get", "meshes")
    assert ok("get", "meshes", "--cp-address", cp_url).startswith("NAME")
    monkeypatch.setenv("KUMADP_CP_URL", cp_url)
    assert ok("get", "meshes").startswith("NAME")


def test_default_address_without_config(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ctl_config.resolve_address(None) == "http://127.0.0.1:5681"


def test_token_commands_use_the_current_control_plane(cp: FakeCP, cp_url: str) -> None:
    ok("config", "control-planes", "add", "--name", "local", "--address", cp_url)
    assert ok("generate", "dataplane-token", "--name", "web-1") == "a.b.c\n"
    assert cp.tokens[-1]["name"] == "web-1"
    assert ok("revoke", "dataplane-token", "--jti", "abc") == "revoked token abc\n"
    assert cp.tokens[-1] == {"jti": "abc"}


# --- against the real API app -------------------------------------------------------------


def test_apply_get_delete_against_the_real_api() -> None:
    served = Served(create_app(MemoryStore()))
    try:
        url = served.url
        ok("apply", "-f", "-", "--cp-address", url, input="type: Mesh\nname: default\n")
        out = ok(
            "apply",
            "-f",
            "-",
            "--cp-address",
            url,
            input=yaml.safe_dump(dataplane("default", "a-1", "a")),
        )
        assert out == 'Dataplane "a-1" in mesh "default" created\n'
        body = json.loads(ok("get", "dataplanes", "-o", "json", "--cp-address", url))
        assert [i["name"] for i in body["items"]] == ["a-1"]
        table = ok("get", "dataplanes", "--cp-address", url)
        assert table.splitlines()[1].split()[:3] == [
            "default",
            "a-1",
            "kuma.io/service=a,kuma.io/protocol=http",
        ]
        bad = dataplane("default", "b-1", "b")
        bad["networking"]["inbound"][0]["port"] = 0
        # validated locally: the CP never sees it
        err = failed("apply", "-f", "-", "--cp-address", url, input=yaml.safe_dump(bad))
        assert "networking.inbound[0].port: must be 1-65535" in err
        err = failed(
            "apply", "-f", "-", "--cp-address", url, input=yaml.safe_dump(dataplane("x", "c", "c"))
        )
        assert err.splitlines() == [
            'Error: Dataplane "c" in mesh "x": Resource is not valid',
            'mesh: mesh "x" does not exist',
        ]
        ok("delete", "dataplane", "a-1", "--cp-address", url)
        assert failed("get", "dataplane", "a-1", "--cp-address", url) == (
            'Error: dataplane "a-1" not found in mesh "default"\n'
        )
    finally:
        served.stop()


# --- helpers ------------------------------------------------------------------------------


def test_render_table_alignment() -> None:
    assert tables.render_table(("A", "LONG HEADER", "C"), [["xyz", "1", ""], ["", "22", "z"]]) == (
        "A     LONG HEADER   C\nxyz   1\n      22            z\n"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-3, "0s"), (0, "0s"), (119, "119s"), (120, "2m"), (7199, "119m"), (7200, "2h"),
     (47 * 3600, "47h"), (2 * 86400, "2d"), (400 * 86400, "1y")],
)  # fmt: skip
def test_human_duration(seconds: float, text: str) -> None:
    assert tables.human_duration(seconds) == text


def test_times() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert tables.parse_time("2025-12-31T23:59:48.123456789Z") == datetime(
        2025, 12, 31, 23, 59, 48, 123456, tzinfo=UTC
    )
    assert tables.ago("2025-12-31T23:59:48Z", now) == "12s ago"
    assert tables.ago("garbage", now) == "-"
    assert tables.ago(None, now) == "-"
    assert tables.until("2026-01-01T23:00:00Z", now) == "in 23h"
    assert tables.until("2025-12-31T23:55:00Z", now) == "expired 5m ago"
    assert tables.until("2027-01-01T00:00:00Z", now) == "2027-01-01"
    assert tables.age("2025-12-29T00:00:00+00:00", now) == "3d"


def test_overview_row_is_defensive() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert tables.overview_row({}, now) == ["-", "-", "-", "Offline", "-", "-", "-", "-"]
    odd = {"dataplane": "x", "dataplaneInsight": {"subscriptions": "no", "mTLS": []}}
    assert tables.overview_row(odd, now)[3:] == ["Offline", "-", "-", "-", "-"]
    online = {"dataplaneInsight": {"subscriptions": [{"connectTime": "2025-12-31T23:00:00Z"}]}}
    assert tables.overview_row(online, now)[3:5] == ["Online", "60m ago"]


def test_dataplane_tags() -> None:
    networking = {
        "inbound": [
            {"tags": {"version": "v1", "kuma.io/service": "b"}},
            {"tags": {"kuma.io/service": "a", "version": "v1"}},
        ]
    }
    assert tables.dataplane_tags(networking) == "kuma.io/service=a,kuma.io/service=b,version=v1"
    assert tables.dataplane_tags(None) == "-"


def test_cp_address_before_the_command(cp: FakeCP, cp_url: str) -> None:
    """``kumadp ctl --cp-address URL <command>``, as the contract writes it."""
    populate(cp)
    result = CliRunner().invoke(_cli(), ["ctl", "--cp-address", cp_url, "get", "meshes"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].split()[0] == "default"
    # the command's own option, after it, wins
    args = ["ctl", "--cp-address", "http://127.0.0.1:9", "get", "meshes", "--cp-address", cp_url]
    assert CliRunner().invoke(_cli(), args).exit_code == 0
