"""A tiny application for the demo and the end-to-end tests.

    python -m kumadp.devtools.demo_app http --port 8080 --name backend-1
    python -m kumadp.devtools.demo_app http --port 8081 --name web-1 --upstream http://127.0.0.1:10001
    python -m kumadp.devtools.demo_app tcp-echo --port 9000 --name echo-1

``http`` answers ``GET /`` with JSON naming the instance; with ``--upstream`` it first calls
the upstream (through its sidecar) and includes that answer. ``tcp-echo`` echoes each line
prefixed with the instance name.
"""

from __future__ import annotations

import argparse
import json
import socketserver
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve_http(port: int, name: str, upstream: str | None) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body are separate writes: without this, Nagle + delayed ACK add 40 ms
        # to every keep-alive request.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            body: dict[str, object] = {"instance": name, "path": self.path}
            status = 200
            if upstream and self.path != "/healthz":  # /healthz never calls the upstream
                started = time.perf_counter()
                try:
                    with urllib.request.urlopen(upstream + self.path, timeout=5) as resp:
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
    args = parser.parse_args()
    try:
        if args.kind == "http":
            serve_http(args.port, args.name, args.upstream)
        else:
            serve_tcp_echo(args.port, args.name)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
