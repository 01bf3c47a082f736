"""An agent whose control plane instance dies goes on without restarting Envoy: two CP
instances on one PostgreSQL, mTLS with 6 s certificates (renewed every ~3 s), a web sidecar
that reaches its backend by name (its resolver, bind-outbounds). After the instance its
link is on is SIGKILLed: the same Envoy process keeps running, certificates are still
rotated (signed by the survivor), and a service started afterwards resolves through the
agent's resolver and answers through its Envoy."""

from __future__ import annotations

import datetime
import signal
import time
from typing import Any

import httpx
import psutil
import pytest

from testkit.mesh import Agent, ControlPlane, MeshEnv
from testkit.postgres import PostgresServer
from testkit.procs import wait_until
from tests.e2e.test_mtls import enable_mtls
from tests.e2e.test_names import resolve
from tests.e2e.test_several_cps import migrate, start_cps

pytestmark = pytest.mark.e2e

SWITCHED = "switching to the control plane's DP server at"


def envoy_process(agent: Agent) -> psutil.Process:
    """The agent's Envoy: its one child process."""
    (child,) = psutil.Process(agent.proc.pid).children()
    return child


def insight(cp: ControlPlane, name: str) -> dict[str, Any]:
    resp = cp.get(f"/meshes/default/dataplanes+insights/{name}")
    resp.raise_for_status()
    return resp.json()["dataplaneInsight"]  # type: ignore[no-any-return]


def reported_envoy(cp: ControlPlane, name: str) -> tuple[int, int] | None:
    """(pid, restarts) of the Envoy the agent last reported, through ``cp``'s insight."""
    envoy = (insight(cp, name).get("agent") or {}).get("envoy") or {}
    return (envoy["pid"], envoy["restarts"]) if envoy.get("pid") else None


def reported_after(cp: ControlPlane, name: str, moment: datetime.datetime) -> bool:
    report = insight(cp, name).get("agent") or {}
    return "reportTime" in report and parse_time(report["reportTime"]) > moment


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def envoy_uptime(agent: Agent) -> int:
    resp = httpx.get(f"http://127.0.0.1:{agent.admin_port}/server_info", timeout=2)
    resp.raise_for_status()
    return int(float(resp.json()["uptime_current_epoch"].rstrip("s")))  # a Duration: "12s"


def test_agents_keep_envoy_rotation_and_names_when_their_cp_dies(
    env: MeshEnv, postgres_server: PostgresServer
) -> None:
    dsn = postgres_server.dsn(postgres_server.database("agentfailover"))
    migrate(dsn)
    first, second = start_cps(env, dsn, 2)
    env.cp = first  # tokens, the API, and every agent's first --cp-address
    both = ["--cp-address", second.url]
    enable_mtls(env, expiration="6s")
    backend, _ = env.start_service("backend-1", "backend", extra=both)
    web, web_port = env.start_service(
        "web-1", "web", upstream_service="backend", by_name=True, extra=both
    )
    wait_until(
        lambda: httpx.get(f"http://127.0.0.1:{web_port}/", timeout=5).status_code == 200,
        what="web reaches backend.mesh",
    )
    envoys = {a.name: envoy_process(a) for a in (web, backend)}
    started = {name: p.create_time() for name, p in envoys.items()}
    uptime = {a.name: envoy_uptime(a) for a in (web, backend)}
    for agent in (web, backend):
        wait_until(
            lambda a=agent: reported_envoy(first, a.name) == (envoys[a.name].pid, 0),  # type: ignore[misc]
            what=f"{agent.name} reporting its Envoy",
        )

    # Kill the instance the agents' links are on (the first address they were given).
    first.proc.signal(signal.SIGKILL)
    first.proc.wait(10)
    killed_at = datetime.datetime.now(datetime.UTC)
    killed_mono = time.monotonic()
    for agent in (web, backend):
        wait_until(
            lambda a=agent: SWITCHED in a.proc.output(),  # type: ignore[misc]
            timeout=15,
            what=f"{agent.name}'s link to move to the other instance",
            proc=agent.proc,
        )
    env.cp = second

    # Certificates keep rotating: each agent installs one issued after the kill, and reports
    # it to the survivor.
    def rotated_after_kill(name: str) -> bool:
        mtls = insight(second, name).get("mTLS") or {}
        last = mtls.get("lastCertificateRegeneration")
        return bool(last) and parse_time(last) > killed_at

    for agent in (web, backend):
        wait_until(
            lambda n=agent.name: rotated_after_kill(n),  # type: ignore[misc]
            timeout=20,
            interval=0.2,
            what=f"a certificate for {agent.name} rotated after the kill",
        )

    # A service that starts now is resolvable by name through web's resolver, and web's
    # Envoy (its ADS now on the survivor) carries traffic to it on the name's address.
    env.start_service("newcomer-1", "newcomer", extra=[])

    def newcomer_address() -> str | None:
        rcode, answers = resolve(web, "newcomer.mesh")
        return answers[0] if rcode == "NOERROR" and answers else None

    address = wait_until(newcomer_address, timeout=20, what="newcomer.mesh resolvable")

    def newcomer_answers() -> bool:
        resp = httpx.get(f"http://{address}:80/", timeout=5)
        return resp.status_code == 200 and resp.json()["instance"] == "newcomer-1"

    wait_until(newcomer_answers, timeout=20, what="newcomer answering through web's Envoy")
    assert httpx.get(f"http://127.0.0.1:{web_port}/", timeout=5).status_code == 200

    # Never restarted: the same Envoy processes, their uptime counting on from before the
    # kill, and the agents (reporting to the survivor) say so too.
    elapsed = time.monotonic() - killed_mono
    for agent in (web, backend):
        now = envoy_process(agent)
        assert (now.pid, now.create_time()) == (envoys[agent.name].pid, started[agent.name])
        assert envoy_uptime(agent) >= uptime[agent.name] + int(elapsed) - 1
        assert agent.proc.poll() is None
        wait_until(
            lambda a=agent: reported_after(second, a.name, killed_at),  # type: ignore[misc]
            what=f"{agent.name} reporting to the survivor",
        )
        assert reported_envoy(second, agent.name) == (envoys[agent.name].pid, 0)
