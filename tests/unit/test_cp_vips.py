"""VIP allocation (persisted, stable, released after a grace period) and the name table."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kumadp.cp.nametable import build_name_table, is_dns_name, name_records, service_names
from kumadp.cp.store import MemoryStore, SqliteStore, Store
from kumadp.cp.store.base import ChangeEvent, StoredResource
from kumadp.cp.vips import (
    VIRTUAL_IPS_TYPE,
    VipAllocator,
    VipEntry,
    VipError,
    VipMap,
    VipPoolExhaustedError,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "db")
    yield s
    await s.close()


class _Seen:
    """The change events of ``store`` so far (memory and SQLite deliver them at commit)."""

    def __init__(self, store: Store) -> None:
        self._sub = store.changes()
        self._events: list[ChangeEvent] = []

    def _update(self) -> list[ChangeEvent]:
        self._events.extend(self._sub.drain())
        return self._events

    def __len__(self) -> int:
        return len(self._update())

    def __eq__(self, other: object) -> bool:
        return self._update() == other

    def close(self) -> None:
        self._update()
        self._sub.close()


def _events(store: Store) -> tuple[_Seen, Callable[[], None]]:
    seen = _Seen(store)
    return seen, seen.close


def _all_addresses(vips: VipMap) -> list[str]:
    return [a for _, e in vips.items() for a in (e.vip, e.loopback)]


# --- allocation ---


async def test_allocates_distinct_addresses_in_the_pools(store: Store) -> None:
    vips = await VipAllocator(store).sync("default", {"web", "backend", "db"}, now=T0)
    assert list(vips) == ["backend", "db", "web"]
    addresses = _all_addresses(vips)
    assert len(set(addresses)) == len(addresses) == 6
    for service in vips:
        assert ipaddress.ip_address(vips.vip(service)) in ipaddress.ip_network("240.0.0.0/4")
        assert ipaddress.ip_address(vips.loopback(service)) in ipaddress.ip_network("127.1.0.0/16")
    assert vips.addresses() == {s: vips.vip(s) for s in vips}
    assert vips.addresses(loopback=True) == {s: vips.loopback(s) for s in vips}


async def test_stored_shape(store: Store) -> None:
    vips = await VipAllocator(store).sync("default", {"web"}, now=T0)
    stored = await store.get(VIRTUAL_IPS_TYPE, "default", "vips")
    assert stored is not None
    assert stored.spec == {
        "type": "VirtualIPs",
        "mesh": "default",
        "name": "vips",
        "cidr": "240.0.0.0/4",
        "loopbackCidr": "127.1.0.0/16",
        "services": {
            "web": {"vip": vips.vip("web"), "loopback": vips.loopback("web"), "lastSeen": None}
        },
    }
    assert vips.version == stored.version


async def test_stable_across_a_new_allocator_on_the_same_store(store: Store) -> None:
    first = await VipAllocator(store).sync("default", {"web", "backend"}, now=T0)
    seen, unsubscribe = _events(store)
    again = await VipAllocator(store).sync("default", {"web", "backend"}, now=T0 + HOUR)
    unsubscribe()
    assert again.addresses() == first.addresses()
    assert again.addresses(loopback=True) == first.addresses(loopback=True)
    assert seen == []


async def test_stable_across_a_reopened_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "db"
    s1 = SqliteStore(path)
    first = await VipAllocator(s1).sync("default", {"web", "backend"}, now=T0)
    await s1.close()
    s2 = SqliteStore(path)
    try:
        # a new service joins after the restart: the others keep theirs, no clash
        again = await VipAllocator(s2).sync("default", {"web", "backend", "db"}, now=T0)
    finally:
        await s2.close()
    assert {s: again.vip(s) for s in ("web", "backend")} == first.addresses()
    assert len(set(_all_addresses(again))) == 6


async def test_same_addresses_whatever_the_order_services_appear(store: Store) -> None:
    one = await VipAllocator(store).sync("m1", {"a"}, now=T0)
    one = await VipAllocator(store).sync("m1", {"a", "b"}, now=T0)
    other = await VipAllocator(MemoryStore()).sync("m1", {"b", "a"}, now=T0)
    assert one.addresses() == other.addresses()


async def test_meshes_are_independent(store: Store) -> None:
    allocator = VipAllocator(store)
    a = await allocator.sync("a", {"web"}, now=T0)
    b = await allocator.sync("b", {"db"}, now=T0)
    assert list(a) == ["web"]
    assert list(b) == ["db"]
    assert list(await allocator.get("a")) == ["web"]


async def test_no_write_when_nothing_changed(store: Store) -> None:
    allocator = VipAllocator(store)
    first = await allocator.sync("default", {"web", "backend"}, now=T0)
    seen, unsubscribe = _events(store)
    for minute in range(5):
        again = await allocator.sync("default", {"backend", "web"}, now=T0 + minute * HOUR)
        assert again is first  # cached: same object, same version
    unsubscribe()
    assert seen == []


async def test_no_write_for_an_empty_mesh(store: Store) -> None:
    seen, unsubscribe = _events(store)
    vips = await VipAllocator(store).sync("default", set(), now=T0)
    unsubscribe()
    assert (len(vips), vips.version) == (0, 0)
    assert seen == []


async def test_grace_period_then_release(store: Store) -> None:
    allocator = VipAllocator(store, grace_period=HOUR)
    first = await allocator.sync("default", {"web", "backend"}, now=T0)
    seen, unsubscribe = _events(store)

    gone = await allocator.sync("default", {"web"}, now=T0)
    assert len(seen) == 1  # lastSeen written once
    assert gone.entries["backend"] == VipEntry(
        first.vip("backend"), first.loopback("backend"), last_seen=T0
    )
    assert not gone.entries["backend"].active and gone.entries["web"].active

    still = await allocator.sync("default", {"web"}, now=T0 + HOUR - timedelta(seconds=1))
    assert still is gone and len(seen) == 1  # in its grace period: nothing to write

    released = await allocator.sync("default", {"web"}, now=T0 + HOUR)
    assert list(released) == ["web"]
    assert len(seen) == 2
    unsubscribe()


async def test_returning_service_keeps_its_addresses(store: Store) -> None:
    allocator = VipAllocator(store, grace_period=HOUR)
    first = await allocator.sync("default", {"web", "backend"}, now=T0)
    await allocator.sync("default", {"web"}, now=T0)
    back = await allocator.sync("default", {"web", "backend"}, now=T0 + 30 * timedelta(minutes=1))
    assert back.entries["backend"] == first.entries["backend"]  # active again, same addresses
    # a fresh absence starts a fresh grace period
    await allocator.sync("default", {"web"}, now=T0 + 2 * HOUR)
    kept = await allocator.sync("default", {"web"}, now=T0 + 2 * HOUR + 59 * timedelta(minutes=1))
    assert "backend" in kept


async def test_an_address_in_its_grace_period_is_not_handed_out(store: Store) -> None:
    allocator = VipAllocator(
        store, cidr="10.0.0.0/30", loopback_cidr="127.1.0.0/30", grace_period=HOUR
    )
    first = await allocator.sync("default", {"a", "b"}, now=T0)
    await allocator.sync("default", {"a"}, now=T0)
    with pytest.raises(
        VipPoolExhaustedError, match=r"'default'.*10\.0\.0\.0/30.*no address for: c"
    ):
        await allocator.sync("default", {"a", "c"}, now=T0 + timedelta(minutes=1))
    reused = await allocator.sync("default", {"a", "c"}, now=T0 + HOUR)
    assert reused.vip("c") == first.vip("b")  # released after the grace period: free again


async def test_exhaustion_is_a_clear_error_with_the_partial_map(store: Store) -> None:
    allocator = VipAllocator(store, cidr="10.0.0.0/30")  # two usable addresses
    with pytest.raises(VipPoolExhaustedError) as info:
        await allocator.sync("default", {"a", "b", "c"}, now=T0)
    assert info.value.missing == ("c",)
    assert list(info.value.partial) == ["a", "b"]
    assert {info.value.partial.vip(s) for s in "ab"} == {"10.0.0.1", "10.0.0.2"}
    # what fitted was stored
    assert list(await allocator.get("default")) == ["a", "b"]


async def test_network_and_broadcast_addresses_are_never_used(store: Store) -> None:
    allocator = VipAllocator(store, cidr="10.0.0.0/29", loopback_cidr="127.1.0.0/29")
    vips = await allocator.sync("default", {f"s{i}" for i in range(6)}, now=T0)
    assert sorted(vips.addresses().values()) == [f"10.0.0.{i}" for i in range(1, 7)]
    assert sorted(vips.addresses(loopback=True).values()) == [f"127.1.0.{i}" for i in range(1, 7)]


async def test_concurrent_syncs_of_one_allocator_do_not_double_allocate(store: Store) -> None:
    allocator = VipAllocator(store, cidr="10.0.0.0/28")
    results = await asyncio.gather(
        *(allocator.sync("default", {f"s{i}" for i in range(n)}, now=T0) for n in range(1, 10))
    )
    final = results[-1]
    assert len(set(final.addresses().values())) == 9
    for partial in results:  # each result is consistent with the final one
        for service in partial:
            assert partial.vip(service) == final.vip(service)


class _InterleavingStore:
    """Delegates to a store, but every ``get`` waits until ``parties`` gets are in flight,
    so concurrent allocators all read the same version before any of them writes."""

    def __init__(self, inner: Store, parties: int) -> None:
        self.inner = inner
        self.parties = parties
        self.waiting = 0
        self.released = asyncio.Event()

    async def get(self, type: str, mesh: str, name: str) -> StoredResource | None:
        found = await self.inner.get(type, mesh, name)
        if not self.released.is_set():
            self.waiting += 1
            if self.waiting >= self.parties:
                self.released.set()
            await self.released.wait()
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_concurrent_allocators_on_one_store_do_not_double_allocate(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    shared: Any = _InterleavingStore(store, parties=3)
    allocators = [VipAllocator(shared, cidr="10.0.0.0/28") for _ in range(3)]
    with caplog.at_level("DEBUG", logger="kumadp.cp.vips"):
        results = await asyncio.gather(
            allocators[0].sync("default", {"a", "b"}, now=T0),
            allocators[1].sync("default", {"a", "b", "c"}, now=T0),
            allocators[2].sync("default", {"d", "a", "b", "c"}, now=T0),
        )
    assert sum("retrying" in m for m in caplog.messages) >= 2  # the losers re-read and retried
    final = await VipAllocator(store, cidr="10.0.0.0/28").get("default")
    assert len(set(final.addresses().values())) == len(final)
    for result in results:
        for service in result:
            if service in final:
                assert result.vip(service) == final.vip(service)
    # the last writer wanted d and saw the others' work: nobody was lost or clashed
    assert {"a", "b", "c", "d"} <= set(final)


async def test_addresses_outside_a_changed_cidr_are_reallocated(store: Store) -> None:
    await VipAllocator(store, cidr="10.0.0.0/24").sync("default", {"web"}, now=T0)
    moved = await VipAllocator(store, cidr="10.1.0.0/24").sync("default", {"web"}, now=T0)
    assert ipaddress.ip_address(moved.vip("web")) in ipaddress.ip_network("10.1.0.0/24")
    stored = await store.get(VIRTUAL_IPS_TYPE, "default", "vips")
    assert stored is not None and stored.spec["cidr"] == "10.1.0.0/24"


async def test_duplicated_stored_addresses_are_repaired(store: Store) -> None:
    await store.put(
        VIRTUAL_IPS_TYPE,
        "default",
        "vips",
        {
            "type": VIRTUAL_IPS_TYPE,
            "mesh": "default",
            "name": "vips",
            "cidr": "240.0.0.0/4",
            "loopbackCidr": "127.1.0.0/16",
            "services": {
                "a": {"vip": "240.0.0.9", "loopback": "127.1.0.9", "lastSeen": None},
                "b": {"vip": "240.0.0.9", "loopback": "127.1.0.10", "lastSeen": None},
            },
        },
    )
    vips = await VipAllocator(store).sync("default", {"a", "b"}, now=T0)
    assert vips.vip("a") == "240.0.0.9"
    assert vips.vip("b") != "240.0.0.9"


async def test_forget_drops_the_mesh(store: Store) -> None:
    allocator = VipAllocator(store)
    await allocator.sync("gone", {"web"}, now=T0)
    await allocator.forget("gone")
    assert await store.get(VIRTUAL_IPS_TYPE, "gone", "vips") is None
    assert len(await allocator.get("gone")) == 0


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="VIP CIDR"):
        VipAllocator(MemoryStore(), cidr="nonsense")
    with pytest.raises(ValueError, match="not a loopback range"):
        VipAllocator(MemoryStore(), loopback_cidr="10.0.0.0/16")
    with pytest.raises(ValueError, match="grace period"):
        VipAllocator(MemoryStore(), grace_period=-HOUR)
    assert issubclass(VipPoolExhaustedError, VipError)


# --- name table ---


def _map(entries: dict[str, tuple[str, str]]) -> VipMap:
    return VipMap(
        mesh="default",
        version=1,
        entries={s: VipEntry(vip=v, loopback=lo) for s, (v, lo) in entries.items()},
    )


def test_name_table_names_and_addresses() -> None:
    vips = _map(
        {
            "web": ("240.0.0.1", "127.1.0.1"),
            "Backend": ("240.0.0.2", "127.1.0.2"),
            "backend_default_svc_80": ("240.0.0.3", "127.1.0.3"),
        }
    )
    table = build_name_table(vips, loopback=False)
    assert table.ttl_seconds == 30
    assert [(r.name, list(r.ipv4), list(r.ipv6)) for r in table.records] == [
        ("backend.default.svc.80.mesh", ["240.0.0.3"], []),
        ("backend.mesh", ["240.0.0.2"], []),
        ("backend_default_svc_80.mesh", ["240.0.0.3"], []),
        ("web.mesh", ["240.0.0.1"], []),
    ]
    loop = build_name_table(vips, loopback=True, ttl=5)
    assert loop.ttl_seconds == 5
    assert {r.name: list(r.ipv4) for r in loop.records}["web.mesh"] == ["127.1.0.1"]
    assert loop.version != table.version


def test_name_table_version_is_a_content_hash() -> None:
    a = build_name_table(_map({"web": ("240.0.0.1", "127.1.0.1")}), loopback=False)
    b = build_name_table(_map({"web": ("240.0.0.1", "127.1.0.1")}), loopback=False)
    c = build_name_table(_map({"web": ("240.0.0.2", "127.1.0.1")}), loopback=False)
    assert a.version and a.version == b.version != c.version
    assert a == b


def test_invalid_names_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    vips = _map(
        {
            "has space": ("240.0.0.1", "127.1.0.1"),
            "a/b": ("240.0.0.2", "127.1.0.2"),
            "-dash": ("240.0.0.3", "127.1.0.3"),
            "ok": ("240.0.0.4", "127.1.0.4"),
        }
    )
    with caplog.at_level("WARNING", logger="kumadp.cp.nametable"):
        table = build_name_table(vips, loopback=False)
        build_name_table(vips, loopback=False)
    assert [r.name for r in table.records] == ["ok.mesh"]
    assert sum("has space" in m for m in caplog.messages) == 1  # logged once


def test_own_name_wins_over_another_services_variant() -> None:
    vips = _map({"a_b": ("240.0.0.1", "127.1.0.1"), "a.b": ("240.0.0.2", "127.1.0.2")})
    records = name_records(build_name_table(vips, loopback=False))
    assert list(records["a.b.mesh"].ipv4) == ["240.0.0.2"]
    assert list(records["a_b.mesh"].ipv4) == ["240.0.0.1"]


def test_ipv6_vips_go_to_ipv6() -> None:
    vips = _map({"web": ("fd00::1", "127.1.0.1")})
    (record,) = build_name_table(vips, loopback=False).records
    assert (list(record.ipv4), list(record.ipv6)) == ([], ["fd00::1"])


@pytest.mark.parametrize(
    ("service", "names"),
    [
        ("web", ["web.mesh"]),
        ("WEB", ["web.mesh"]),
        ("a_b", ["a_b.mesh", "a.b.mesh"]),
        ("a__b", ["a__b.mesh"]),  # the variant has an empty label
        ("x" * 64, []),
    ],
)
def test_service_names(service: str, names: list[str]) -> None:
    assert service_names(service) == names
    assert all(is_dns_name(n) for n in names)


async def test_allocator_to_name_table(store: Store) -> None:
    vips = await VipAllocator(store).sync("default", {"web", "backend"}, now=T0)
    records = name_records(build_name_table(vips, loopback=True))
    assert list(records["backend.mesh"].ipv4) == [vips.loopback("backend")]
