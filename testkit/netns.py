"""Network namespaces for end-to-end tests: created with random ``kdp-...`` names, joined by a
veth pair, and always removed (with their ``/etc/netns/<name>`` directory) on ``close``.

Nothing here touches the host's own network: every interface, address, route and iptables
rule is made inside a namespace this module created. Root only (the caller checks
``why_not()`` first and skips with its reason).
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import site
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import kumadp

ETC_NETNS = Path("/etc/netns")  # `ip netns exec` bind-mounts /etc/netns/<ns>/* over /etc/*


def why_not(tools: Sequence[str] = ("ip",)) -> str | None:
    """Why namespaces cannot be used here (None when they can)."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "needs root to create network namespaces (and iptables rules in them)"
    for tool in tools:
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def run(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} -> {done.returncode}: {done.stderr}{done.stdout}")
    return done


def as_user(uid: int) -> list[str]:
    """The prefix running a command as ``uid`` (same gid, no supplementary groups)."""
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


@dataclass
class Namespace:
    name: str
    address: str  # its end of the veth pair
    made_etc_netns: bool = False

    def exec(self, *args: str) -> list[str]:
        """``args`` as a command line run inside this namespace."""
        return ["ip", "netns", "exec", self.name, *args]

    def run(
        self, *args: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return run(*self.exec(*args), check=check, timeout=timeout)

    def set_resolver(self, nameserver: str) -> None:
        """``/etc/resolv.conf`` as seen by commands started with ``exec`` from now on."""
        directory = ETC_NETNS / self.name
        try:
            ETC_NETNS.mkdir(mode=0o755)
            self.made_etc_netns = True  # removed again (when empty) by VethPair.close
        except FileExistsError:
            pass
        directory.mkdir(exist_ok=True)
        (directory / "resolv.conf").write_text(f"nameserver {nameserver}\n")


@dataclass
class VethPair:
    """Two namespaces on ``10.99.<n>.0/24`` (``.1`` and ``.2``), ``lo`` up in both."""

    left: Namespace
    right: Namespace
    _created: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, left_role: str, right_role: str) -> VethPair:
        suffix = secrets.token_hex(3)
        subnet = f"10.99.{secrets.randbelow(250) + 1}"
        pair = cls(
            Namespace(f"kdp-{left_role}-{suffix}", f"{subnet}.1"),
            Namespace(f"kdp-{right_role}-{suffix}", f"{subnet}.2"),
        )
        try:
            for ns in (pair.left, pair.right):
                run("ip", "netns", "add", ns.name)
                pair._created.append(ns.name)
            # Made inside the left namespace and its peer moved: no link ever exists on the host.
            run(
                "ip",
                "-n",
                pair.left.name,
                "link",
                "add",
                "veth0",
                "type",
                "veth",
                "peer",
                "name",
                "veth1",
            )
            run("ip", "-n", pair.left.name, "link", "set", "veth1", "netns", pair.right.name)
            for ns, dev in ((pair.left, "veth0"), (pair.right, "veth1")):
                run("ip", "-n", ns.name, "addr", "add", f"{ns.address}/24", "dev", dev)
                run("ip", "-n", ns.name, "link", "set", dev, "up")
                run("ip", "-n", ns.name, "link", "set", "lo", "up")
        except BaseException:
            pair.close()
            raise
        return pair

    def default_route(self, ns: Namespace, via: Namespace) -> None:
        run("ip", "-n", ns.name, "route", "add", "default", "via", via.address)

    def close(self) -> None:
        """Delete the namespaces and their ``/etc/netns`` directories (idempotent). Stop the
        processes running in them first: a namespace lives on while a process is in it."""
        for name in self._created:
            run("ip", "netns", "delete", name, check=False)
            shutil.rmtree(ETC_NETNS / name, ignore_errors=True)
        self._created.clear()
        if self.left.made_etc_netns or self.right.made_etc_netns:
            with contextlib.suppress(OSError):  # not empty: someone else uses it now
                ETC_NETNS.rmdir()


@functools.cache
def python_for_user(uid: int) -> list[str] | None:
    """``[python, "-I", "-S", "-c", BOOT]``: append ``kumadp`` arguments to run the CLI as ``uid``.

    This interpreter when that user may run it; else a same-version interpreter outside any
    private directory (``/usr/bin``, ``/usr/local/bin``) that adds this interpreter's
    site-packages and the project (a venv whose base Python lives under ``/root`` cannot be
    run by another user). ``-I -S``: no system dist-packages (e.g. Debian's older
    ``cryptography``) ahead of ours. Each candidate is probed as ``uid``; None when none
    works."""
    boot = (
        "import site, sys\n"
        + "".join(f"site.addsitedir({p!r})\n" for p in _site_dirs())
        + "from kumadp.cli.main import main\n"
        + "sys.argv[0] = 'kumadp'\n"
        + "main()\n"
    )
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [sys.executable, f"/usr/bin/{minor}", f"/usr/local/bin/{minor}"]
    for python in dict.fromkeys(candidates):
        if not os.path.isfile(python):
            continue
        # Through a second exec: the first one (by setpriv) may still resolve the path with
        # root's capabilities, the agent's own re-exec of sys.executable (Envoy's wrapper)
        # will not.
        again = (
            "import subprocess, sys\n"
            f"argv = [sys.executable, '-I', '-S', '-c', {boot!r}, 'version']\n"
            "sys.exit(subprocess.run(argv).returncode)\n"
        )
        probe = [*as_user(uid), python, "-c", again]
        try:
            done = subprocess.run(probe, capture_output=True, text=True, timeout=30, cwd="/")
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.startswith("kumadp "):
            return [python, "-I", "-S", "-c", boot]
    return None


def _site_dirs() -> list[str]:
    project = str(Path(kumadp.__file__).resolve().parent.parent)
    return [*site.getsitepackages(), project]
