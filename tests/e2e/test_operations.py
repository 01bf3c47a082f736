"""Operating the mesh: losing the CP, draining until idle, ``kumadp wait``, several CP
addresses. Real CP, real agents, real Envoys, real traffic."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from testkit.mesh import Agent, MeshEnv
from testkit.procs import free_port, kumadp_command, wait_until

pytestmark = pytest.mark.e2e


class Load:
    """A steady stream of GETs in a thread; counts answers by upstream instance."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answered: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def total(self) -> int:
        return sum(self.answered.values())

    def _run(self) -> None:
        with httpx.Client(timeout=5, trust_env=False) as client:
            while not self._stop.is_set():
                try:
                    resp = client.get(self.url)
                    if resp.status_code != 200:
                        self.failures.append(f"{resp.status_code} {resp.text[:200]}")
                    else:
                        self.answered[resp.json()["upstream"]["instance"]] += 1
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@contextmanager
def readiness_watch(agents: list[Agent]) -> Iterator[list[str]]:
    """Polls every agent's ``/ready?verbose``; yields the list of answers that were not
    ``200 READY`` (filled while the block runs)."""
    bad: list[str] = []
    stop = threading.Event()

    def run() -> None:
        with httpx.Client(timeout=2, trust_env=False) as client:
            while not stop.is_set():
                for agent in agents:
                    url = f"http://127.0.0.1:{agent.readiness_port}/ready?verbose"
                    try:
                        resp = client.get(url)
                        if resp.status_code != 200 or resp.text.strip() != "READY":
                            bad.append(f"{agent.name}: {resp.status_code} {resp.text!r}")
                    except httpx.HTTPError as exc:
                        bad.append(f"{agent.name}: {exc!r}")
                stop.wait(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield bad
    finally:
        stop.set()
        thread.join(timeout=10)


def _count(agent: Agent, text: str) -> int:
    return agent.proc.output().count(text)


def _logged(agent: Agent, text: str, times: int = 1) -> Callable[[], bool]:
    return lambda: _count(agent, text) >= times


WATCHING = "watching the control plane for identity and name updates"
LOST = "lost the control plane's watch stream"


def _cp_connected(agent: Agent) -> float:
    """``kumadp_cp_connected`` from the agent's merged metrics page."""
    text = httpx.get(f"http://127.0.0.1:{agent.metrics_port}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith("kumadp_cp_connected "):
            return float(line.split()[1])
    raise AssertionError("kumadp_cp_connected missing from /metrics")


def test_losing_the_cp_is_not_an_outage(env: MeshEnv) -> None:
    cp = env.start_cp(store="sqlite")
    backend, _ = env.start_service("backend-1", "backend")
    web, web_port = env.start_service("web-1", "web", upstream_service="backend")
    wait_until(lambda: web.cluster_endpoints("backend"), what="backend endpoint at web")
    # backend-2 comes up while the CP is away: its token is issued now, while it can be.
    token_file = env.tmp / "backend-2.token"
    token_file.write_text(cp.token("backend-2"))

    with Load(f"http://127.0.0.1:{web_port}/") as load, readiness_watch([web, backend]) as bad:
        wait_until(lambda: load.total >= 20, what="load running")
        cp.proc.signal(signal.SIGKILL)
        cp.proc.wait(timeout=10)
        killed_at, before = time.monotonic(), load.total
        for agent in (web, backend):
            wait_until(_logged(agent, LOST), what=f"{agent.name} sees the CP go")
            # ... and says so in its metrics.
            wait_until(lambda a=agent: _cp_connected(a) == 0, what=f"{agent.name} metrics")  # type: ignore[misc]
        # A few seconds without a CP, under load: Envoy serves with its last config.
        wait_until(
            lambda: time.monotonic() - killed_at >= 3 and load.total >= before + 30,
            timeout=30,
            what="traffic while the CP is away",
        )
        assert load.failures == [], load.failures[:5]

        # A new instance starts while the CP is away: its agent keeps asking for a bootstrap.
        app2 = env.start_http_app("backend-2")
        doc, inbound2 = env.dataplane_yaml("backend-2", "backend", app2)
        backend2 = env.start_agent(
            "backend-2",
            doc,
            inbound_port=inbound2,
            token=False,
            extra=["--dataplane-token-file", str(token_file)],
            wait=False,
        )
        wait_until(
            lambda: "not reachable" in backend2.proc.output(),
            what="backend-2 retrying its bootstrap",
            proc=backend2.proc,
        )
        assert web.cluster_endpoints("backend") == {f"127.0.0.1:{backend.inbound_port}"}

        # The CP comes back on the same ports with the same store.
        watching = {a.name: _count(a, WATCHING) for a in (web, backend)}
        env.start_cp(
            store="sqlite",
            api_port=cp.api_port,
            dp_port=cp.dp_port,
            diagnostics_port=cp.diagnostics_port,
            data_dir=cp.data_dir,
        )
        for agent in (web, backend):
            wait_until(
                _logged(agent, WATCHING, watching[agent.name] + 1),
                what=f"{agent.name}'s agent channel back",
            )
            assert _cp_connected(agent) == 1, f"{agent.name}: metrics should say connected"
        wait_until(backend2.ready, timeout=30, what="backend-2 ready", proc=backend2.proc)
        # web's Envoy reconnected its ADS stream and got the change made while it was away.
        wait_until(
            lambda: f"127.0.0.1:{inbound2}" in web.cluster_endpoints("backend"),
            timeout=40,  # Envoy's own ADS retry backoff grows while the CP is away
            what="backend-2 in web's endpoints",
        )
        wait_until(lambda: load.answered["backend-2"] >= 5, what="traffic to backend-2")
    assert load.failures == [], load.failures[:5]
    assert bad == [], bad[:5]
    assert env.cp is not None and env.cp.dataplane_names() == {"backend-1", "backend-2", "web-1"}


def _hold_keepalive(port: int) -> socket.socket:
    """A client of the app side: one HTTP/1.1 request through the outbound, then the
    connection is kept open (keep-alive)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /held HTTP/1.1\r\nhost: backend\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or b"backend-1" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed early: {data!r}"
        data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data
    return sock


def _active(agent: Agent, port: int) -> int:
    """Envoy's count of active downstream connections on the listener at ``port``."""
    resp = httpx.get(
        f"http://127.0.0.1:{agent.admin_port}/stats",
        params={"filter": rf"^listener\.127\.0\.0\.1_{port}\.downstream_cx_active$"},
        timeout=2,
        trust_env=False,
    )
    return int(resp.text.rsplit(":", 1)[-1])


def test_sigterm_with_drain_until_idle_waits_for_the_apps_last_connection(env: MeshEnv) -> None:
    env.start_cp()
    env.start_service("backend-1", "backend")
    web, web_port = env.start_service(
        "web-1", "web", upstream_service="backend", drain_time="60s", extra=["--drain-until-idle"]
    )
    outbound = web.outbound_ports["backend"]
    wait_until(lambda: web.cluster_endpoints("backend"), what="backend endpoint at web")

    with Load(f"http://127.0.0.1:{web_port}/") as load:
        wait_until(lambda: load.total >= 20, what="load running")
        held = _hold_keepalive(outbound)
        web.proc.signal(signal.SIGTERM)
        wait_until(
            lambda: "drain-until-idle: waiting for the application's" in web.proc.output(),
            what="the agent waiting for the app's connections",
            proc=web.proc,
        )
        # Outbound keeps working while it waits: the app's requests still get through.
        before = load.total
        wait_until(lambda: load.total >= before + 30, what="traffic while draining")
        assert web.proc.poll() is None, web.proc.tail()
    assert load.failures == [], load.failures[:5]
    # The load stopped; the held connection is the app's last one, and the agent waits for
    # it well past its 1 s quiet period (fails at once if the agent exits meanwhile).
    stopped = time.monotonic()
    wait_until(
        lambda: time.monotonic() - stopped >= 3 and _active(web, outbound) == 1,
        what="the agent still waiting for the held connection",
        proc=web.proc,
    )
    closed_at = time.monotonic()
    held.close()
    assert web.proc.wait(timeout=20) == 0, web.proc.tail()
    assert time.monotonic() - closed_at < 15, "exited long before the 60 s drain time"
    out = web.proc.output()
    assert "no connection through the sidecar" in out, out[-3000:]


def test_kumadp_wait_returns_once_the_sidecar_is_ready(env: MeshEnv) -> None:
    env.start_cp()
    app = env.start_http_app("backend-1")
    doc, _ = env.dataplane_yaml("backend-1", "backend", app)
    agent = env.start_agent("backend-1", doc, wait=False)
    url = f"http://127.0.0.1:{agent.readiness_port}/ready"
    done = subprocess.run(
        kumadp_command("wait", "--url", url, "--timeout", "60s", "--check-frequency", "100ms"),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert agent.ready()

    stopped = subprocess.run(
        kumadp_command("wait", "--url", f"http://127.0.0.1:{free_port()}/ready", "--timeout", "1s"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert stopped.returncode == 1
    (line,) = stopped.stderr.strip().splitlines()
    assert "not ready after 1s" in line and "Traceback" not in stopped.stderr


def test_several_cp_addresses_use_the_first_that_answers(env: MeshEnv) -> None:
    cp = env.start_cp()
    app = env.start_http_app("backend-1")
    doc, _ = env.dataplane_yaml("backend-1", "backend", app)
    token_file = env.tmp / "backend-1.token"
    token_file.write_text(cp.token("backend-1"))
    dead = f"http://127.0.0.1:{free_port()}"
    agent = env.start_agent(
        "backend-1",
        doc,
        cp_url=f"{dead},{cp.url}",
        extra=["--dataplane-token-file", str(token_file)],
    )
    out = agent.proc.output()
    assert f"control plane at {dead} not reachable" in out, out[-3000:]
    assert f"got the bootstrap from the control plane at {cp.url}" in out, out[-3000:]
    assert cp.dataplane_names() == {"backend-1"}
