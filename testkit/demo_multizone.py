"""``scripts/demo --multizone``: a global control plane and two zone control planes (own data
dirs and ports), a service in each zone, a mesh with mTLS and a permission applied on the
global CP; ``kumadp ctl get zones``; the certificate chain a zone's dataplane presents
(leaf -> that zone's intermediate -> the mesh root). Everything runs on 127.0.0.1 from a
temporary directory and is stopped on exit or Ctrl-C.
"""

from __future__ import annotations

import base64
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from kumadp.cp.kds.trust import presented_chain
from testkit.demo import BOLD, DIM, GREEN, RED, _style, info, step
from testkit.mesh import Agent, ControlPlane, MeshEnv
from testkit.multizone import MTLS, permission, start_global, start_zone
from testkit.procs import kumadp_command, wait_until

MESH = {
    "type": "Mesh",
    "name": "default",
    "mtls": MTLS,
}


def ctl(cp: ControlPlane, *args: str) -> str:
    done = subprocess.run(
        kumadp_command("ctl", *args, "--cp-address", cp.url),
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return done.stdout if done.returncode == 0 else done.stderr


def show(text: str) -> None:
    for line in text.rstrip().splitlines():
        info(_style(line, DIM) if not line.strip() else line)


def call(port: int) -> str:
    try:
        resp = httpx.get(f"http://127.0.0.1:{port}/hello", timeout=5)
    except httpx.HTTPError as exc:
        return _style(f"failed ({type(exc).__name__})", RED)
    if resp.status_code != 200:
        return _style(f"{resp.status_code}", RED)
    return _style("200", GREEN) + f" answered by {resp.json()['upstream']['instance']}"


def answered(port: int, ok: bool, times: int = 3) -> Callable[[], bool]:
    """A check for ``wait_until``: web's call answered 200 (``ok``) or refused, ``times`` in
    a row (after a policy change, connections already open finish on the old listener while
    Envoy drains it, so one answer is not yet the new state)."""
    return lambda: all(("200" in call(port)) == ok for _ in range(times))


def describe(cert: x509.Certificate) -> str:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    spiffe = [u for u in uris if u.startswith("spiffe://")]
    subject = cert.subject.rfc4514_string() or "(empty subject)"
    return f"{subject}  {', '.join(spiffe)}  serial {cert.serial_number:x}"[:150]


def show_chain(agent: Agent, root_pem: str) -> bool:
    assert agent.inbound_port is not None
    pem, _ = presented_chain("127.0.0.1", agent.inbound_port)
    chain = x509.load_pem_x509_certificates(pem)
    root = x509.load_pem_x509_certificate(root_pem.encode())
    leaf, intermediate = chain[0], chain[1]
    ok = True
    for label, cert, issuer in (
        ("leaf        ", leaf, intermediate),
        ("intermediate", intermediate, root),
        ("root        ", root, root),
    ):
        try:
            cert.verify_directly_issued_by(issuer)
            mark = _style("signed by the next one", GREEN) if cert is not root else "self-signed"
        except (ValueError, TypeError, InvalidSignature):
            mark, ok = _style("NOT signed by the next one", RED), False
        info(f"{label}  {describe(cert)}")
        info(f"              {mark}")
    return ok


def trusted_root(agent: Agent) -> str:
    """The CA the agent's Envoy verifies peers with (its SDS validation context)."""
    dump = httpx.get(
        f"http://127.0.0.1:{agent.admin_port}/config_dump",
        params={"resource": "dynamic_active_secrets"},
        timeout=5,
    ).json()
    for config in dump.get("configs", []):
        secret = config.get("secret", {})
        if secret.get("name", "").startswith("mesh_ca:secret:"):
            inline = secret["validation_context"]["trusted_ca"]["inline_bytes"]
            return base64.b64decode(inline).decode()
    raise LookupError("no mesh CA in Envoy's secrets")


def run_multizone_demo(tmp: Path, keep_running: bool) -> int:
    env = MeshEnv(tmp)
    try:
        step("starting the global control plane (meshes and policies are written here)")
        started = time.perf_counter()
        global_cp = start_global(env)
        info(
            f"API {global_cp.url}   KDS grpcs://127.0.0.1:{global_cp.kds_port} (TLS)   "
            f"({time.perf_counter() - started:.1f}s)"
        )

        zones: dict[str, ControlPlane] = {}
        for name in ("zone-a", "zone-b"):
            step(f"starting zone CP {name} with a zone token (scope cp) from the global CP")
            info(
                _style(
                    f"kumadp ctl generate zone-token --zone {name} --scope cp > {name}.token; "
                    f"kumadp cp run --mode zone --zone {name} --kds-global-address "
                    f"grpcs://GLOBAL:5685 --kds-ca-file kds-ca.pem --kds-token-file "
                    f"{name}.token",
                    DIM,
                )
            )
            zones[name] = start_zone(env, name, global_cp)
            info(f"API {zones[name].url}   DP server 127.0.0.1:{zones[name].dp_port}")

        step("on the global CP: mesh default with mTLS, and a permission web -> backend")
        httpx.put(f"{global_cp.url}/meshes/default", json=MESH, timeout=5).raise_for_status()
        path = "/meshes/default/meshtrafficpermissions/web-to-backend"
        httpx.put(global_cp.url + path, json=permission("Allow"), timeout=5).raise_for_status()
        info("each zone CP makes its own intermediate CA key and has the global CP sign it:")
        info("the mesh's root key never leaves the global CP")

        ports: dict[str, int] = {}
        backends: dict[str, Agent] = {}
        for n, (name, zone) in enumerate(zones.items(), start=1):
            step(f"{name}: backend-{n} and web-{n} (web calls backend through both sidecars)")
            backends[name], _ = env.start_service(f"backend-{n}", "backend", cp=zone)
            _, ports[name] = env.start_service(
                f"web-{n}", "web", upstream_service="backend", cp=zone
            )
            wait_until(answered(ports[name], True), what=f"traffic in {name}")
            info(f"web-{n} -> backend: {call(ports[name])}")

        wait_until(
            lambda: ctl(global_cp, "inspect", "dataplanes").count(" Online ") == 2 * len(zones),
            what="every zone's dataplanes Online at the global CP",
            timeout=20,
        )
        step("kumadp ctl get zones (on the global CP)")
        show(ctl(global_cp, "get", "zones"))
        step("kumadp ctl inspect dataplanes (on the global CP: every zone's dataplanes)")
        show(ctl(global_cp, "inspect", "dataplanes"))

        chains_ok = True
        for name in zones:
            step(f"the certificate chain {backends[name].name} in {name} presents")
            chains_ok &= show_chain(backends[name], trusted_root(backends[name]))

        step("the permission changed to Deny on the global CP: traffic stops in every zone")
        httpx.put(global_cp.url + path, json=permission("Deny"), timeout=5).raise_for_status()
        for name, port in ports.items():
            wait_until(answered(port, False), what=f"Deny in {name}", timeout=10)
            info(f"{name}: web -> backend: {call(port)}")
        httpx.put(global_cp.url + path, json=permission("Allow"), timeout=5).raise_for_status()
        for name, port in ports.items():
            wait_until(answered(port, True), what=f"Allow in {name}", timeout=10)
            info(f"{name}: Allow again: {call(port)}")

        if keep_running:
            step("everything is still running; press Ctrl-C to stop")
            while True:
                time.sleep(3600)
        return 0 if chains_ok else 1
    except KeyboardInterrupt:
        return 130
    finally:
        step("stopping everything")
        env.close()


__all__ = ["BOLD", "run_multizone_demo"]
