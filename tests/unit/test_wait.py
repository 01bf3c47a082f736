"""``kumadp wait``: the polling loop (fake clock) and the command against a real HTTP
server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from kumadp.cli.main import _register_subcommands, app
from kumadp.cli.wait import probe, wait_ready


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_ready_after_a_few_checks() -> None:
    t = FakeTime()
    answers = iter([(False, "HTTP 503 NOT_READY"), (False, "HTTP 503 NOT_READY"), (True, "OK")])
    timeouts: list[float] = []

    def get(url: str, timeout: float) -> tuple[bool, str]:
        timeouts.append(timeout)
        return next(answers)

    ready, last, attempts = wait_ready(
        "http://x/ready", timeout=10, check_frequency=1, get=get, clock=t.clock, sleep=t.sleep
    )
    assert (ready, last, attempts) == (True, "OK", 3)
    assert t.sleeps == [1, 1]
    assert timeouts == [1, 1, 1]


def test_timeout_reports_the_last_answer() -> None:
    t = FakeTime()

    def get(url: str, timeout: float) -> tuple[bool, str]:
        t.now += timeout  # each check takes its whole timeout
        return False, "HTTP 503 TERMINATING"

    ready, last, attempts = wait_ready(
        "http://x/ready", timeout=2.5, check_frequency=1, get=get, clock=t.clock, sleep=t.sleep
    )
    assert not ready and last == "HTTP 503 TERMINATING"
    assert t.now - 100.0 == pytest.approx(2.5, abs=0.1)  # never much past the timeout
    assert attempts == 2


class _Ready(BaseHTTPRequestHandler):
    status = 503
    hits = 0

    def do_GET(self) -> None:
        cls = type(self)
        cls.hits += 1
        body = (b"READY" if cls.status == 200 else b"NOT_READY") + b"\ncertificate: none"
        self.send_response(cls.status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Ready]]]:
    handler = type("Handler", (_Ready,), {"status": 503, "hits": 0})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/ready", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def run(*args: str) -> tuple[int, str, str]:
    _register_subcommands()
    result = CliRunner().invoke(app, ["wait", *args])
    return result.exit_code, result.stdout, result.stderr


def test_probe_answers(server: tuple[str, type[_Ready]]) -> None:
    url, handler = server
    assert probe(url, 1.0) == (False, "HTTP 503 NOT_READY")
    handler.status = 200
    assert probe(url, 1.0) == (True, "HTTP 200 READY")
    ok, text = probe("http://127.0.0.1:1/ready", 1.0)
    assert not ok and "ConnectError" in text


def test_command_exits_0_once_ready(server: tuple[str, type[_Ready]]) -> None:
    url, handler = server
    handler.status = 200
    code, out, _ = run("--url", url, "--timeout", "5s", "--check-frequency", "50ms")
    assert code == 0, out
    assert out.strip() == f"{url}: ready (HTTP 200 READY)"
    assert run("--url", url, "--quiet")[:2] == (0, "")


def test_command_times_out_with_one_line(server: tuple[str, type[_Ready]]) -> None:
    url, handler = server
    code, _, err = run("--url", url, "--timeout", "300ms", "--check-frequency", "50ms")
    assert code == 1
    (line,) = err.strip().splitlines()
    assert line.startswith(f"Error: {url} not ready after 0.3s (")
    assert line.endswith("last answer: HTTP 503 NOT_READY")
    assert handler.hits >= 2


def test_bad_flags() -> None:
    code, _, err = run("--timeout", "soon")
    assert code == 1 and err.startswith("Error: --timeout:")
    code, _, err = run("--check-frequency", "0s")
    assert code == 1 and "--check-frequency: must be positive" in err
