"""The CP's API as an attacker sees it: from another network namespace (not loopback), and
from the CP's own host with a foreign ``Host``.

    ns "client" 10.99.N.1  <---- veth ---->  10.99.N.2 ns "cp": kumadp cp run --address 0.0.0.0

Root only (the test creates the namespaces); skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from testkit.netns import Namespace, VethPair, why_not
from testkit.procs import ProcessSet, kumadp_command, wait_until

pytestmark = pytest.mark.e2e

API, HTTPS, DP, DIAG = 15681, 15682, 15678, 15680
CONFIG = "/meshes/default/dataplanes/nobody/_config"


@dataclass
class Attack:
    pair: VethPair
    data_dir: Path

    @property
    def client(self) -> Namespace:
        return self.pair.left

    @property
    def cp(self) -> Namespace:
        return self.pair.right

    def call(
        self,
        ns: Namespace,
        method: str,
        path: str,
        body: object | None = None,
        *,
        token: str | None = None,
        host: str | None = None,
        https: bool = False,
    ) -> tuple[int, str]:
        """(status, body) of a request from ``ns`` to the CP's address (or, from the CP's
        own namespace, to 127.0.0.1)."""
        address = "127.0.0.1" if ns is self.cp else self.cp.address
        scheme, port = ("https", HTTPS) if https else ("http", API)
        args = ["curl", "-sS", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}"]
        args += ["-X", method, f"{scheme}://{address}:{port}{path}"]
        if https:
            args += ["--cacert", str(self.data_dir / "dp-server" / "ca.pem")]
        if body is not None:
            args += ["-H", "content-type: application/json", "--data-binary", json.dumps(body)]
        if token:
            args += ["-H", f"Authorization: Bearer {token}"]
        if host:
            args += ["-H", f"Host: {host}"]
        done = ns.run(*args, check=False)
        assert done.returncode == 0, done.stderr
        text, _, status = done.stdout.rpartition("\n")
        return int(status), text

    def admin_token(self) -> str:
        return (self.data_dir / "admin-user-token").read_text().strip()


@pytest.fixture(scope="module")
def attack() -> Iterator[Attack]:
    reason = why_not(("ip", "curl"))
    if reason is not None:
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix="kdp-security-"))
    procs = ProcessSet(base)
    pair: VethPair | None = None
    try:
        try:
            pair = VethPair.create("client", "cp")
        except AssertionError as exc:
            pytest.skip(f"cannot create network namespaces: {exc}")
        data_dir = base / "cp-data"
        ns_cp = pair.right
        cp = procs.start(
            "cp",
            ns_cp.exec(
                *kumadp_command(
                    "cp", "run", "--address", "0.0.0.0", "--data-dir", str(data_dir),
                    "--api-port", str(API), "--api-https-port", str(HTTPS),
                    "--dp-port", str(DP), "--diagnostics-port", str(DIAG),
                    "--xds-host", ns_cp.address, "--log-level", "debug",
                )
            ),
        )  # fmt: skip
        found = Attack(pair, data_dir)

        def ready() -> bool:
            status, _ = found.call(found.client, "GET", "/meshes/default")
            return status == 200

        wait_until(ready, timeout=30, what="control plane ready", proc=cp)
        yield found
    finally:
        procs.close(timeout=5)
        if pair is not None:
            pair.close()
        shutil.rmtree(base, ignore_errors=True)


REMOTE_WRITES: list[tuple[str, str, object | None]] = [
    ("PUT", "/meshes/default", {"type": "Mesh", "name": "default", "mtls": None}),
    ("PUT", "/meshes/evil", {"type": "Mesh", "name": "evil"}),
    ("DELETE", "/meshes/default", None),
    ("DELETE", "/meshes/default/meshtrafficpermissions/allow-all-default", None),
    (
        "PUT",
        "/meshes/default/dataplanes/evil",
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": "evil",
            "networking": {"address": "10.0.0.1", "inbound": [{"port": 1, "tags": {
                "kuma.io/service": "evil"}}]},
        },
    ),
    ("POST", "/tokens/dataplane", {"mesh": "default"}),
    ("POST", "/tokens/user", {"name": "eve", "groups": ["mesh-system:admin"]}),
    ("POST", "/tokens/zone", {"zone": "zone-a"}),
    ("POST", "/tokens/dataplane/revoke", {"jti": "x"}),
    ("GET", "/meshes/default/dataplanes/x/_config", None),
]  # fmt: skip


def test_remote_writes_without_credentials_are_refused(attack: Attack) -> None:
    for method, path, body in REMOTE_WRITES:
        status, text = attack.call(attack.client, method, path, body)
        assert status in (401, 403), (method, path, status, text)
    # what anonymous callers may do: read what is not secret
    status, text = attack.call(attack.client, "GET", "/meshes")
    assert status == 200 and "default" in text
    status, _ = attack.call(attack.cp, "GET", "/meshes/evil")
    assert status == 404  # nothing was written


def test_an_admin_token_is_accepted_over_http_and_https(attack: Attack) -> None:
    admin = attack.admin_token()
    status, text = attack.call(
        attack.client, "PUT", "/meshes/team-a", {"type": "Mesh", "name": "team-a"}, token=admin
    )
    assert status == 201, text
    status, text = attack.call(attack.client, "DELETE", "/meshes/team-a", token=admin, https=True)
    assert status == 200, text
    status, text = attack.call(attack.client, "GET", "/meshes", https=True)
    assert status == 200  # the HTTPS API with the CP's own certificate


def test_a_read_only_user_reads_but_cannot_write(attack: Attack) -> None:
    status, reader = attack.call(attack.cp, "POST", "/tokens/user", {"name": "bob"})
    assert status == 200
    status, _ = attack.call(attack.client, "GET", "/meshes/default", token=reader)
    assert status == 200
    status, text = attack.call(
        attack.client, "PUT", "/meshes/bob", {"type": "Mesh", "name": "bob"}, token=reader
    )
    assert status == 403 and "is not an admin" in text


def test_expired_revoked_and_forged_tokens_are_refused(attack: Attack) -> None:
    mesh = {"type": "Mesh", "name": "x"}
    status, short = attack.call(
        attack.cp,
        "POST",
        "/tokens/user",
        {"name": "carol", "groups": ["mesh-system:admin"], "validFor": "1s"},
    )
    assert status == 200

    def expired() -> str | None:  # an admin-only read: 404 (no such config) while valid
        status, text = attack.call(attack.client, "GET", CONFIG, token=short)
        assert status in (404, 401), text
        return text if status == 401 else None

    assert "token expired at" in wait_until(expired, timeout=10, what="token expiry")

    _, revoked = attack.call(attack.cp, "POST", "/tokens/user",
                             {"name": "dave", "groups": ["mesh-system:admin"]})  # fmt: skip
    jti = pyjwt.decode(revoked, options={"verify_signature": False})["jti"]
    status, _ = attack.call(attack.cp, "POST", "/tokens/user/revoke", {"jti": jti})
    assert status == 200
    status, text = attack.call(attack.client, "PUT", "/meshes/x", mesh, token=revoked)
    assert status == 401 and "revoked" in text

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = pyjwt.encode(
        {"Name": "mallory", "Groups": ["mesh-system:admin"], "jti": "f", "exp": 4_102_444_800},
        key,
        algorithm="RS256",
        headers={"kid": "1"},
    )
    status, text = attack.call(attack.client, "PUT", "/meshes/x", mesh, token=forged)
    assert status == 401 and "signature does not verify" in text
    none_alg = pyjwt.encode({"Name": "m", "Groups": ["mesh-system:admin"], "jti": "n",
                             "exp": 4_102_444_800}, None, algorithm="none")  # fmt: skip
    status, text = attack.call(attack.client, "PUT", "/meshes/x", mesh, token=none_alg)
    assert status == 401 and "unsupported alg" in text
    status, _ = attack.call(attack.cp, "GET", "/meshes/x")
    assert status == 404


def test_the_service_address_chain_to_the_cp_is_refused_at_the_write(attack: Attack) -> None:
    admin = attack.admin_token()
    evil = {
        "type": "Dataplane",
        "mesh": "default",
        "name": "relay",
        "networking": {
            "address": attack.cp.address,  # a sidecar on the CP's host...
            "inbound": [{"port": 20001, "servicePort": API, "tags": {"kuma.io/service": "r"}}],
        },  # ...forwarding its inbound to 127.0.0.1:<API port>
    }
    status, text = attack.call(
        attack.client, "PUT", "/meshes/default/dataplanes/relay", evil, token=admin
    )
    assert status == 400, text
    cause = json.loads(text)["causes"][0]
    assert cause["field"] == "networking.inbound[0].servicePort"
    assert "is the control plane's API port on its own host" in cause["message"]
    # the same through an agent's registration
    status, token = attack.call(attack.cp, "POST", "/tokens/dataplane",
                                {"mesh": "default", "name": "relay"})  # fmt: skip
    assert status == 200
    bootstrap = {
        "mesh": "default",
        "name": "relay",
        "dataplaneToken": token,
        "dataplaneResource": json.dumps(evil),
    }
    status, text = attack.call(attack.client, "POST", "/bootstrap", bootstrap)
    assert 400 <= status < 500 and "control plane's API port" in text, text
    status, _ = attack.call(attack.cp, "GET", "/meshes/default/dataplanes/relay")
    assert status == 404


def test_loopback_with_a_foreign_host_is_not_admin(attack: Attack) -> None:
    body = {"type": "Mesh", "name": "rebind"}
    for host in ("attacker.example", f"{attack.cp.address}:{API}", "web.mesh"):
        status, text = attack.call(attack.cp, "PUT", "/meshes/rebind", body, host=host)
        assert status == 401, (host, text)
    status, _ = attack.call(attack.cp, "PUT", "/meshes/rebind", body)  # a real loopback admin
    assert status == 201
    status, _ = attack.call(attack.cp, "DELETE", "/meshes/rebind")
    assert status == 200


def test_every_refusal_and_write_is_logged_with_who(attack: Attack) -> None:
    """Its own refused request, write and token (it needs no other test of the module)."""
    mesh = {"type": "Mesh", "name": "audited"}
    status, _ = attack.call(attack.client, "PUT", "/meshes/audited", mesh)
    assert status == 401
    status, text = attack.call(
        attack.client, "PUT", "/meshes/audited", mesh, token=attack.admin_token()
    )
    assert status == 201, text
    status, _ = attack.call(attack.cp, "POST", "/tokens/user", {"name": "auditor"})
    assert status == 200
    status, _ = attack.call(attack.cp, "DELETE", "/meshes/audited")
    assert status == 200
    expected = [
        f"PUT /meshes/audited refused (401) for an anonymous caller from {attack.client.address}",
        f'PUT /meshes/audited -> 201 by user "mesh-system:admin" from {attack.client.address}',
        'issued a user token for "auditor" in groups [] to localhost admin',
        "DELETE /meshes/audited -> 200 by localhost admin",
    ]

    def logged() -> list[str] | None:
        log = (attack.data_dir.parent / "cp.log").read_text(errors="replace")
        missing = [line for line in expected if line not in log]
        return expected if not missing else None

    wait_until(logged, timeout=10, what="the audit lines in the CP's log")


def test_ctl_with_a_user_token_from_another_host(attack: Attack) -> None:
    config = attack.data_dir.parent / "ctl-config.yaml"
    url = f"http://{attack.cp.address}:{API}"

    def ctl(*args: str, config_file: Path = config) -> subprocess.CompletedProcess[str]:
        command = ["env", f"KUMADP_CONFIG={config_file}", *kumadp_command("ctl", *args)]
        return attack.client.run(*command, check=False, timeout=60)

    anonymous = ctl("generate", "zone-token", "--zone", "zone-a", "--cp-address", url)
    assert anonymous.returncode == 1 and "needs an admin" in anonymous.stderr
    added = ctl(
        "config", "control-planes", "add", "--name", "remote", "--address", url,
        "--auth-type", "tokens", "--auth-conf", f"token={attack.admin_token()}",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert config.stat().st_mode & 0o777 == 0o600  # it holds a token
    zone = ctl("generate", "zone-token", "--zone", "zone-a", "--scope", "cp", "--valid-for", "1h")
    assert zone.returncode == 0, zone.stderr
    claims = pyjwt.decode(zone.stdout.strip(), options={"verify_signature": False})
    assert claims["Zone"] == "zone-a" and claims["Scope"] == ["cp"]
    user = ctl("generate", "user-token", "--name", "erin", "--group", "team-a")
    assert user.returncode == 0, user.stderr
    mesh = attack.data_dir.parent / "mesh.yaml"
    mesh.write_text("type: Mesh\nname: from-ctl\n")
    applied = ctl("apply", "-f", str(mesh))
    assert applied.returncode == 0, applied.stderr
    deleted = ctl("delete", "mesh", "from-ctl")
    assert deleted.returncode == 0, deleted.stderr
    # over HTTPS, with the CP's CA
    https = attack.data_dir.parent / "ctl-https.yaml"
    added = ctl(
        "config", "control-planes", "add", "--name", "tls",
        "--address", f"https://{attack.cp.address}:{HTTPS}",
        "--ca-cert-file", str(attack.data_dir / "dp-server" / "ca.pem"),
        "--auth-type", "tokens", "--auth-conf", f"token={user.stdout.strip()}",
        config_file=https,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    listed = ctl("get", "meshes", config_file=https)
    assert listed.returncode == 0 and "default" in listed.stdout, listed.stderr
    refused = ctl("delete", "mesh", "default", config_file=https)
    assert refused.returncode == 1 and 'user "erin" is not an admin' in refused.stderr
