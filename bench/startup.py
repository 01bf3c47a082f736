"""startup: ``kumadp run`` to the first request answered through the new sidecar, beside a
bare Envoy started with an equivalent static bootstrap (inbound listener -> the app)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import yaml

from bench.core import QUIET, Figure, Options, Skipped, median, start_quiet_cp
from kumadp.agent.envoy import EnvoyNotFound, resolve_binary
from testkit.mesh import MeshEnv
from testkit.procs import free_port

TCP_PROXY_TYPE = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"


def first_response(port: int, deadline: float) -> None:
    """Poll with a raw HTTP/1.0 request every 2 ms. Cheap on purpose: a poller that builds an
    HTTP client per try (TLS context and all) takes a core away from what it measures."""
    request = b"GET / HTTP/1.0\r\nHost: x\r\n\r\n"
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(request)
                status = sock.recv(64)  # "HTTP/1.1 200 OK..."
                if status.startswith(b"HTTP/1.") and status[9:12] == b"200":
                    return
        except OSError:
            pass
        time.sleep(0.002)
    raise TimeoutError(f"no response on :{port}")


def bare_envoy_config(listen: int, app_port: int, admin: int) -> dict[str, object]:
    endpoint = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": app_port}}}
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "inbound",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.tcp_proxy",
                                    "typed_config": {
                                        "@type": TCP_PROXY_TYPE,
                                        "stat_prefix": "inbound",
                                        "cluster": "app",
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "app",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "app",
                        "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}],
                    },
                }
            ],
        },
    }


def bench_startup(tmp: Path, opts: Options) -> list[Figure]:
    try:
        envoy = resolve_binary()  # the very binary the agent runs, not a wrapper script
    except EnvoyNotFound as exc:
        raise Skipped(str(exc)) from exc
    trials = 3 if opts.quick else 5
    env = MeshEnv(tmp)
    ours: list[float] = []
    bare: list[float] = []
    try:
        start_quiet_cp(env)
        app_port = env.start_http_app("app-1")
        for i in range(trials):
            listen, admin = free_port(), free_port()
            cfg = tmp / f"bare-{i}.yaml"
            cfg.write_text(yaml.safe_dump(bare_envoy_config(listen, app_port, admin)))
            t0 = time.monotonic()
            proc = env.procs.start(
                f"bare-{i}", [envoy, "-c", str(cfg), "--disable-hot-restart", "--log-level", "warn"]
            )
            first_response(listen, t0 + 20)
            bare.append(time.monotonic() - t0)
            proc.stop()

            doc, inbound = env.dataplane_yaml(f"app-{i}", "app", app_port, protocol="tcp")
            t0 = time.monotonic()
            agent = env.start_agent(
                f"app-{i}", doc, inbound_port=inbound, wait=False, drain_time="0s", extra=QUIET
            )
            first_response(inbound, t0 + 30)
            ours.append(time.monotonic() - t0)
            agent.proc.stop()
    finally:
        env.close()
    med, base = median(ours), median(bare)
    met = med <= 1.0 and med <= 8 * base
    note = ""
    if not met:
        note = (
            f"{med * 1000:.0f} ms vs {base * 1000:.0f} ms bare: the agent's Python start-up "
            "(interpreter, imports), the bootstrap request and the xDS round trips come on "
            "top of Envoy's own start"
        )
    return [
        Figure(
            f"startup: kumadp run -> first request (median of {trials})",
            med * 1000,
            "ms",
            base * 1000,
            "bare Envoy, static config",
            "<= 1000 ms and <= 8x",
            met,
            note,
        ),
    ]
