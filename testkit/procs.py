"""Processes on free loopback ports, polled with deadlines, always cleaned up."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")


# Ports handed out come from below the kernel's ephemeral range (32768-60999 here), so an
# outgoing connection of some other test cannot take one between our check and the bind; each
# is handed out once per process, and checked free for TCP and UDP (the resolver binds both).
_PORT_RANGE = (20000, 32767)
_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` free for TCP and UDP right now, never handed out before by this
    process."""
    rng = random.Random()
    for _ in range(500):
        port = rng.randint(*_PORT_RANGE)
        if port in _handed_out:
            continue
        try:
            with (
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
            ):
                tcp.bind((host, port))
                udp.bind((host, port))
        except OSError:
            continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORT_RANGE} on {host}")


def wait_until(
    check: Callable[[], T | bool | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.02,
    what: str = "condition",
    proc: ManagedProcess | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds.
    When ``proc`` is given and exits meanwhile, fail at once with its output."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            result = check()
            if result:
                return result  # type: ignore[return-value]
        except Exception as exc:
            last_exc = exc
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"{proc.name} exited ({proc.poll()}) while waiting for {what}:\n{proc.tail()}"
            )
        if time.monotonic() > deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        time.sleep(interval)


def holds_for(
    check: Callable[[], bool], seconds: float, *, interval: float = 0.1, what: str = "condition"
) -> None:
    """Assert that ``check`` stays true for ``seconds`` (an absence, a state that must not
    change), polling it; fails at the first time it does not hold, not at the end."""
    deadline = time.monotonic() + seconds
    while True:
        if not check():
            raise AssertionError(f"{what} stopped holding")
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


async def eventually(
    check: Callable[[], Awaitable[T | bool | None]],
    what: str,
    *,
    within: float = 30.0,
    interval: float = 0.1,
    errors: tuple[type[BaseException], ...] = (OSError, TimeoutError, httpx.HTTPError),
) -> T:
    """``wait_until`` for coroutines: await ``check`` until it returns something truthy;
    ``errors`` raised meanwhile count as "not yet"."""
    deadline = time.monotonic() + within
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = await check()
            if result:
                return result  # type: ignore[return-value]
        except errors as exc:
            last = exc
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {within:.0f}s waiting for {what} (last: {last!r})")


async def until(
    check: Callable[[], object],
    what: str = "condition",
    *,
    within: float = 10.0,
    interval: float = 0.005,
) -> None:
    """In-process polling for async tests: call ``check`` (a plain function, or one that
    returns an awaitable) until it gives something truthy; fail after ``within`` seconds
    naming ``what``. Use ``eventually`` when ``check`` talks to another process."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(interval)


def envoy_binary() -> str | None:
    """The Envoy binary the agent would run, or None when there is none."""
    from kumadp.agent.envoy import EnvoyNotFound, resolve_binary

    try:
        return resolve_binary()
    except EnvoyNotFound:
        return None


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


class ManagedProcess:
    """A child process whose output goes to a log file; stopped with SIGTERM then SIGKILL."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        log_dir: Path,
        env: dict[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> None:
        self.name = name
        self.args = list(args)
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        if stdin is not None and self.proc.stdin is not None:
            self.proc.stdin.write(stdin)
            self.proc.stdin.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL the whole process group after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill_group()
        self._log.close()
        return self.proc.returncode

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


class ProcessSet:
    """Owns every process it starts; ``close()`` stops them all in reverse order."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[ManagedProcess] = []

    def start(self, name: str, args: Sequence[str], **kwargs: object) -> ManagedProcess:
        proc = ManagedProcess(name, args, self.log_dir, **kwargs)  # type: ignore[arg-type]
        self.procs.append(proc)
        return proc

    def close(self, timeout: float = 10.0) -> None:
        for proc in reversed(self.procs):
            proc.stop(timeout=timeout)
        self.procs.clear()

    def __enter__(self) -> ProcessSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def kumadp_command(*args: str) -> list[str]:
    """The ``kumadp`` command line run by this Python (works without the console script)."""
    return [sys.executable, "-m", "kumadp.cli.main", *args]


@contextlib.contextmanager
def cleanup_on_signals() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so ``finally`` blocks run."""

    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
