"""Applying and removing the transparent-proxy rules with ``iptables-save``/``iptables-restore``.

Both operations read the current ``nat`` table first and apply one ``iptables-restore
--noflush`` transaction, so they are idempotent (install twice = the same rules; uninstall
when nothing is installed does nothing) and never touch rules or chains that are not ours.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kumadp.tproxy.rules import TransparentProxyConfig, install_text, uninstall_text

# Where iptables lives when PATH (e.g. a non-login shell, sudo) lacks the sbin directories.
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")
# Which pair of tools to use, in order: the distribution's default, then explicit variants.
_VARIANTS = (
    ("iptables-save", "iptables-restore"),
    ("iptables-nft-save", "iptables-nft-restore"),
    ("iptables-legacy-save", "iptables-legacy-restore"),
)
TIMEOUT_SECONDS = 30


class TransparentProxyError(Exception):
    """Installing or removing the rules failed; the message is one line for the user."""


@dataclass(frozen=True)
class Iptables:
    save: str
    restore: str


Runner = Callable[[Sequence[str], str | None], str]


def _which(name: str) -> str | None:
    path = os.environ.get("PATH", "")
    extra = os.pathsep.join(d for d in _SBIN if d not in path.split(os.pathsep))
    return shutil.which(name, path=os.pathsep.join(p for p in (path, extra) if p))


def find_iptables() -> Iptables:
    """The ``iptables-save``/``iptables-restore`` pair to use (IPv4)."""
    for save, restore in _VARIANTS:
        save_path, restore_path = _which(save), _which(restore)
        if save_path and restore_path:
            return Iptables(save=save_path, restore=restore_path)
    raise TransparentProxyError(
        "iptables not found: install iptables (iptables-save and iptables-restore)"
    )


def _run(args: Sequence[str], stdin: str | None) -> str:
    try:
        done = subprocess.run(
            list(args),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TransparentProxyError(f"{args[0]}: {exc}") from exc
    if done.returncode != 0:
        detail = " ".join((done.stderr or done.stdout).split()) or f"exit {done.returncode}"
        raise TransparentProxyError(f"{os.path.basename(args[0])} failed: {detail}")
    return done.stdout


def require_root() -> None:
    if os.geteuid() != 0:
        raise TransparentProxyError(
            "changing iptables rules needs root: run as root or with sudo (or use --dry-run)"
        )


class Installer:
    """Reads and changes the ``nat`` table. ``run`` is replaceable for tests."""

    def __init__(self, iptables: Iptables | None = None, run: Runner = _run) -> None:
        self._iptables = iptables
        self._run = run

    @property
    def iptables(self) -> Iptables:
        if self._iptables is None:
            self._iptables = find_iptables()
        return self._iptables

    def current_nat(self) -> str:
        return self._run([self.iptables.save, "-t", "nat"], None)

    def _restore(self, text: str) -> None:
        self._run([self.iptables.restore, "--noflush"], text)

    def install_plan(self, config: TransparentProxyConfig) -> str:
        return install_text(config, self.current_nat())

    def install(self, config: TransparentProxyConfig) -> str:
        """Install the rules (replacing ours if present); returns what was applied."""
        text = self.install_plan(config)
        self._restore(text)
        return text

    def uninstall_plan(self) -> str | None:
        return uninstall_text(self.current_nat())

    def uninstall(self) -> str | None:
        """Remove our jumps and chains; returns what was applied (None: nothing was there)."""
        text = self.uninstall_plan()
        if text is not None:
            self._restore(text)
        return text


def install(config: TransparentProxyConfig) -> str:
    require_root()
    return Installer().install(config)


def uninstall() -> str | None:
    require_root()
    return Installer().uninstall()
