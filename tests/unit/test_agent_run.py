"""The agent as a whole (run_agent and `kumadp run`) with fakes: a fake CP (bootstrap over
HTTP, AgentChannel over gRPC), a fake Envoy admin API and fake Envoy scripts."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import signal
import stat
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import httpx
import pytest

from kumadp.agent.bootstrap import BootstrapFailed
from kumadp.agent.envoy import EnvoyExited
from kumadp.agent.run import AgentConfig, run_agent
from kumadp.wire import agent_pb2, agent_pb2_grpc
from testkit.fakes import FakeAdmin, FakeHttpServer, Request
from testkit.procs import until

FAKE = Path(__file__).parent / "testdata" / "fake-envoy"
REPO = Path(__file__).resolve().parents[2]
TOKEN_HEADER = base64.urlsafe_b64encode(b'{"alg":"RS256","kid":"1"}').decode().rstrip("=")
TOKEN = f"{TOKEN_HEADER}.eyJOYW1lIjoid2ViLTEifQ.c2ln"

DP_YAML = """\
type: Dataplane
mesh: default
name: "{{ name }}"
networking:
  address: 127.0.0.1
  inbound:
    - port: {{ port }}
      servicePort: 8080
      tags:
        kuma.io/service: web
"""


class FakeAgentChannel(agent_pb2_grpc.AgentChannelServicer):
    def __init__(self) -> None:
        self.leaves: list[tuple[str, str, str, float]] = []
        self.port = 0
        self._server = grpc.aio.server()
        agent_pb2_grpc.add_AgentChannelServicer_to_server(self, self._server)

    async def Leave(
        self, request: agent_pb2.LeaveRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.LeaveResponse:
        self.leaves.append((request.mesh, request.name, request.reason, time.monotonic()))
        return agent_pb2.LeaveResponse(removed=True)

    async def __aenter__(self) -> FakeAgentChannel:
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._server.stop(None)


def bootstrap_yaml(admin_port: int, ads_port: int) -> str:
    return (
        "node: {id: default.web-1, cluster: web}\n"
        "admin:\n"
        f"  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin_port}}}}}\n"
        "static_resources:\n"
        "  clusters:\n"
        "    - name: ads_cluster\n"
        "      load_assignment:\n"
        "        cluster_name: ads_cluster\n"
        "        endpoints:\n"
        "          - lb_endpoints:\n"
        "              - endpoint:\n"
        "                  address:\n"
        f"                    socket_address: {{address: 127.0.0.1, port_value: {ads_port}}}\n"
    )


class World:
    """The fakes around one agent."""

    def __init__(self, admin: FakeAdmin, channel: FakeAgentChannel, cp: FakeHttpServer) -> None:
        self.admin, self.channel, self.cp = admin, channel, cp
        self.answer: Callable[[Request], tuple[int, str, bytes]] | None = None

    @property
    def bootstrap_requests(self) -> list[dict[str, object]]:
        return [json.loads(r.body) for r in self.cp.requests if r.path == "/bootstrap"]


@pytest.fixture
async def world() -> AsyncIterator[World]:
    holder: dict[str, World] = {}

    async def handle(request: Request) -> tuple[int, str, bytes]:
        w = holder["world"]
        if w.answer is not None:
            return w.answer(request)
        yaml = bootstrap_yaml(w.admin.port, w.channel.port)
        body = {
            "bootstrap": base64.b64encode(yaml.encode()).decode(),
            "kumaSidecarConfiguration": {},
        }
        return 200, "application/json", json.dumps(body).encode()

    async with (
        FakeAdmin() as admin,
        FakeAgentChannel() as channel,
        FakeHttpServer(handle) as cp,
    ):
        holder["world"] = World(admin, channel, cp)
        yield holder["world"]


def config(world: World, tmp_path: Path, readiness_port: int, **kw: object) -> AgentConfig:
    defaults: dict[str, object] = {
        "cp_address": world.cp.url,
        "name": "web-1",
        "mesh": "default",
        "work_dir": str(tmp_path / "wd"),
        "binary_path": str(FAKE / "envoy-sleep.sh"),
        "drain_time": 0.5,
        "readiness_port": readiness_port,
        "envoy_stop_timeout": 2.0,
        "bootstrap_timeout": 5.0,
        # The fake CP has no Watch stream, so no name table would ever arrive; the DNS
        # resolver has its own tests.
        "dns_enabled": False,
    }
    defaults.update(kw)
    return AgentConfig(**defaults)  # type: ignore[arg-type]


async def ready_state(port: int) -> tuple[int, str] | None:
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=1.0) as client:
            response = await client.get(f"http://127.0.0.1:{port}/ready")
            return response.status_code, response.text
    except httpx.HTTPError:
        return None


async def until_ready_state(port: int, expected: tuple[int, str]) -> None:
    async def reached() -> bool:
        return await ready_state(port) == expected

    await until(reached, f"readiness {expected}", within=10, interval=0.02)


@contextlib.asynccontextmanager
async def agent_task(cfg: AgentConfig) -> AsyncIterator[asyncio.Task[int]]:
    task = asyncio.create_task(run_agent(cfg))
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(BaseException):
            await task


def received(caplog: pytest.LogCaptureFixture, n: int) -> Callable[[], bool]:
    return lambda: any(f"received SIGTERM ({n})" in r.getMessage() for r in caplog.records)


async def test_graceful_shutdown_sequence(
    world: World, tmp_path: Path, unused_tcp_port: int
) -> None:
    cfg = config(world, tmp_path, unused_tcp_port, dataplane_token=TOKEN, admin_port=None)
    async with agent_task(run_agent_cfg := cfg) as task:
        del run_agent_cfg
        await until_ready_state(unused_tcp_port, (200, "READY"))
        wd = tmp_path / "wd"
        boot = wd / "bootstrap.yaml"
        assert stat.S_IMODE(boot.stat().st_mode) == 0o600
        assert f"port_value: {world.admin.port}" in boot.read_text()
        await until(lambda: (wd / "fake-envoy.args").exists(), what="the fake Envoy's args")
        args = (wd / "fake-envoy.args").read_text().splitlines()
        assert args[args.index("--config-path") + 1] == str(boot)

        (request,) = world.bootstrap_requests
        assert request["name"] == "web-1" and request["mesh"] == "default"
        assert request["dataplaneResource"] == ""
        assert request["dataplaneToken"] == TOKEN
        assert request["readinessPort"] == unused_tcp_port
        assert request["dnsPort"] == 0  # DNS is off in these tests
        assert request["workdir"] == str(wd)

        signalled = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        await until_ready_state(unused_tcp_port, (503, "TERMINATING"))
        code = await asyncio.wait_for(task, 10)
        finished = time.monotonic()

    assert code == 0
    ((mesh, name, reason, left_at),) = world.channel.leaves
    assert (mesh, name) == ("default", "web-1") and "SIGTERM" in reason
    assert world.admin.healthcheck_failed_at is not None
    assert signalled <= left_at <= world.admin.healthcheck_failed_at
    assert finished - world.admin.healthcheck_failed_at >= 0.45  # the drain time
    assert (tmp_path / "wd" / "fake-envoy.events").read_text().strip() == "terminated"
    assert await ready_state(unused_tcp_port) is None  # the readiness server is gone


async def test_second_signal_skips_the_drain(
    world: World, tmp_path: Path, unused_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kumadp")
    cfg = config(world, tmp_path, unused_tcp_port, drain_time=60.0)
    async with agent_task(cfg) as task:
        await until_ready_state(unused_tcp_port, (200, "READY"))
        started = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        await until(lambda: world.admin.healthcheck_failed_at is not None, what="healthcheck fail")
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, 10) == 0
    assert time.monotonic() - started < 10
    assert (tmp_path / "wd" / "fake-envoy.events").read_text().strip() == "terminated"


async def test_third_signal_exits_at_once(
    world: World, tmp_path: Path, unused_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kumadp")
    cfg = config(
        world, tmp_path, unused_tcp_port,
        binary_path=str(FAKE / "envoy-ignore-term.sh"), drain_time=60.0, envoy_stop_timeout=60.0,
    )  # fmt: skip
    async with agent_task(cfg) as task:
        await until_ready_state(unused_tcp_port, (200, "READY"))
        pid_file = tmp_path / "wd" / "fake-envoy.pid"
        # READY comes from the fake admin API: the fake Envoy may not have written it yet
        await until(lambda: pid_file.exists() and pid_file.read_text().strip(), what="pid")
        envoy_pid = int(pid_file.read_text())
        for n in (1, 2):
            os.kill(os.getpid(), signal.SIGTERM)
            await until(received(caplog, n), what=f"signal {n}")
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, 10) == 1
    with pytest.raises(ProcessLookupError):
        os.kill(envoy_pid, 0)


async def test_envoy_exit_ends_the_agent_with_its_lines(
    world: World, tmp_path: Path, unused_tcp_port: int
) -> None:
    cfg = config(world, tmp_path, unused_tcp_port, binary_path=str(FAKE / "envoy-exit-1.sh"))
    with pytest.raises(EnvoyExited) as info:
        await asyncio.wait_for(run_agent(cfg), 10)
    assert info.value.returncode == 1
    assert "fake failure" in str(info.value)


async def test_bootstrap_rejected(world: World, tmp_path: Path, unused_tcp_port: int) -> None:
    world.answer = lambda r: (
        422, "application/json",
        json.dumps({"title": "Bad", "details": "mesh \"nope\" does not exist"}).encode(),
    )  # fmt: skip
    cfg = config(world, tmp_path, unused_tcp_port, mesh="nope", work_dir=None)
    with pytest.raises(BootstrapFailed, match='mesh "nope" does not exist'):
        await asyncio.wait_for(run_agent(cfg), 10)


async def test_signal_while_waiting_for_the_bootstrap(
    world: World, tmp_path: Path, unused_tcp_port: int
) -> None:
    world.answer = lambda r: (404, "text/plain", b"")
    cfg = config(world, tmp_path, unused_tcp_port, work_dir=None)
    async with agent_task(cfg) as task:
        await until(lambda: len(world.bootstrap_requests) >= 1, what="a bootstrap request")
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, 10) == 0


async def test_resource_with_vars_and_admin_port(
    world: World, tmp_path: Path, unused_tcp_port: int
) -> None:
    dp = tmp_path / "dp.yaml"
    dp.write_text(DP_YAML)
    cfg = config(
        world, tmp_path, unused_tcp_port, name=None, mesh=None, dataplane_file=str(dp),
        dataplane_vars=["name=web-7", "port=18080"], admin_port=19901,
    )  # fmt: skip
    async with agent_task(cfg) as task:
        await until_ready_state(unused_tcp_port, (200, "READY"))
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, 10) == 0
    (request,) = world.bootstrap_requests
    assert (request["mesh"], request["name"]) == ("default", "web-7")
    resource = json.loads(str(request["dataplaneResource"]))
    assert resource["networking"]["inbound"][0]["port"] == 18080
    assert resource["networking"]["admin"] == {"port": 19901}


# --- the command line, in a subprocess ---------------------------------------------------

CLI = (
    "import typer\n"
    "from kumadp.cli import run\n"
    "app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)\n"
    "app.callback()(lambda: None)\n"
    "run.register(app)\n"
    "app()\n"
)


async def cli(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KUMA_")}
    environment.update(env or {})
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLI, "run", *args,
        cwd=REPO, env=environment,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def cli_output(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await cli(*args, env=env)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_cli_bad_dataplane_is_one_line(tmp_path: Path) -> None:
    dp = tmp_path / "dp.yaml"
    dp.write_text(DP_YAML)
    code, err = await cli_output("-d", str(dp), "-v", "name=web-1", "-v", "port=70000")
    assert code != 0
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, err
    assert "networking.inbound[0].port" in lines[0]
    assert "must be 1-65535" in lines[0]
    assert str(dp) in lines[0]


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--name", "x", "--proxy-type", "ingress"], {}, "--proxy-type ingress: give its"),
        (["--name", "x", "--drain-time", "soon"], {}, "--drain-time: invalid duration"),
        (["-d", "/nonexistent/dp.yaml"], {}, "--dataplane-file: cannot read /nonexistent/dp.yaml"),
        ([], {}, "give a dataplane"),
        (["--name", "x", "--cp-address", "grpcs://cp:5678"], {}, "--cp-address: 'grpcs://cp:5678'"),
        (["--name", "x", "--dataplane-token", "not-a-jwt"], {}, "--dataplane-token: not a JWT"),
        (["--name", "x"], {"KUMA_DATAPLANE_RUNTIME_BINARY_PATH": "/nope/envoy"},
         "/nope/envoy is not an executable file"),
    ],
)  # fmt: skip
async def test_cli_errors_are_one_line(args: list[str], env: dict[str, str], expected: str) -> None:
    code, err = await cli_output(*args, env=env)
    assert code != 0
    assert "Traceback" not in err
    assert err.startswith("Error: "), err
    assert expected in err.splitlines()[0]


async def test_cli_runs_and_stops_on_sigterm(
    world: World, tmp_path: Path, unused_tcp_port: int
) -> None:
    proc = await cli(
        "--cp-address", world.cp.url, "--name", "web-1",
        "--readiness-port", str(unused_tcp_port), "--work-dir", str(tmp_path / "wd"),
        "--drain-time", "100ms", "--no-dns-enabled",
        env={"KUMA_DATAPLANE_RUNTIME_BINARY_PATH": str(FAKE / "envoy-sleep.sh"),
             "KUMA_DATAPLANE_MESH": "default"},
    )  # fmt: skip
    try:
        await until_ready_state(unused_tcp_port, (200, "READY"))
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, err.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert (tmp_path / "wd" / "fake-envoy.events").read_text().strip() == "terminated"
    assert world.channel.leaves and world.channel.leaves[0][:2] == ("default", "web-1")
