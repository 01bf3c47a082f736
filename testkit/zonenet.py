"""Zones in network namespaces, for the cross-zone tests, benchmarks and demo: a "wan"
namespace routes between one namespace per zone, and holds the global CP.

::

    ns zone-a 10.99.1.2 ---veth--- 10.99.1.1 \\
    ns zone-b 10.99.2.2 ---veth--- 10.99.2.1 -- ns wan (forwards; global CP on 10.98.0.1)
    ns zone-c 10.99.3.2 ---veth--- 10.99.3.1 /

Inside a zone everything binds 127.0.0.1 (its CP, apps, sidecars, egress) except the zone
ingress, on the zone's address: the only address another zone can reach. The zone CPs dial
the global CP's KDS at 10.98.0.1.

This process enters a namespace with ``setns`` (``entered``): sockets it opens and
processes it starts meanwhile live there, so ``testkit.mesh.MeshEnv`` works unchanged inside
``with star.enter("zone-a"):``. Root only; ``why_not()`` says why not otherwise. Nothing
touches the host's own interfaces: every link and address is made inside these namespaces,
and ``close`` deletes them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from testkit.netns import Namespace, run
from testkit.netns import why_not as _why_not

CLONE_NEWNET = 0x40000000
WAN_ADDRESS = "10.98.0.1"  # the global CP, on the wan namespace's loopback
_libc = ctypes.CDLL(None, use_errno=True)


def why_not() -> str | None:
    reason = _why_not(("ip", "sysctl"))
    if reason is None and not os.path.isdir("/proc/thread-self/ns"):
        return "no /proc/thread-self/ns to enter namespaces with"
    return reason


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def entered(ns: str) -> Iterator[None]:
    """This thread in network namespace ``ns`` (as ``ip netns`` named it) for the block."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(target)
    finally:
        os.close(own)


@dataclass
class Star:
    """The wan namespace and one namespace per zone (see the module docstring)."""

    wan: Namespace
    zones: dict[str, Namespace] = field(default_factory=dict)
    wan_sides: dict[str, str] = field(default_factory=dict)  # zone -> wan's address on its link
    _created: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, zones: Sequence[str]) -> Star:
        suffix = secrets.token_hex(3)
        star = cls(Namespace(f"kdp-wan-{suffix}", WAN_ADDRESS))
        try:
            star._add(star.wan.name)
            wan = star.wan.name
            run("ip", "-n", wan, "link", "set", "lo", "up")
            run("ip", "-n", wan, "addr", "add", f"{WAN_ADDRESS}/32", "dev", "lo")
            run("ip", "netns", "exec", wan, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            for n, zone in enumerate(zones, start=1):
                star._link(zone, n, suffix)
        except BaseException:
            star.close()
            raise
        return star

    def _add(self, name: str) -> None:
        run("ip", "netns", "add", name)
        self._created.append(name)

    def _link(self, zone: str, n: int, suffix: str) -> None:
        ns = Namespace(f"kdp-{zone}-{suffix}", f"10.99.{n}.2")
        self._add(ns.name)
        wan, far = self.wan.name, f"z{n}"
        # made inside the wan namespace and one end moved: no link ever exists on the host
        run("ip", "-n", wan, "link", "add", far, "type", "veth", "peer", "name", f"p{n}")
        run("ip", "-n", wan, "link", "set", f"p{n}", "netns", ns.name)
        run("ip", "-n", ns.name, "link", "set", f"p{n}", "name", "eth0")
        run("ip", "-n", wan, "addr", "add", f"10.99.{n}.1/24", "dev", far)
        run("ip", "-n", ns.name, "addr", "add", f"{ns.address}/24", "dev", "eth0")
        for name, dev in ((wan, far), (ns.name, "eth0"), (ns.name, "lo")):
            run("ip", "-n", name, "link", "set", dev, "up")
        run("ip", "-n", ns.name, "route", "add", "default", "via", f"10.99.{n}.1")
        self.zones[zone] = ns
        self.wan_sides[zone] = f"10.99.{n}.1"

    def enter(self, zone: str | None = None) -> contextlib.AbstractContextManager[None]:
        """Into ``zone``'s namespace, or the wan namespace (``None``)."""
        return entered(self.wan.name if zone is None else self.zones[zone].name)

    def address(self, zone: str) -> str:
        """The zone's own address: the one other zones reach (its ingress's)."""
        return self.zones[zone].address

    def close(self) -> None:
        """Delete every namespace (stop the processes in them first)."""
        for name in reversed(self._created):
            run("ip", "netns", "delete", name, check=False)
        self._created.clear()


def connects(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to ``host:port`` succeeds (from the current namespace)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


__all__ = ["WAN_ADDRESS", "Star", "connects", "entered", "why_not"]
