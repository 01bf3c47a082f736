from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kumadp.cp.api.bootstrap_route import STATUS
from kumadp.cp.bootstrap import BootstrapError, BootstrapParams, BootstrapService
from kumadp.cp.defaults import ensure_default_mesh
from kumadp.cp.registration import LIFECYCLE_LABEL, DataplaneRegistry
from kumadp.cp.store.memory import MemoryStore
from kumadp.resources.model import DATAPLANE_TYPE
from tests.unit.test_wire_bootstrap import KUMA_DP_BODY

DATAPLANE = {
    "type": "Dataplane",
    "mesh": "default",
    "name": "web-1",
    "networking": {
        "address": "127.0.0.1",
        "inbound": [{"port": 20001, "servicePort": 8080, "tags": {"kuma.io/service": "web"}}],
    },
}


async def _service() -> tuple[BootstrapService, MemoryStore, DataplaneRegistry]:
    store = MemoryStore()
    await ensure_default_mesh(store)
    lifecycle = DataplaneRegistry(store)
    return BootstrapService(store, BootstrapParams(xds_port=5678), lifecycle), store, lifecycle


def _request(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "mesh": "default",
        "name": "web-1",
        "proxyType": "dataplane",
        "dataplaneResource": json.dumps(DATAPLANE),
        "dataplaneToken": "",
        "readinessPort": 9902,
        "dnsPort": 15053,
        "version": {"kumaDp": {"version": "0.1.0"}},
    }
    body.update(overrides)
    return body


async def test_bootstrap_registers_the_dataplane_and_renders_envoy_config() -> None:
    service, store, lifecycle = await _service()
    resp = await service.handle(_request(), "cp.example")
    bootstrap = yaml.safe_load(base64.b64decode(resp["bootstrap"]))
    assert bootstrap["node"]["id"] == "default.web-1"
    assert bootstrap["node"]["cluster"] == "web"
    assert bootstrap["node"]["metadata"]["dataplane.readinessReporter.port"] == "9902"
    ads = bootstrap["static_resources"]["clusters"][0]
    address = ads["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address["socket_address"] == {"address": "cp.example", "port_value": 5678}
    assert resp["kumaSidecarConfiguration"]["networking"] == {"address": "127.0.0.1"}
    stored = await store.get(DATAPLANE_TYPE, "default", "web-1")
    assert stored is not None and stored.spec["labels"][LIFECYCLE_LABEL] == "agent"
    assert lifecycle.is_pending(("default", "web-1"))


async def test_token_goes_into_ads_metadata() -> None:
    service, _, _ = await _service()
    resp = await service.handle(_request(dataplaneToken="abc.def.ghi"), "h")
    bootstrap = yaml.safe_load(base64.b64decode(resp["bootstrap"]))
    grpc_service = bootstrap["dynamic_resources"]["ads_config"]["grpc_services"][0]
    assert grpc_service["initial_metadata"] == [{"key": "authorization", "value": "abc.def.ghi"}]


@pytest.mark.parametrize(
    ("overrides", "status", "fragment"),
    [
        ({"dataplaneResource": "{nope"}, 422, "dataplaneResource: not valid JSON"),
        (
            {
                "dataplaneResource": json.dumps(
                    {**DATAPLANE, "networking": {"address": "bad host!"}}
                )
            },
            422,
            "networking.address",
        ),
        ({"name": "other"}, 422, 'name: "other" does not match'),
        ({"proxyType": "gateway"}, 422, "proxyType: must be one of"),
        ({"dataplaneResource": "", "name": "unknown-1"}, 404, ""),
        ({"mesh": 5}, 400, "mesh: must be a string"),
        ({"readinessPort": 70000}, 422, "readinessPort"),
    ],
)
async def test_bad_requests_get_a_specific_error(
    overrides: dict[str, Any], status: int, fragment: str
) -> None:
    service, store, _ = await _service()
    with pytest.raises(BootstrapError) as info:
        await service.handle(_request(**overrides), "h")
    assert STATUS[info.value.kind] == status
    assert fragment in info.value.message
    assert await store.list(DATAPLANE_TYPE) == []


async def test_unknown_mesh_is_rejected() -> None:
    service, _, _ = await _service()
    doc = {**DATAPLANE, "mesh": "payments"}
    with pytest.raises(BootstrapError, match='mesh "payments" does not exist'):
        await service.handle(_request(mesh="payments", dataplaneResource=json.dumps(doc)), "h")


@pytest.mark.skipif(shutil.which("envoy") is None, reason="no envoy binary on PATH")
async def test_rendered_bootstrap_is_valid_for_envoy(tmp_path: Path) -> None:
    service, _, _ = await _service()
    resp = await service.handle(_request(dataplaneToken="t"), "127.0.0.1")
    path = tmp_path / "bootstrap.yaml"
    path.write_bytes(base64.b64decode(resp["bootstrap"]))
    result = subprocess.run(  # noqa: ASYNC221 - a one-off check, nothing else runs
        ["envoy", "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_a_kuma_dp_request_is_read_through_the_contract() -> None:
    service, _, _ = await _service()
    body = {**KUMA_DP_BODY, "dataplaneResource": json.dumps(DATAPLANE), "dataplaneToken": ""}
    resp = await service.handle(body, "h")
    bootstrap = yaml.safe_load(base64.b64decode(resp["bootstrap"]))
    metadata = bootstrap["node"]["metadata"]
    sent = {k: v for k, v in KUMA_DP_BODY["version"].items() if k != "future"}
    assert metadata["version"] == sent  # what kumadp does not know is not passed on
    assert metadata["features"] == KUMA_DP_BODY["features"]
    assert metadata["dataplane.dns.port"] == "15053"
    sds = next(c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "sds_cluster")
    assert "/tmp/kuma-dp/sds.sock" in json.dumps(sds)
    assert resp["kumaSidecarConfiguration"] == {
        "networking": {"address": "127.0.0.1"},
        "metrics": {"aggregate": []},
    }
