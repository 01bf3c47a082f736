"""Local checks (identity, token), the work dir, and the CP channel's bootstrap parsing."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from kumadp.agent.cp_channel import ads_address_from_bootstrap, dp_server_from_bootstrap, leave
from kumadp.agent.errors import ConfigError
from kumadp.agent.identity import check_token, load_identity, load_token
from kumadp.agent.workdir import work_dir, write_private

HEADER = base64.urlsafe_b64encode(b'{"alg":"RS256"}').decode().rstrip("=")
TOKEN = f"{HEADER}.e30.c2ln"
DP = """\
type: Dataplane
mesh: demo
name: web-1
networking:
  address: 127.0.0.1
  admin: {port: 9911}
  inbound:
    - port: 18080
      servicePort: 8080
      tags: {kuma.io/service: web}
"""

ZI = """\
type: ZoneIngress
name: zi-1
networking: {address: 10.0.0.1, port: 10001, advertisedAddress: 203.0.113.1, advertisedPort: 10001}
"""


def test_identity_from_resource_and_flags() -> None:
    identity = load_identity(dataplane_inline=DP)
    assert (identity.mesh, identity.name, identity.admin_port) == ("demo", "web-1", 9911)
    assert identity.resource is not None and identity.resource["name"] == "web-1"
    overridden = load_identity(dataplane_inline=DP, admin_port=19000)
    assert overridden.admin_port == 19000
    assert overridden.resource is not None
    assert overridden.resource["networking"]["admin"] == {"port": 19000}
    by_name = load_identity(name="web-2")
    assert (by_name.mesh, by_name.name, by_name.resource) == ("default", "web-2", None)


def test_zone_proxy_identity() -> None:
    ingress = load_identity(dataplane_inline=ZI, proxy_type="ingress", admin_port=9955)
    assert (ingress.mesh, ingress.name, ingress.node_id) == ("", "zi-1", ".zi-1")
    assert ingress.is_zone_proxy and ingress.dataplane is None and ingress.admin_port == 9955
    assert ingress.resource is not None and ingress.resource["networking"]["admin"]["port"] == 9955
    egress = load_identity(
        dataplane_inline="type: ZoneEgress\nname: ze-1\nnetworking: {address: 10.0.0.1, port: 1}",
        proxy_type="egress",
    )
    assert egress.zone_proxy is not None and egress.zone_proxy.type == "ZoneEgress"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataplane_inline": DP, "name": "other"}, "--name other does not match"),
        ({"dataplane_inline": DP, "dataplane_file": "x"}, "not both"),
        ({"name": "x", "variables": ["a=1"]}, "--dataplane-var needs"),
        ({"name": "x", "proxy_type": "egress"}, "--proxy-type egress: give its ZoneEgress"),
        ({"dataplane_inline": DP, "proxy_type": "ingress"}, 'must be "ZoneIngress"'),
        (
            {"dataplane_inline": ZI.replace("10001", "0"), "proxy_type": "ingress"},
            "--dataplane: networking.port: must be 1-65535",
        ),
        ({"dataplane_inline": ZI, "proxy_type": "ingress", "name": "zi-2"}, "--name zi-2"),
        ({"name": "x", "proxy_type": "gateway"}, "must be one of"),
        ({"name": "x", "admin_port": 70000}, "--admin-port: must be 1-65535"),
        ({"dataplane_inline": DP.replace("18080", "0")}, "--dataplane: networking.inbound[0]"),
    ],
)
def test_identity_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_identity(**kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_token(tmp_path: Path) -> None:
    file = tmp_path / "token"
    file.write_text(TOKEN + "\n")
    assert load_token(None, str(file)) == (TOKEN, str(file))
    assert load_token(TOKEN, None) == (TOKEN, "")
    assert load_token(None, None) == ("", "")
    for bad, reason in [("", "empty"), ("a.b", "not a JWT"), (f"{TOKEN}\n{TOKEN}", "one line"),
                        ("!!!.e30.x", "not a JWT")]:  # fmt: skip
        with pytest.raises(ConfigError, match=reason):
            check_token(bad, "--dataplane-token")


def test_temporary_work_dir_is_0700_and_removed() -> None:
    with work_dir(None) as wd:
        assert stat.S_IMODE(wd.stat().st_mode) == 0o700
        write_private(wd / "bootstrap.yaml", b"x")
        assert stat.S_IMODE((wd / "bootstrap.yaml").stat().st_mode) == 0o600
    assert not wd.exists()


def test_given_work_dir_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    with work_dir(str(target)) as wd:
        assert wd == target and wd.is_dir()
        assert stat.S_IMODE(wd.stat().st_mode) == 0o700
    assert target.is_dir()


def test_a_work_dir_others_may_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ConfigError, match=r"writable by other users \(mode 777\); give a priv"):
        with work_dir(str(shared)):
            pass


def test_a_dataplane_file_is_read_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    started = time.perf_counter()
    with pytest.raises(ConfigError, match="/dev/zero is larger than 1048576 bytes"):
        load_identity(dataplane_file="/dev/zero")
    assert time.perf_counter() - started < 1
    monkeypatch.setenv("KUMADP_DATAPLANE_FILE_MAX_BYTES", "10")
    with pytest.raises(ConfigError, match="larger than 10 bytes"):
        load_identity(dataplane_file="/dev/zero")


def test_a_deeply_nested_dataplane_file_is_one_line_error(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("networking: " + "[" * 100_000)
    with pytest.raises(ConfigError) as err:
        load_identity(dataplane_file=str(deep))
    assert "nesting deeper than 64 levels" in str(err.value)
    assert "\n" not in str(err.value)


BOOTSTRAP = b"""
static_resources:
  clusters:
    - name: other
    - name: ads_cluster
      load_assignment:
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: {address: cp.example, port_value: 5678}
"""


def test_ads_address_from_bootstrap() -> None:
    assert ads_address_from_bootstrap(BOOTSTRAP) == "cp.example:5678"
    server = dp_server_from_bootstrap(BOOTSTRAP)
    assert server is not None and not server.tls
    assert ads_address_from_bootstrap(b"node: {}") is None
    assert ads_address_from_bootstrap(b": not yaml [") is None


def test_tls_ads_cluster() -> None:
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode()
    tls = (
        "      transport_socket:\n"
        "        name: envoy.transport_sockets.tls\n"
        "        typed_config:\n"
        "          sni: cp.example\n"
        "          common_tls_context:\n"
        f"            validation_context: {{trusted_ca: {{inline_bytes: {ca}}}}}\n"
    )
    server = dp_server_from_bootstrap(BOOTSTRAP + tls.encode())
    assert server is not None and server.tls
    assert server.sni == "cp.example"
    assert server.root_ca == b"-----BEGIN CERTIFICATE-----\n"


async def test_leave_never_raises(unused_tcp_port: int) -> None:
    assert not await leave(f"127.0.0.1:{unused_tcp_port}", "m", "n", "test", timeout=0.5)
