"""``kumadp wait``: block until the sidecar is ready (Kuma's ``kuma-dp wait``), for a
Kubernetes postStart hook, a systemd ``ExecStartPost=`` or a container HEALTHCHECK.

Polls ``--url`` every ``--check-frequency`` until it answers 200 (exit 0) or ``--timeout``
passes (exit 1 with one line saying what the URL last answered).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

import typer

from kumadp.cli.common import fail, parse_duration_flag

DEFAULT_URL = "http://127.0.0.1:9902/ready"


def probe(url: str, timeout: float) -> tuple[bool, str]:
    """One GET: (answered 200, what it answered) with no proxy from the environment."""
    from kumadp.agent.http import httpx  # without httpx's own CLI (rich, pygments)

    try:
        response = httpx.get(url, timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    body = response.text.strip().splitlines()
    first = body[0][:80] if body else ""
    return response.status_code == 200, f"HTTP {response.status_code} {first}".strip()


def wait_ready(
    url: str,
    *,
    timeout: float,
    check_frequency: float,
    get: Callable[[str, float], tuple[bool, str]] = probe,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[bool, str, int]:
    """Poll until ``get`` says ready or ``timeout`` passes: (ready, last answer, attempts).
    Each request's own timeout is the check frequency, capped by what is left."""
    deadline = clock() + timeout
    attempts = 0
    last = "no answer"
    while True:
        remaining = deadline - clock()
        attempts += 1
        ok, last = get(url, max(min(check_frequency, remaining), 0.05))
        if ok:
            return True, last, attempts
        remaining = deadline - clock()
        if remaining <= 0:
            return False, last, attempts
        sleep(min(check_frequency, remaining))


def wait(
    url: Annotated[
        str, typer.Option(help="The readiness URL to poll (the agent's /ready).")
    ] = DEFAULT_URL,
    timeout: Annotated[str, typer.Option(help="Give up after this long.")] = "180s",
    check_frequency: Annotated[str, typer.Option(help="Time between two checks.")] = "1s",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on success.")] = False,
) -> None:
    """Wait until the sidecar is ready: exit 0 once URL answers 200, 1 on timeout."""
    total = parse_duration_flag("--timeout", timeout)
    every = parse_duration_flag("--check-frequency", check_frequency)
    if every <= 0:
        fail("--check-frequency: must be positive")
    ready, last, attempts = wait_ready(url, timeout=total, check_frequency=every)
    if not ready:
        fail(f"{url} not ready after {total:g}s ({attempts} checks); last answer: {last}")
    if not quiet:
        typer.echo(f"{url}: ready ({last})")


def register(app: typer.Typer) -> None:
    app.command("wait")(wait)
