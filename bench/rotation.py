"""rotation: requests, failures and certificate rotations while 60-second certificates rotate
under a steady 200 requests per second through two mTLS sidecars, for 3 minutes
(``--quick``: 40 s of 15-second certificates).

Load: ``loadgen`` at a constant 200 rps into web's outbound (-> mTLS -> backend's sidecar ->
app); a failure is a non-200 answer, a connection error or a timeout. Rotations: distinct
serial numbers of the certificates backend's Envoy holds (admin ``/certs``, polled every
second), minus the first.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.core import Figure, Options, close_fast
from bench.datapath import two_sidecars
from testkit.mesh import MeshEnv


def serials(admin_port: int) -> set[str]:
    try:
        doc = httpx.get(f"http://127.0.0.1:{admin_port}/certs", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return set()
    return {
        chain["serial_number"]
        for cert in doc.get("certificates", [])
        for chain in cert.get("cert_chain", [])
        if chain.get("serial_number")
    }


def bench_rotation(tmp: Path, opts: Options) -> list[Figure]:
    duration, expiration = (40, "15s") if opts.quick else (180, "60s")
    rate = 200
    env = MeshEnv(tmp)
    seen: dict[str, set[str]] = {"backend": set(), "web": set()}
    try:
        mesh = two_sidecars(env, cert_expiration=expiration)
        admins = {"backend": mesh.backend.admin_port, "web": mesh.web.admin_port}
        load = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.loadgen",
                "--port",
                str(mesh.mesh_port),
                "--rate",
                str(rate),
                "--duration",
                str(duration),
                "--warmup",
                "0",
                "--connections",
                "8",
            ],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            end = time.monotonic() + duration + 30
            while load.poll() is None and time.monotonic() < end:
                for who, port in admins.items():
                    seen[who] |= serials(port)
                time.sleep(1.0)
            out, _ = load.communicate(timeout=30)
        finally:
            if load.poll() is None:
                load.kill()
                load.wait()
        result = json.loads(out.strip().splitlines()[-1])
    finally:
        close_fast(env)
    rotations = max(0, len(seen["backend"]) - 1)
    failed, sent = int(result["failed"]), int(result["sent"])
    note = (
        f"{sent} requests, {rotations} rotations of backend's certificate "
        f"({max(0, len(seen['web']) - 1)} of web's)"
    )
    if failed:
        note = f"{failed} failed ({result['errors']}); " + note
    return [
        Figure(
            f"rotation: failed requests, {duration} s of {expiration} certificates at {rate} rps",
            failed,
            "requests",
            sent,
            "requests sent (ratio = failure rate)",
            "0",
            failed == 0,
            note,
        ),
        Figure(
            f"rotation: certificate rotations seen in {duration} s ({expiration} certificates)",
            rotations,
            "rotations",
            None,
            "-",
            ">= 2",
            rotations >= 2,
            "" if rotations >= 2 else "renewal happens at about half the lifetime",
        ),
    ]
