"""What a Kuma user writes is taken as Kuma takes it (issue 16, item 2): output-only fields
accepted and ignored, labels kept, Kuma fields kumadp does not implement accepted with a
warning (in the API's answer and on the CLI's stderr) unless ignoring them would change
traffic or security, typos refused with a suggestion; ``kumactl get -o yaml`` output applies
unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kumadp.cp.api import create_app
from kumadp.cp.defaults import ensure_default_mesh
from kumadp.cp.store import MemoryStore
from kumadp.resources.registry import REGISTRY
from tests.unit.test_ctl import Served, run

KUMA = Path(__file__).parent / "testdata" / "kuma"
BASE_URL = "http://127.0.0.1:5681"


def kumactl_output(kind: str) -> dict[str, Any]:
    doc = yaml.safe_load((KUMA / f"kumactl-get-{kind}.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.fixture
async def store() -> MemoryStore:
    store = MemoryStore()
    await ensure_default_mesh(store)
    return store


@pytest.fixture
async def client(store: MemoryStore) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(store))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        yield c


def path_of(doc: dict[str, Any]) -> str:
    kind = REGISTRY[doc["type"]]
    if not kind.mesh_scoped:
        return f"/{kind.plural}/{doc['name']}"
    return f"/meshes/{doc['mesh']}/{kind.plural}/{doc['name']}"


# every kind kumadp serves that kumactl prints (testdata/kuma/kumactl-get-<kind>.yaml)
KINDS = [
    "mesh",
    "dataplane",
    "meshtrafficpermission",
    "meshtimeout",
    "meshretry",
    "meshcircuitbreaker",
    "meshhealthcheck",
    "meshloadbalancingstrategy",
    "zone",
]


@pytest.mark.parametrize("kind", KINDS)
async def test_kumactl_yaml_output_applies_unchanged(client: httpx.AsyncClient, kind: str) -> None:
    """The file's own bytes (Kuma's key order and quoting, its comments), not a re-dump."""
    doc = kumactl_output(kind)
    body = (KUMA / f"kumactl-get-{kind}.yaml").read_bytes()
    response = await client.put(
        path_of(doc), content=body, headers={"content-type": "application/yaml"}
    )
    assert response.status_code in (200, 201), response.text
    assert "warning" not in response.headers
    assert response.json() == {}
    stored = (await client.get(path_of(doc))).json()
    assert stored.get("labels") == doc.get("labels")  # kept
    assert stored["creationTime"] != doc["creationTime"]  # output-only: the CP's own
    assert stored.get("spec", {}) == doc.get("spec", {})  # as written: nothing dropped
    if kind == "zone":
        assert stored["enabled"] is True


@pytest.mark.parametrize("kind", KINDS)
def test_kumactl_yaml_output_applies_unchanged_with_ctl(kind: str) -> None:
    """``kumadp ctl apply -f <the file>`` as kumactl's: created, no warning."""
    store = MemoryStore()
    served = Served(create_app(store))
    try:
        doc = kumactl_output(kind)
        if kind not in ("mesh", "zone"):
            created = run(
                "apply", "-f", "-", "--cp-address", served.url, input="type: Mesh\nname: default\n"
            )
            assert created.exit_code == 0, created.output
        path = KUMA / f"kumactl-get-{kind}.yaml"
        result = run("apply", "-f", str(path), "--cp-address", served.url)
        assert result.exit_code == 0, result.output
        in_mesh = f' in mesh "{doc["mesh"]}"' if "mesh" in doc else ""
        assert result.stdout == f'{doc["type"]} "{doc["name"]}"{in_mesh} created\n'
        assert result.stderr == ""
    finally:
        served.stop()


async def test_an_ignored_kuma_field_is_accepted_with_a_warning(
    client: httpx.AsyncClient,
) -> None:
    doc = {
        "type": "Mesh",
        "name": "observed",
        "tracing": {"backends": [{"name": "zipkin", "type": "zipkin"}]},
        "logging": {"backends": []},
    }
    response = await client.put("/meshes/observed", json=doc)
    assert response.status_code == 201, response.text
    assert response.json() == {
        "warnings": [
            "tracing: ignored: no tracing is configured",
            "logging: ignored: no access logs are configured",
        ]
    }
    assert response.headers.get_list("warning") == [
        '299 kumadp "tracing: ignored: no tracing is configured"',
        '299 kumadp "logging: ignored: no access logs are configured"',
    ]
    stored = (await client.get("/meshes/observed")).json()
    assert "tracing" not in stored


async def test_a_kuma_field_that_changes_traffic_is_refused(client: httpx.AsyncClient) -> None:
    doc = {"type": "Mesh", "name": "m", "constraints": {"dataplaneProxy": {}}}
    response = await client.put("/meshes/m", json=doc)
    assert response.status_code == 400
    assert response.json()["details"] == "constraints: not supported yet by kumadp"


async def test_a_typo_is_refused_with_a_suggestion(client: httpx.AsyncClient) -> None:
    response = await client.put("/meshes/m", json={"type": "Mesh", "name": "m", "mtsl": {}})
    assert response.status_code == 400
    assert response.json()["details"] == 'mtsl: unknown field (did you mean "mtls"?)'


async def test_skip_creating_initial_policies(client: httpx.AsyncClient) -> None:
    doc = {"type": "Mesh", "name": "bare", "skipCreatingInitialPolicies": ["*"]}
    assert (await client.put("/meshes/bare", json=doc)).status_code == 201
    listed = (await client.get("/meshes/bare/meshtrafficpermissions")).json()
    assert listed["total"] == 0
    assert (await client.put("/meshes/full", json={"type": "Mesh"})).status_code == 201
    listed = (await client.get("/meshes/full/meshtrafficpermissions")).json()
    assert [i["name"] for i in listed["items"]] == ["allow-all-full"]


def test_ctl_apply_prints_warnings_on_stderr_and_applies() -> None:
    store = MemoryStore()
    served = Served(create_app(store))
    try:
        doc = "type: Mesh\nname: observed\nmetrics: {enabledBackend: prom}\n"
        result = run("apply", "-f", "-", "--cp-address", served.url, input=doc)
        assert result.exit_code == 0, result.output
        assert result.stdout == 'Mesh "observed" created\n'
        assert result.stderr == (
            'Warning: Mesh "observed": metrics: ignored: kumadp\'s agent serves the merged '
            "metrics on its --metrics-port\n"
        )
    finally:
        served.stop()


def test_the_agent_warns_about_ignored_fields_of_its_dataplane(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from kumadp.agent.identity import load_identity

    doc = kumactl_output("dataplane")
    doc["networking"]["inbound"][0]["serviceProbe"] = {"tcp": {}}
    path = tmp_path / "dp.yaml"
    path.write_text(yaml.safe_dump(doc))
    with caplog.at_level("WARNING"):
        identity = load_identity(dataplane_file=str(path))
    assert identity.name == "backend-1"
    assert identity.resource is not None and identity.resource["kri"] == doc["kri"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: networking.inbound[0].serviceProbe: ignored: no probe runs; the inbound "
        "counts as healthy while its proxy is online"
    ]
