"""A tiny leader-only writer in a process of its own, for the fencing test: it runs a
``PostgresElection`` and, every 50 ms, tries a fenced write of ``Probe/<id>`` counting up;
it prints ``leader``, ``wrote N`` and ``refused: ...`` lines (flushed) as they happen.

    python -m testkit.leader_probe DSN INSTANCE_ID
"""

from __future__ import annotations

import asyncio
import sys

from kumadp.cp.store.base import NotLeaderError, StoreError
from kumadp.cp.store.postgres import PostgresStore
from kumadp.cp.store.postgres_election import PostgresElection
from kumadp.cp.store.postgres_settings import PostgresSettings

PROBE_TYPE = "Probe"


async def main(dsn: str, instance_id: str) -> None:
    store = PostgresStore(PostgresSettings(dsn=dsn))
    await store.open()
    election = PostgresElection(store, instance_id, lease=1.0)
    fenced = election.fenced(store)
    stop = asyncio.Event()
    task = asyncio.create_task(election.run(stop))
    await election.wait_for(True)
    print("leader", flush=True)
    n = 0
    try:
        while True:
            n += 1
            spec = {"type": PROBE_TYPE, "name": "probe", "writer": instance_id, "n": n}
            try:
                await fenced.put(PROBE_TYPE, "", "probe", spec)
                print(f"wrote {n}", flush=True)
            except NotLeaderError as exc:
                print(f"refused: {exc}", flush=True)
            except StoreError as exc:
                print(f"error: {exc}", flush=True)
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
