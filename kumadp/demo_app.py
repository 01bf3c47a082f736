"""A tiny application for the demo and the end-to-end tests.

    python -m kumadp.demo_app http --port 8080 --name backend-1
    python -m kumadp.demo_app http --port 8081 --name web-1 --upstream http://127.0.0.1:10001
    python -m kumadp.demo_app http --port 8081 --name web-1 \
        --upstream http://backend.mesh --resolver 127.0.0.1:15053
    python -m kumadp.demo_app tcp-echo --port 9000 --name echo-1

``http`` answers ``GET /`` with JSON naming the instance; with ``--upstream`` it first calls
the upstream (through its sidecar) and includes that answer. ``--resolver`` resolves the
upstream's host name with that DNS server (the sidecar's ``.mesh`` resolver) instead of the
system's, as an application would after pointing its resolv.conf at the sidecar.
``tcp-echo`` echoes each line prefixed with the instance name.

Misbehaving backends, for the resilience tests (``/healthz`` is never affected):
``--fail-every N`` answers 503 to every N-th request (N=3: fails 1 in 3), ``--delay S``
waits S seconds before answering, ``--status CODE`` answers every request with CODE,
``--unhealthy`` answers 503 on ``/health`` (the path a MeshHealthCheck can probe; 200
otherwise).
"""

from __future__ import annotations

import argparse
import itertools
import json
import socketserver
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def resolve(host: str, resolver: str) -> str:
    """The first A record for ``host`` from the DNS server at ``resolver`` (HOST:PORT)."""
    from dnslib import QTYPE, DNSRecord

    server, _, server_port = resolver.rpartition(":")
    reply = DNSRecord.parse(DNSRecord.question(host, "A").send(server, int(server_port), timeout=2))
    for rr in reply.rr:
        if rr.rtype == QTYPE.A:
            return str(rr.rdata)
    raise OSError(f"{host}: no address from {resolver}")


class Misbehaviour:
    """How a backend misbehaves (see the module's docstring); the default: not at all."""

    def __init__(
        self, fail_every: int = 0, delay: float = 0.0, status: int = 200, unhealthy: bool = False
    ) -> None:
        self.fail_every, self.delay, self.status, self.unhealthy = (
            fail_every,
            delay,
            status,
            unhealthy,
        )
        self._count = itertools.count(1)
        self._lock = threading.Lock()

    def status_for(self, path: str) -> int:
        """The status to answer ``path`` with (after the delay, if any)."""
        if path == "/health":
            return 503 if self.unhealthy else 200
        if self.delay:
            time.sleep(self.delay)
        if self.fail_every:
            with self._lock:
                n = next(self._count)
            if n % self.fail_every == 0:
                return 503
        return self.status


def serve_http(
    port: int,
    name: str,
    upstream: str | None,
    resolver: str | None = None,
    misbehaviour: Misbehaviour | None = None,
) -> None:
    behaviour = misbehaviour or Misbehaviour()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body are separate writes: without this, Nagle + delayed ACK add 40 ms
        # to every keep-alive request.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            body: dict[str, object] = {"instance": name, "path": self.path}
            status = 200 if self.path == "/healthz" else behaviour.status_for(self.path)
            if upstream and self.path not in ("/healthz", "/health"):  # never the upstream
                started = time.perf_counter()
                try:
                    url, headers = upstream + self.path, {}
                    if resolver:
                        parts = urllib.parse.urlsplit(upstream)
                        host = parts.hostname or ""
                        address = resolve(host, resolver)
                        body["resolved"] = {host: address}
                        netloc = address + (f":{parts.port}" if parts.port else "")
                        url = parts._replace(netloc=netloc).geturl() + self.path
                        headers["host"] = parts.netloc
                    request = urllib.request.Request(url, headers=headers)
                    with urllib.request.urlopen(request, timeout=5) as resp:
                        body["upstream"] = json.loads(resp.read())
                except (urllib.error.URLError, OSError, ValueError) as exc:
                    status = 502
                    body["error"] = f"calling {upstream}: {exc}"
                body["upstream_ms"] = round((time.perf_counter() - started) * 1000, 2)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    ThreadingHTTPServer.daemon_threads = True
    with ThreadingHTTPServer(("127.0.0.1", port), Handler) as server:
        server.serve_forever()


def serve_tcp_echo(port: int, name: str) -> None:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for line in self.rfile:
                self.wfile.write(f"{name}: ".encode() + line)

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler) as server:
        server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["http", "tcp-echo"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--upstream")
    parser.add_argument("--resolver", help="HOST:PORT of the DNS server for --upstream")
    parser.add_argument("--fail-every", type=int, default=0, help="503 to every N-th request")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering")
    parser.add_argument("--status", type=int, default=200, help="status of every answer")
    parser.add_argument("--unhealthy", action="store_true", help="503 on /health")
    args = parser.parse_args()
    behaviour = Misbehaviour(args.fail_every, args.delay, args.status, args.unhealthy)
    try:
        if args.kind == "http":
            serve_http(args.port, args.name, args.upstream, args.resolver, behaviour)
        else:
            serve_tcp_echo(args.port, args.name)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
