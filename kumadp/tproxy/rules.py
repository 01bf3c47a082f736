"""Transparent-proxy iptables rules as ``iptables-restore`` input. Pure: no processes, no I/O
except looking a user name up in the password database.

The rules follow the shape of Kuma's (``kumactl install transparent-proxy``), in the ``nat``
table, with chains prefixed ``KUMA_MESH_``::

    PREROUTING -p tcp                    -> KUMA_MESH_INBOUND
    KUMA_MESH_INBOUND  excluded ports    -> RETURN, else -> KUMA_MESH_INBOUND_REDIRECT
    KUMA_MESH_INBOUND_REDIRECT           -> REDIRECT :15006

    OUTPUT -p tcp (and udp/53 with DNS)  -> KUMA_MESH_OUTBOUND
    KUMA_MESH_OUTBOUND
        DNS (udp and tcp 53): from the kuma-dp user -> RETURN, else REDIRECT :15053
        excluded ports                               -> RETURN
        -s 127.0.0.6 -o lo                           -> RETURN  (inbound passthrough to the app)
        ! -d 127.0.0.1 -o lo, kuma-dp user           -> KUMA_MESH_INBOUND_REDIRECT
                                                        (Envoy calling its own host's address)
        -o lo, not the kuma-dp user                  -> RETURN  (the app talking to itself)
        the kuma-dp user                             -> RETURN  (Envoy and the agent: no loop)
        -d 127.0.0.1                                 -> RETURN
        anything else                                -> KUMA_MESH_OUTBOUND_REDIRECT
    KUMA_MESH_OUTBOUND_REDIRECT          -> REDIRECT :15001

Differences from Kuma: IPv4 only (``ip6tables`` later); no conntrack zone split for DNS in the
``raw`` table; no ``--exclude-*-ips``; excluded ports apply to TCP only (as Kuma's do).
"""

from __future__ import annotations

import pwd
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

CHAIN_PREFIX = "KUMA_MESH_"
INBOUND = "KUMA_MESH_INBOUND"
INBOUND_REDIRECT = "KUMA_MESH_INBOUND_REDIRECT"
OUTBOUND = "KUMA_MESH_OUTBOUND"
OUTBOUND_REDIRECT = "KUMA_MESH_OUTBOUND_REDIRECT"
CHAINS = (INBOUND, INBOUND_REDIRECT, OUTBOUND, OUTBOUND_REDIRECT)

DEFAULT_KUMA_DP_USER = "kuma-dp"  # Kuma's default user name...
DEFAULT_KUMA_DP_UID = 5678  # ...and the uid it falls back to when no such user exists
INBOUND_PASSTHROUGH_SOURCE = "127.0.0.6"  # the source Envoy's inbound passthrough binds to
DNS_PORT = 53

_BUILTIN = ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")


class RulesError(ValueError):
    """A configuration that cannot become rules (names the option)."""


@dataclass(frozen=True)
class TransparentProxyConfig:
    redirect_outbound_port: int = 15001
    redirect_inbound_port: int = 15006
    redirect_inbound: bool = True
    redirect_dns: bool = True
    dns_port: int = 15053
    # uid or user name of Envoy and the agent; None: user "kuma-dp", else uid 5678 (Kuma's).
    kuma_dp_user: str | int | None = None
    exclude_inbound_ports: tuple[int, ...] = field(default=())
    exclude_outbound_ports: tuple[int, ...] = field(default=())
    ipv6: bool = False  # not supported yet: IPv4 only


def resolve_uid(user: str | int | None) -> int:
    """The uid of ``user``: a number, a user name, or None for Kuma's default."""
    if isinstance(user, int):
        if user < 0:
            raise RulesError(f"--kuma-dp-user: must not be negative, got {user}")
        return user
    if user is None:
        try:
            return pwd.getpwnam(DEFAULT_KUMA_DP_USER).pw_uid
        except KeyError:
            return DEFAULT_KUMA_DP_UID
    text = user.strip()
    if not text:
        raise RulesError("--kuma-dp-user: must not be empty")
    if text.isdigit():
        return int(text)
    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        raise RulesError(f"--kuma-dp-user: no user named {text!r}") from None


def parse_ports(flag: str, text: str) -> tuple[int, ...]:
    """``"22,9901"`` -> ``(22, 9901)``; empty -> ``()``; a bad item names ``flag``."""
    ports: list[int] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if not item.isdigit() or not 1 <= int(item) <= 65535:
            raise RulesError(f"{flag}: {item!r} is not a port (1-65535)")
        if int(item) not in ports:
            ports.append(int(item))
    return tuple(ports)


def _check(config: TransparentProxyConfig) -> None:
    if config.ipv6:
        raise RulesError("--ipv6: not supported yet (kumadp redirects IPv4 only)")
    for flag, port in (
        ("--redirect-outbound-port", config.redirect_outbound_port),
        ("--redirect-inbound-port", config.redirect_inbound_port),
        ("--dns-port", config.dns_port),
    ):
        if not 1 <= port <= 65535:
            raise RulesError(f"{flag}: must be 1-65535, got {port}")
    if config.redirect_inbound and config.redirect_inbound_port == config.redirect_outbound_port:
        raise RulesError("--redirect-inbound-port: must differ from --redirect-outbound-port")
    for flag, ports in (
        ("--exclude-inbound-ports", config.exclude_inbound_ports),
        ("--exclude-outbound-ports", config.exclude_outbound_ports),
    ):
        for port in ports:
            if not 1 <= port <= 65535:
                raise RulesError(f"{flag}: must be 1-65535, got {port}")


def rule_lines(config: TransparentProxyConfig) -> list[str]:
    """The ``-A`` rules, in order (without the table header, chain declarations or COMMIT)."""
    _check(config)
    uid = resolve_uid(config.kuma_dp_user)
    owner = f"-m owner --uid-owner {uid}"
    not_owner = f"-m owner ! --uid-owner {uid}"
    lines: list[str] = []

    if config.redirect_inbound:
        lines.append(f"-A PREROUTING -p tcp -j {INBOUND}")
    lines.append(f"-A OUTPUT -p tcp -j {OUTBOUND}")
    if config.redirect_dns:
        lines.append(f"-A OUTPUT -p udp --dport {DNS_PORT} -j {OUTBOUND}")

    if config.redirect_inbound:
        for port in config.exclude_inbound_ports:
            lines.append(f"-A {INBOUND} -p tcp --dport {port} -j RETURN")
        lines.append(f"-A {INBOUND} -p tcp -j {INBOUND_REDIRECT}")
        lines.append(
            f"-A {INBOUND_REDIRECT} -p tcp -j REDIRECT --to-ports {config.redirect_inbound_port}"
        )

    if config.redirect_dns:
        for proto in ("udp", "tcp"):
            dns = f"-A {OUTBOUND} -p {proto} --dport {DNS_PORT}"
            lines.append(f"{dns} {owner} -j RETURN")
            lines.append(f"{dns} -j REDIRECT --to-ports {config.dns_port}")
    for port in config.exclude_outbound_ports:
        lines.append(f"-A {OUTBOUND} -p tcp --dport {port} -j RETURN")
    lines.append(f"-A {OUTBOUND} -s {INBOUND_PASSTHROUGH_SOURCE}/32 -o lo -j RETURN")
    if config.redirect_inbound:
        lines.append(f"-A {OUTBOUND} ! -d 127.0.0.1/32 -o lo {owner} -j {INBOUND_REDIRECT}")
    lines.append(f"-A {OUTBOUND} -o lo {not_owner} -j RETURN")
    lines.append(f"-A {OUTBOUND} {owner} -j RETURN")
    lines.append(f"-A {OUTBOUND} -d 127.0.0.1/32 -j RETURN")
    lines.append(f"-A {OUTBOUND} -j {OUTBOUND_REDIRECT}")
    lines.append(
        f"-A {OUTBOUND_REDIRECT} -p tcp -j REDIRECT --to-ports {config.redirect_outbound_port}"
    )
    return lines


def rules_text(config: TransparentProxyConfig) -> str:
    """The rules as a fresh ``iptables-restore --noflush`` input (what ``--dry-run`` prints)."""
    return install_text(config, current_nat="")


# --- reading what is installed (``iptables-save -t nat`` output) ---

_CHAIN_DECL = re.compile(r"^:(\S+) ")
_JUMP = re.compile(r"\s-j\s+(\S+)")


@dataclass(frozen=True)
class Installed:
    """Our chains and the rules of built-in chains that jump into them."""

    chains: tuple[str, ...]
    jumps: tuple[str, ...]  # ``-A <builtin> ... -j KUMA_MESH_...`` as saved


def installed(saved_nat: str) -> Installed:
    """What of ours ``iptables-save -t nat`` shows (other tables and chains are ignored)."""
    chains: list[str] = []
    jumps: list[str] = []
    in_nat = False
    for raw in saved_nat.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            in_nat = line == "*nat"
            continue
        if not in_nat:
            continue
        declared = _CHAIN_DECL.match(line)
        if declared and declared.group(1).startswith(CHAIN_PREFIX):
            chains.append(declared.group(1))
            continue
        if line.startswith("-A "):
            chain = line.split()[1]
            target = _JUMP.search(line)
            if chain in _BUILTIN and target and target.group(1).startswith(CHAIN_PREFIX):
                jumps.append(line)
    return Installed(chains=tuple(chains), jumps=tuple(jumps))


def _deletes(jumps: Iterable[str]) -> list[str]:
    return ["-D" + jump[2:] for jump in jumps]


def _document(lines: Sequence[str]) -> str:
    return "\n".join(["*nat", *lines, "COMMIT", ""])


def install_text(config: TransparentProxyConfig, current_nat: str) -> str:
    """``iptables-restore --noflush`` input that leaves exactly our rules installed, whatever
    of ours ``current_nat`` (``iptables-save -t nat``) shows: the jumps into our chains are
    deleted, our chains flushed (declaring an existing chain flushes it), other ``KUMA_MESH_``
    chains removed, then the rules added. One transaction: installing twice = same state."""
    rules = rule_lines(config)
    now = installed(current_nat)
    stale = [chain for chain in now.chains if chain not in CHAINS]
    lines = [f":{chain} - [0:0]" for chain in CHAINS]
    lines += _deletes(now.jumps)
    lines += [f"-F {chain}" for chain in stale]
    lines += [f"-X {chain}" for chain in stale]
    lines += rules
    return _document(lines)


def uninstall_text(current_nat: str) -> str | None:
    """``iptables-restore --noflush`` input removing exactly our jumps and chains, or None
    when nothing of ours is installed."""
    now = installed(current_nat)
    if not now.chains and not now.jumps:
        return None
    lines = _deletes(now.jumps)
    lines += [f"-F {chain}" for chain in now.chains]
    lines += [f"-X {chain}" for chain in now.chains]
    return _document(lines)
