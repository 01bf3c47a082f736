"""The control plane's runtime: components per mode, the phased shutdown, and the signal
handling of ``kumadp cp run`` (first SIGTERM graceful, second forces)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

import kumadp.cp.runtime as runtime
from kumadp.cli.cp import _main
from kumadp.cp.runtime import ControlPlane, ControlPlaneConfig, Phase, run_in_phases
from kumadp.cp.runtime.modes import components_for
from kumadp.cp.store import MemoryStore
from kumadp.lifecycle import ComponentFailed
from testkit.mesh import MeshEnv


class Recorder:
    """A component that notes when it is told to stop, and may refuse to."""

    def __init__(self, name: str, log: list[str], *, stubborn: bool = False) -> None:
        self.name = name
        self._log = log
        self._stubborn = stubborn

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._log.append(self.name)
        if self._stubborn:
            await asyncio.Event().wait()  # never returns: must be cancelled


class Failing:
    name = "failing"

    async def run(self, stop: asyncio.Event) -> None:
        raise RuntimeError("boom")


async def test_phases_stop_in_order() -> None:
    log: list[str] = []
    phases = [
        Phase("streams", (Recorder("dp", log), Recorder("api", log))),
        Phase("reconcile", (Recorder("reconciler", log),)),
        Phase("insights", (Recorder("insights", log),)),
    ]
    stop = asyncio.Event()
    task = asyncio.create_task(run_in_phases(phases, stop))
    await asyncio.sleep(0)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert sorted(log[:2]) == ["api", "dp"]
    assert log[2:] == ["reconciler", "insights"]


async def test_a_phase_that_overstays_is_cancelled_and_the_next_one_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []
    phases = [
        Phase("streams", (Recorder("dp", log, stubborn=True),), timeout=0.05),
        Phase("insights", (Recorder("insights", log),)),
    ]
    stop = asyncio.Event()
    stop.set()
    await asyncio.wait_for(run_in_phases(phases, stop), 5)
    assert log == ["dp", "insights"]
    assert "dp did not stop within 0.1 s; cancelling it" in caplog.text


async def test_a_failure_stops_everything_and_is_raised() -> None:
    log: list[str] = []
    phases = [Phase("one", (Recorder("dp", log), Failing())), Phase("two", (Recorder("x", log),))]
    with pytest.raises(ComponentFailed, match="failing"):
        await asyncio.wait_for(run_in_phases(phases, asyncio.Event()), 5)
    assert log == ["dp", "x"]


async def test_components_per_mode(tmp_path: Path) -> None:
    store = MemoryStore()
    config = ControlPlaneConfig(store="memory", data_dir=tmp_path, dp_server_tls=False)
    cp = ControlPlane(config, store)
    names = [[c.name for c in phase.components] for phase in components_for(cp, "standalone")]
    assert names == [
        ["dp-server", "api-server", "api-server-https"],
        ["xds-reconciler", "vip-provisioner", "ca-provisioner"],
        ["insights"],
        ["diagnostics", "instances", "leader-election"],
    ]
    cp.tokens.close()

    config.mode = "global"
    cp = ControlPlane(config, store)
    names = [[c.name for c in phase.components] for phase in components_for(cp, "global")]
    assert names == [
        ["kds-server", "dp-server", "api-server", "api-server-https"],
        [
            "ca-provisioner",
            "public-key-publisher",
            "trust-bundle-publisher",
            "kds-source-global",
            "kds-relay",
            "zone-registry",
        ],
        ["diagnostics", "instances", "leader-election"],
    ]
    cp.tokens.close()

    config.mode, config.zone = "zone", "zone-a"
    config.kds_global_address = "grpcs://127.0.0.1:5685"
    cp = ControlPlane(config, store)
    names = [[c.name for c in phase.components] for phase in components_for(cp, "zone")]
    assert names == [
        ["kds-zone-client", "dp-server", "api-server", "api-server-https"],
        [
            "xds-reconciler",
            "vip-provisioner",
            "zone-intermediate-ca",
            "available-services",
            "kds-source-zone",
        ],
        ["insights", "zoneingressinsights", "zoneegressinsights"],
        ["diagnostics", "instances", "leader-election"],
    ]
    cp.tokens.close()
    cp.zone_tokens.close()
    cp.user_tokens.close()


# -- signals (kumadp cp run) -------------------------------------------------------------


async def _after_signal(monkeypatch: pytest.MonkeyPatch, *, stubborn: bool) -> int:
    stopping = asyncio.Event()

    async def fake_run(config: Any, stop: asyncio.Event) -> None:
        await stop.wait()
        stopping.set()
        if stubborn:
            await asyncio.Event().wait()

    monkeypatch.setattr(runtime, "run_control_plane", fake_run)
    before = signal.getsignal(signal.SIGTERM)
    main = asyncio.create_task(_main(ControlPlaneConfig()))
    await asyncio.sleep(0.01)  # the handlers are installed
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(stopping.wait(), 5)
    if stubborn:
        assert not main.done()
        os.kill(os.getpid(), signal.SIGTERM)
    code = await asyncio.wait_for(main, 5)
    assert signal.getsignal(signal.SIGTERM) == before  # handlers restored
    return code


async def test_first_signal_shuts_down_gracefully(monkeypatch: pytest.MonkeyPatch) -> None:
    assert await _after_signal(monkeypatch, stubborn=False) == 0


async def test_second_signal_forces_the_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    assert await _after_signal(monkeypatch, stubborn=True) == 1


def test_a_real_control_plane_logs_each_shutdown_phase(tmp_path: Path) -> None:
    env = MeshEnv(tmp_path)
    try:
        cp = env.start_cp(store="sqlite")
        cp.proc.signal(signal.SIGTERM)
        assert cp.proc.wait(timeout=30) == 0
        output = cp.proc.output()
        phases = [
            "shutdown 1/4: stop accepting new ADS/agent streams",
            "shutdown 2/4: stop reconciling and provisioning",
            "shutdown 3/4: flush insights",
            "shutdown 4/4: stop diagnostics",
            "shutdown: closing the store",
        ]
        positions = [output.find(phase) for phase in phases]
        assert -1 not in positions, output[-3000:]
        assert positions == sorted(positions)
    finally:
        env.close()
