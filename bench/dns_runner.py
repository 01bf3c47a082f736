"""The agent's resolver alone in its own process, for the dns benchmark: ``DnsServer`` with a
``NameTable`` of ``svc-<i>.mesh`` names (A 240.0.0.x), forwarding other names upstream.

    python -m bench.dns_runner --port P --names 100 --upstream 127.0.0.1:U
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from kumadp.agent.dns import DnsServer, parse_upstream
from kumadp.agent.nametable import NameTable


def mesh_names(count: int) -> dict[str, str]:
    """``svc-<i>.mesh`` -> its address, the same for our resolver and for dnsmasq."""
    return {f"svc-{i}.mesh": f"240.0.{i // 250}.{i % 250 + 1}" for i in range(count)}


async def serve(port: int, names: int, upstream: str) -> None:
    table = NameTable()
    table.update("bench", 30, {n: ([ip], []) for n, ip in mesh_names(names).items()})
    server = DnsServer(table, host="127.0.0.1", port=port, upstreams=[parse_upstream(upstream)])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(server.run(stop))
    await server.started.wait()
    print(f"listening on 127.0.0.1:{server.port}", flush=True)
    await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--names", type=int, default=100)
    parser.add_argument("--upstream", required=True, help="HOST:PORT")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.names, args.upstream))


if __name__ == "__main__":
    main()
