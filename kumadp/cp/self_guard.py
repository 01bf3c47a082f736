"""A dataplane can never be pointed at the control plane's own services.

Without this, the mesh is a way in: a sidecar on the CP's host whose inbound forwards to
``127.0.0.1:<API port>`` turns every caller of that service into a loopback caller of the
CP (which treats loopback as admin), and an endpoint registered at the CP's address and port
makes every sidecar on the CP's host connect to it from loopback.

``SelfGuard.check(dataplane)`` refuses, with a field-path ``ValidationError``:

- an inbound whose application target (``serviceAddress``, default 127.0.0.1, and
  ``servicePort``) is one of the CP's ports on the CP's host: a loopback address when the
  dataplane itself runs there (its address is loopback or one of the host's), or any address
  of the CP's host;
- an inbound endpoint (``inbound.address``, ``networking.advertisedAddress`` or
  ``networking.address``, with ``port``) at one of the CP's ports on its host;
- an inbound endpoint on a loopback address the dataplane does not own (its own address is
  not loopback): other sidecars would connect to a service on their own host.

It runs where dataplanes are written: the API's ``PUT`` and the agent's bootstrap.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import psutil

from kumadp.resources.errors import FieldError, ValidationError
from kumadp.resources.model import Dataplane

log = logging.getLogger(__name__)

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(value: str | None) -> IP | None:
    if not value:
        return None
    if value.lower().rstrip(".") == "localhost":
        return ipaddress.IPv4Address("127.0.0.1")
    try:
        ip = ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def host_addresses() -> frozenset[IP]:
    """Every address of this host's interfaces (loopback included)."""
    found: set[IP] = set()
    try:
        interfaces = psutil.net_if_addrs()
    except OSError as exc:  # pragma: no cover - /proc unreadable
        log.warning("cannot list this host's addresses: %s", exc)
        interfaces = {}
    for addresses in interfaces.values():
        for address in addresses:
            ip = _ip(str(address.address).split("%", 1)[0])
            if ip is not None:
                found.add(ip)
    return frozenset(found)


@dataclass(frozen=True)
class SelfGuard:
    """The CP's ports (port -> what it serves) and its host's addresses."""

    ports: Mapping[int, str]
    addresses: frozenset[IP] = field(default_factory=host_addresses)

    @classmethod
    def for_ports(cls, ports: Iterable[tuple[int, str]], extra: Iterable[str] = ()) -> SelfGuard:
        named = {port: what for port, what in ports if port}
        addresses = set(host_addresses())
        addresses |= {ip for ip in (_ip(a) for a in extra) if ip is not None}
        return cls(named, frozenset(addresses))

    def _on_host(self, ip: IP | None) -> bool:
        return ip is not None and (ip.is_loopback or ip.is_unspecified or ip in self.addresses)

    def problems(self, dataplane: Dataplane) -> list[FieldError]:
        net = dataplane.networking
        own = _ip(net.address)
        own_is_loopback = own is not None and own.is_loopback
        dp_on_cp_host = self._on_host(own)
        errors: list[FieldError] = []
        for i, inbound in enumerate(net.inbound):
            path = f"networking.inbound[{i}]"
            target = _ip(inbound.service_address or "127.0.0.1")
            local_target = target is not None and (target.is_loopback or target.is_unspecified)
            what = self.ports.get(inbound.service_port)
            if what and ((local_target and dp_on_cp_host) or self._on_host_non_local(target)):
                errors.append(
                    FieldError(
                        f"{path}.servicePort",
                        f"{inbound.service_port} is the control plane's {what} port on its "
                        "own host: a dataplane cannot forward to the control plane",
                    )
                )
            endpoint_text = inbound.address or net.advertised_address or net.address
            endpoint = _ip(endpoint_text)
            where = f"{path}.address" if inbound.address else "networking.address"
            what = self.ports.get(inbound.port)
            if what and self._on_host(endpoint):
                errors.append(
                    FieldError(
                        f"{path}.port",
                        f"{inbound.port} at {endpoint_text} is the control plane's {what} "
                        "port on its own host: a dataplane cannot be the control plane",
                    )
                )
            elif endpoint is not None and endpoint.is_loopback and not own_is_loopback:
                errors.append(
                    FieldError(
                        where,
                        f"{endpoint_text} is a loopback address this dataplane does not own "
                        f"(its address is {net.address}): other dataplanes would connect to "
                        "their own host",
                    )
                )
        return errors

    def _on_host_non_local(self, ip: IP | None) -> bool:
        return ip is not None and not ip.is_loopback and ip in self.addresses

    def check(self, dataplane: Dataplane) -> None:
        """``ValidationError`` naming every field that points at the control plane."""
        errors = self.problems(dataplane)
        if errors:
            raise ValidationError(errors)


__all__ = ["SelfGuard", "host_addresses"]
