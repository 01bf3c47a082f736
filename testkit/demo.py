"""``scripts/demo``: a control plane, two apps and their two Envoy sidecars, with traffic.

Everything runs on free 127.0.0.1 ports from a temporary directory and is stopped on exit
or Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx

from testkit.mesh import MeshEnv
from testkit.procs import cleanup_on_signals, wait_until

BOLD, DIM, GREEN, RED, RESET = "\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m"


def _style(text: str, code: str) -> str:
    return f"{code}{text}{RESET}" if sys.stdout.isatty() else text


def step(text: str) -> None:
    print(_style(f"==> {text}", BOLD), flush=True)


def info(text: str) -> None:
    print(f"    {text}", flush=True)


def _stat(admin_port: int, name: str) -> int:
    text = httpx.get(
        f"http://127.0.0.1:{admin_port}/stats", params={"filter": name}, timeout=2
    ).text
    return sum(int(line.rsplit(":", 1)[1]) for line in text.splitlines() if line.strip())


def _identity(admin_port: int) -> tuple[list[str], str]:
    """SPIFFE/kuma URIs and expiry of the certificate Envoy serves (admin ``/certs``)."""
    certs = httpx.get(f"http://127.0.0.1:{admin_port}/certs", timeout=2).json()
    for entry in certs.get("certificates", []):
        for cert in entry.get("cert_chain", []):
            uris = [san["uri"] for san in cert.get("subject_alt_names", []) if "uri" in san]
            if uris:
                return [u for u in uris if u.startswith("spiffe://")], cert["expiration_time"]
    return ["(no certificate)"], "-"


def run_demo(tmp: Path, requests: int, keep_running: bool) -> int:
    env = MeshEnv(tmp)
    try:
        step("starting the control plane (SQLite store in a temporary directory)")
        started = time.perf_counter()
        cp = env.start_cp()
        info(
            f"API {cp.url}   xDS + agent channel 127.0.0.1:{cp.dp_port}   "
            f"diagnostics 127.0.0.1:{cp.diagnostics_port}   "
            f"({time.perf_counter() - started:.1f}s)"
        )

        step('turning on mutual TLS for mesh "default" (builtin CA, 24h certificates)')
        mesh = {
            "type": "Mesh",
            "name": "default",
            "mtls": {
                "enabledBackend": "ca-1",
                "backends": [{"name": "ca-1", "type": "builtin"}],
            },
        }
        httpx.put(f"{cp.url}/meshes/default", json=mesh, timeout=5).raise_for_status()
        info("each agent makes its own key, sends only a CSR, and serves the certificate to")
        info("its Envoy over a local socket: no private key crosses the network")

        step("starting backend-1 (an HTTP app) and its sidecar")
        started = time.perf_counter()
        backend, backend_port = env.start_service("backend-1", "backend")
        info(
            f"app 127.0.0.1:{backend_port}   sidecar inbound 127.0.0.1:{backend.inbound_port}   "
            f"Envoy admin :{backend.admin_port}   ready in {time.perf_counter() - started:.1f}s"
        )

        step("starting web-1 (an HTTP app that calls http://backend.mesh) and its sidecar")
        started = time.perf_counter()
        web, web_port = env.start_service("web-1", "web", upstream_service="backend", by_name=True)
        info(
            f"app 127.0.0.1:{web_port}   sidecar inbound 127.0.0.1:{web.inbound_port}   "
            f".mesh resolver 127.0.0.1:{web.dns_port}   "
            f"ready in {time.perf_counter() - started:.1f}s"
        )
        wait_until(lambda: web.cluster_endpoints("backend"), what="backend endpoint at web")

        step(f"sending {requests} requests to web-1; web-1 calls http://backend.mesh")
        info(_style("client -> web-1 -> web sidecar =(mTLS)=> backend sidecar -> backend-1", DIM))
        info(
            _style(
                "(web-1's own inbound now takes mTLS only, so the demo calls the app locally, "
                "as a process on its host would)",
                DIM,
            )
        )
        failures = 0
        with httpx.Client(timeout=5) as client:
            for i in range(1, requests + 1):
                t0 = time.perf_counter()
                try:
                    resp = client.get(f"http://127.0.0.1:{web_port}/hello/{i}")
                except httpx.HTTPError as exc:
                    failures += 1
                    info(f"#{i}  {_style('failed', RED)}  {exc!r}")
                    continue
                ms = (time.perf_counter() - t0) * 1000
                if resp.status_code == 200:
                    body = resp.json()
                    upstream = body.get("upstream", {})
                    resolved = ", ".join(f"{k} = {v}" for k, v in body.get("resolved", {}).items())
                    info(
                        f"#{i}  {_style('200', GREEN)}  {body['instance']} -> "
                        f"{upstream.get('instance')}  ({resolved})  {ms:.1f} ms"
                    )
                else:
                    failures += 1
                    info(f"#{i}  {_style(str(resp.status_code), RED)}  {resp.text[:120]}")

        step("identities: the certificate each Envoy presents (made by its agent)")
        for name, agent in (("backend-1", backend), ("web-1", web)):
            uris, expires = _identity(agent.admin_port)
            info(f"{name:<10} {', '.join(uris)}   expires {expires}")

        step("what the control plane and the Envoys saw")
        items = cp.get("/meshes/default/dataplanes").json()["items"]
        for item in items:
            inbound = item["networking"]["inbound"][0]
            info(
                f"dataplane {item['name']:<10} service {inbound['tags']['kuma.io/service']:<8} "
                f"inbound :{inbound['port']}"
            )
        sent = _stat(web.admin_port, r"^cluster\.backend\.upstream_rq_2xx$")
        received = _stat(backend.admin_port, r"^http\.localhost_.*\.downstream_rq_2xx$")
        info(f"web sidecar: {sent} requests sent to cluster 'backend'")
        info(f"backend sidecar: {received} requests received on its inbound listener")
        if keep_running:
            step("everything is still running; press Ctrl-C to stop")
            while True:
                time.sleep(3600)
        return 1 if failures else 0
    except KeyboardInterrupt:
        return 130
    finally:
        step("stopping everything")
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="kumadp demo")
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument(
        "--keep-running", action="store_true", help="leave the mesh running until Ctrl-C"
    )
    parser.add_argument(
        "--multizone",
        action="store_true",
        help="a global CP and two zone CPs, a service in each zone (testkit.demo_multizone), "
        "then a call across zones through a zone ingress (testkit.crosszone_demo; root)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kumadp-demo-") as tmp, cleanup_on_signals():
        if args.multizone:
            from testkit.demo_multizone import run_multizone_demo

            (Path(tmp) / "cps").mkdir()
            (Path(tmp) / "crosszone").mkdir()
            code = run_multizone_demo(Path(tmp) / "cps", args.keep_running)
            if code == 0 and not args.keep_running:
                from testkit.crosszone_demo import run_crosszone_demo

                code = run_crosszone_demo(Path(tmp) / "crosszone", args.requests, skip_ok=True)
        else:
            code = run_demo(Path(tmp), args.requests, args.keep_running)
    if code == 0:
        step("done: logs were in the temporary directory, now removed")
    sys.exit(code)


if __name__ == "__main__":
    main()
