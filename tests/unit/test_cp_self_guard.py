"""A dataplane cannot be pointed at the control plane's own services (SelfGuard), at the API
and at bootstrap."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from kumadp.cp.bootstrap import BootstrapError
from kumadp.cp.runtime.config import ControlPlaneConfig
from kumadp.cp.runtime.control_plane import ControlPlane
from kumadp.cp.runtime.servers import api_app
from kumadp.cp.self_guard import SelfGuard
from kumadp.cp.store import MemoryStore
from kumadp.resources import ValidationError, parse_dataplane

HOST_IP = "10.20.30.40"  # "this host's" address in these tests
GUARD = SelfGuard(
    {5681: "API", 5682: "HTTPS API", 5678: "DP server"},
    frozenset({ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address(HOST_IP)}),
)


def dp(dp_address: str = "127.0.0.1", **inbound: Any) -> Any:
    return parse_dataplane(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": "web-1",
            "networking": {
                "address": dp_address,
                "inbound": [{"port": 10001, "tags": {"kuma.io/service": "web"}, **inbound}],
            },
        }
    )


def problems(dataplane: Any) -> list[str]:
    return [str(e) for e in GUARD.problems(dataplane)]


def test_ordinary_dataplanes_pass() -> None:
    assert problems(dp(servicePort=8080)) == []
    assert problems(dp(HOST_IP, servicePort=8080)) == []
    # another host's own 5681 is not the CP's
    assert problems(dp("10.0.0.9", servicePort=5681)) == []


@pytest.mark.parametrize(
    ("address", "inbound", "path"),
    [
        ("127.0.0.1", {"servicePort": 5681}, "networking.inbound[0].servicePort"),
        (HOST_IP, {"servicePort": 5681}, "networking.inbound[0].servicePort"),
        (HOST_IP, {"servicePort": 5678, "serviceAddress": "127.0.0.2"}, ".servicePort"),
        ("10.0.0.9", {"servicePort": 5682, "serviceAddress": HOST_IP}, ".servicePort"),
        ("127.0.0.1", {"port": 5681, "servicePort": 8080}, "networking.inbound[0].port"),
        (HOST_IP, {"port": 5678, "servicePort": 8080}, "networking.inbound[0].port"),
    ],
)
def test_the_cp_ports_on_its_host_are_refused(
    address: str, inbound: dict[str, Any], path: str
) -> None:
    [problem] = problems(dp(address, **inbound))
    assert path in problem and "control plane" in problem


def test_a_loopback_endpoint_the_dataplane_does_not_own() -> None:
    [problem] = problems(dp("10.0.0.9", address="127.0.0.5", servicePort=8080))
    assert problem.startswith("networking.inbound[0].address: 127.0.0.5 is a loopback address")
    assert problems(dp("127.0.0.1", address="127.0.0.5", servicePort=8080)) == []


def test_check_raises_with_every_field() -> None:
    with pytest.raises(ValidationError) as err:
        GUARD.check(dp(port=5681, servicePort=5682))
    assert len(err.value.errors) == 2


@pytest.fixture
async def cp(tmp_path: Path) -> Any:
    config = ControlPlaneConfig(
        store="memory", data_dir=tmp_path, dp_server_tls=False, api_port=15681, dp_port=15678
    )
    store = MemoryStore()
    plane = ControlPlane(config, store)
    from kumadp.cp.defaults import ensure_default_mesh

    await ensure_default_mesh(store)
    yield plane
    plane.tokens.close()
    plane.zone_tokens.close()
    plane.user_tokens.close()
    await store.close()


async def test_the_api_refuses_it_with_the_field(cp: ControlPlane) -> None:
    doc = dp(servicePort=15681).to_dict()
    transport = httpx.ASGITransport(app=api_app(cp))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        r = await c.put("/meshes/default/dataplanes/web-1", json=doc)
    assert r.status_code == 400, r.text
    [cause] = r.json()["causes"]
    assert cause["field"] == "networking.inbound[0].servicePort"
    assert cause["message"].startswith("15681 is the control plane's API port on its own host")
    assert await cp.store.get("Dataplane", "default", "web-1") is None


async def test_bootstrap_refuses_it(cp: ControlPlane) -> None:
    service = cp.bootstrap
    body = {
        "mesh": "default",
        "name": "web-1",
        "dataplaneResource": json.dumps(dp(servicePort=15678).to_dict()),
    }
    with pytest.raises(BootstrapError) as err:
        await service.handle(body, "127.0.0.1")
    assert "networking.inbound[0].servicePort: 15678 is the control plane's DP server" in str(
        err.value
    )
    assert await cp.store.get("Dataplane", "default", "web-1") is None
