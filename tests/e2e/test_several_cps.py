"""Several control planes on one PostgreSQL: real CPs, a real PostgreSQL, real agents,
real Envoys, real traffic. Losing instances (the leader first) loses no request, no
dataplane and nothing in the store; PostgreSQL restarted under the CPs; two writers."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from testkit.mesh import Agent, ControlPlane, MeshEnv
from testkit.postgres import PostgresServer, PostgresUnavailable
from testkit.procs import holds_for, http_ok, kumadp_command, wait_until

pytestmark = pytest.mark.e2e

# The CPs' own bookkeeping, rewritten as instances come and go: not part of the comparison.
VOLATILE = ("DataplaneInsight", "ControlPlaneInstance", "DataplaneConnection", "DataplanePending")


class Load:
    """A steady request loop (one request every ~10 ms) over ``urls``, in a thread."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.answered: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def total(self) -> int:
        return sum(self.answered.values())

    def _run(self) -> None:
        n = 0
        with httpx.Client(timeout=5, trust_env=False) as client:
            while not self._stop.is_set():
                url = self.urls[n % len(self.urls)]
                n += 1
                try:
                    resp = client.get(url)
                    if resp.status_code != 200:
                        self.failures.append(f"{resp.status_code} {resp.text[:200]}")
                    else:
                        self.answered[resp.json()["upstream"]["instance"]] += 1
                except httpx.HTTPError as exc:
                    self.failures.append(f"{url}: {exc!r}")
                self._stop.wait(0.01)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def migrate(dsn: str) -> None:
    done = subprocess.run(
        kumadp_command("cp", "migrate", "up", "--postgres-dsn", dsn),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "migrated" in done.stdout


def start_cps(env: MeshEnv, dsn: str, count: int) -> list[ControlPlane]:
    """``count`` instances on one database, sharing one DP server certificate (the first
    one makes it in the shared data directory)."""
    cps = []
    for _ in range(count):
        cps.append(
            env.start_cp(
                store="postgres",
                data_dir=env.tmp / "cp-shared",
                extra=["--postgres-dsn", dsn, "--deregistration-delay", "3s"],
            )
        )
    return cps


def instances(cp: ControlPlane) -> list[dict[str, object]]:
    resp = cp.get("/control-planes")
    resp.raise_for_status()
    return resp.json()["items"]  # type: ignore[no-any-return]


def leader_of(cps: list[ControlPlane]) -> ControlPlane | None:
    """The CP process holding the lease, as a live one reports it."""
    for cp in cps:
        if cp.proc.poll() is not None:
            continue
        try:
            items = instances(cp)
        except httpx.HTTPError:
            continue
        for item in items:
            if item["leader"]:
                pid = int(str(item["id"]).rsplit("-", 1)[1])
                return next((c for c in cps if c.proc.pid == pid), None)
    return None


def dump(server: PostgresServer, db: str) -> dict[tuple[str, str, str], object]:
    """Everything in the store but the CPs' volatile bookkeeping."""
    excluded = ", ".join(f"'{t}'" for t in VOLATILE)
    out = server.query(
        db,
        "SELECT json_agg(json_build_array(type, mesh, name, spec)) FROM kumadp_resources "
        f"WHERE type NOT IN ({excluded})",
    )
    rows = json.loads(out) or []
    return {(t, m, n): json.loads(spec) for t, m, n, spec in rows}


def start_sidecars(
    env: MeshEnv, cps: list[ControlPlane], backends: int, app_ports: list[int]
) -> list[Agent]:
    """``backends`` sidecars of service backend, spread over the apps at ``app_ports``."""
    extra = [arg for cp in cps[1:] for arg in ("--cp-address", cp.url)]
    agents = []
    for n in range(backends):
        name = f"backend-{n + 1}"
        doc, inbound = env.dataplane_yaml(name, "backend", app_ports[n % len(app_ports)])
        agent = env.start_agent(name, doc, inbound_port=inbound, extra=extra, wait=False)
        agents.append(agent)
    for agent in agents:
        wait_until(agent.ready, timeout=60, what=f"{agent.name} ready", proc=agent.proc)
    return agents


@pytest.fixture
def db(postgres_server: PostgresServer) -> tuple[PostgresServer, str, str]:
    name = postgres_server.database("several")
    dsn = postgres_server.dsn(name)
    migrate(dsn)
    return postgres_server, name, dsn


def test_losing_the_leader_then_another_instance_loses_nothing(
    env: MeshEnv, db: tuple[PostgresServer, str, str]
) -> None:
    server, dbname, dsn = db
    cps = start_cps(env, dsn, 3)
    wait_until(lambda: leader_of(cps), what="a leader")
    every_cp = [arg for cp in cps[1:] for arg in ("--cp-address", cp.url)]
    env.cp = cps[0]  # tokens and the first --cp-address

    # 10 sidecars: 8 backends over 2 apps, and 2 webs (each with its app) calling them.
    backend_apps = [env.start_http_app(f"backend-app-{n}") for n in (1, 2)]
    backends = start_sidecars(env, cps, 8, backend_apps)
    webs, web_urls = [], []
    for n in (1, 2):
        web, port = env.start_service(
            f"web-{n}", "web", upstream_service="backend", extra=every_cp, wait=False
        )
        webs.append(web)
        web_urls.append(f"http://127.0.0.1:{port}/")
    for web in webs:
        wait_until(web.ready, timeout=60, what=f"{web.name} ready", proc=web.proc)
        wait_until(
            lambda w=web: len(w.cluster_endpoints("backend")) == 8,  # type: ignore[misc]
            timeout=30,
            what=f"{web.name} sees the 8 backends",
        )
    assert len(backends) + len(webs) == 10
    before = dump(server, dbname)
    assert sum(1 for k in before if k[0] == "Dataplane") == 10

    with Load(web_urls) as load:
        wait_until(lambda: load.total >= 50, what="traffic flowing")
        victims = []
        for _ in range(2):
            leader = leader_of(cps)
            assert leader is not None
            leader.proc.signal(signal.SIGKILL)
            leader.proc.wait(10)
            victims.append(leader)
            killed_at = time.monotonic()
            survivors = [c for c in cps if c not in victims]
            new_leader = wait_until(
                lambda s=survivors: leader_of(s),  # type: ignore[misc]
                timeout=10,
                what="new leader",
            )
            assert time.monotonic() - killed_at < 5, "no new leader within 5 s"
            assert new_leader in survivors
            seen = load.total
            wait_until(lambda s=seen: load.total >= s + 30, what="traffic after the kill")
        (last,) = [c for c in cps if c not in victims]
        env.cp = last
        # Past the instances' liveness TTL and the deregistration delay: every sidecar
        # reconnected to the last instance, so none may have been deregistered.
        wait_until(
            lambda: all(
                item["online"] is False for item in instances(last) if item["id"] != last_id(last)
            ),
            timeout=30,
            what="the dead instances marked offline",
        )
        everyone = {a.name for a in [*backends, *webs]}
        holds_for(  # longer than --deregistration-delay: nothing may go meanwhile
            lambda: last.dataplane_names() == everyone, 4, what="every dataplane registered"
        )

        # A dataplane started now joins and receives traffic.
        app = env.start_http_app("backend-late")
        doc, inbound = env.dataplane_yaml("backend-late", "backend", app)
        late = env.start_agent("backend-late", doc, inbound_port=inbound, extra=every_cp)
        for web in webs:
            wait_until(
                lambda w=web: len(w.cluster_endpoints("backend")) == 9,  # type: ignore[misc]
                timeout=30,
                what=f"{web.name} sees the late backend",
            )
        wait_until(lambda: load.answered["backend-late"] >= 5, what="traffic to backend-late")
        assert late.ready()
    assert load.failures == [], load.failures[:5]
    assert load.total > 200

    after = dump(server, dbname)
    lost = {k: v for k, v in before.items() if after.get(k) != v}
    assert lost == {}, f"changed or lost in the store: {sorted(lost)}"
    assert ("Dataplane", "default", "backend-late") in after
    # Every sidecar shows online, through its subscription to the last instance.
    overview = last.get("/meshes/default/dataplanes+insights?size=100").json()["items"]
    offline = [i["name"] for i in overview if not i["dataplaneInsight"]["online"]]
    assert offline == []
    ctl = subprocess.run(
        kumadp_command("ctl", "get", "control-planes", "--cp-address", last.url),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert ctl.returncode == 0, ctl.stderr
    assert last_id(last) in ctl.stdout and "yes" in ctl.stdout


def last_id(cp: ControlPlane) -> str:
    return str(next(i["id"] for i in instances(cp) if i["id"].endswith(f"-{cp.proc.pid}")))


def test_postgres_restart_under_the_cps_and_two_writers(env: MeshEnv, tmp_path: Path) -> None:
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as exc:
        pytest.skip(f"no PostgreSQL: {exc}")
    try:
        dsn = server.dsn(server.database("restart"))
        migrate(dsn)
        cps = start_cps(env, dsn, 2)
        env.cp = cps[0]
        every_cp = ["--cp-address", cps[1].url]
        backend_app = env.start_http_app("backend-app")
        doc, inbound = env.dataplane_yaml("backend-1", "backend", backend_app)
        env.start_agent("backend-1", doc, inbound_port=inbound, extra=every_cp)
        web, web_port = env.start_service(
            "web-1", "web", upstream_service="backend", extra=every_cp
        )
        wait_until(lambda: len(web.cluster_endpoints("backend")) == 1, what="web sees backend")

        server.stop()
        wait_until(  # the CPs notice; requests to the API fail meanwhile
            lambda: cps[0].get("/meshes/default/dataplanes").status_code == 503,
            timeout=15,
            what="the API answering 503 without its store",
        )
        server.start()
        for cp in cps:  # both back on the store before a token is asked for
            url = cp.url + "/meshes/default/dataplanes"
            wait_until(lambda url=url: http_ok(url), what="the CP's store back")

        # Changes made after it returns reach every Envoy: a new backend joins (bootstrap
        # on one instance; web's ADS may be on the other).
        app2 = env.start_http_app("backend-app-2")
        doc, inbound = env.dataplane_yaml("backend-2", "backend", app2)
        env.cp = cps[1]
        env.start_agent("backend-2", doc, inbound_port=inbound, extra=["--cp-address", cps[0].url])
        wait_until(
            lambda: len(web.cluster_endpoints("backend")) == 2, timeout=30, what="web sees both"
        )
        seen: set[str] = set()

        def both_answer() -> bool:
            resp = httpx.get(f"http://127.0.0.1:{web_port}/", timeout=5)
            seen.add(resp.json()["upstream"]["instance"])
            return seen == {"backend-app", "backend-app-2"}

        wait_until(both_answer, what="traffic to both backends")
        assert all(cp.proc.poll() is None for cp in cps), "a CP exited"
        wait_until(lambda: leader_of(cps), timeout=15, what="a leader again")

        # Two concurrent writers on one resource, one per instance: exactly one wins.
        url = "/meshes/default/meshtrafficpermissions/allow-all-default"
        current = cps[0].get(url)
        etag = current.headers["etag"]
        doc_now = current.json()

        async def write(cp: ControlPlane) -> int:
            async with httpx.AsyncClient(timeout=10) as client:
                resp = await client.put(cp.url + url, json=doc_now, headers={"If-Match": etag})
                return resp.status_code

        async def both() -> list[int]:
            doc_now["labels"] = {"edited": "yes"}
            return list(await asyncio.gather(write(cps[0]), write(cps[1])))

        assert sorted(asyncio.run(both())) == [200, 409]
    finally:
        env.close()
        server.close()
