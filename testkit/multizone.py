"""Several control planes on one host: a global CP and zone CPs, each with its own ports and
data dir on 127.0.0.1, started through a ``MeshEnv`` (which stops them all).

    global_cp = start_global(env)
    zone_a = start_zone(env, "zone-a", global_cp)
    env.start_service("web-1", "web", cp=zone_a)   # tokens come from the global CP
"""

from __future__ import annotations

from typing import Any

import httpx

from testkit.mesh import ControlPlane, MeshEnv
from testkit.procs import free_port, http_ok, wait_until

MTLS = {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}


def permission(
    action: str, *, name: str = "web-to-backend", caller: str = "web", target: str = "backend"
) -> dict[str, Any]:
    """A MeshTrafficPermission of the default mesh: ``caller`` -> ``target``, ``action``."""
    rule = {"targetRef": {"kind": "MeshService", "name": caller}, "default": {"action": action}}
    return {
        "type": "MeshTrafficPermission",
        "mesh": "default",
        "name": name,
        "spec": {"targetRef": {"kind": "MeshService", "name": target}, "from": [rule]},
    }


def start_global(
    env: MeshEnv, *, kds_port: int | None = None, extra: list[str] | None = None, **kwargs: Any
) -> ControlPlane:
    """A global CP (sqlite store in ``<tmp>/cp-global``). It mints one token at once, so its
    signing key exists (and is synced) before any zone connects."""
    kds_port = kds_port or free_port()
    cp = env.start_cp(
        data_dir=kwargs.pop("data_dir", env.tmp / "cp-global"),
        extra=["--mode", "global", "--kds-port", str(kds_port), *(extra or [])],
        **kwargs,
    )
    cp.kds_port = kds_port
    cp.token("warm-up")
    return cp


def kds_ca(global_cp: ControlPlane) -> str:
    """The CA file zones trust the global CP's KDS certificate with."""
    return str(global_cp.data_dir / "kds-server" / "ca.pem")


def zone_token(global_cp: ControlPlane, zone: str, scope: str = "cp") -> str:
    """A zone token from the global CP (issuing is allowed from loopback)."""
    resp = httpx.post(
        global_cp.url + "/tokens/zone", json={"zone": zone, "scope": [scope]}, timeout=5
    )
    resp.raise_for_status()
    return resp.text.strip()


def start_zone(
    env: MeshEnv,
    zone: str,
    global_cp: ControlPlane,
    *,
    kds_address: str | None = None,
    extra: list[str] | None = None,
    synced: bool = True,
    token: str | None = None,
    kds_ca_file: str | None = None,
    **kwargs: Any,
) -> ControlPlane:
    """A zone CP dialling ``global_cp`` (or ``kds_address``, e.g. a ``TcpProxy``'s) with a
    zone token (``token``, else a fresh one of the zone from the global CP; "" for none),
    trusting ``kds_ca_file`` (default: the global CP's KDS CA);
    with ``synced``, wait until the default mesh has arrived from the global CP."""
    address = kds_address or f"127.0.0.1:{global_cp.kds_port}"
    token = zone_token(global_cp, zone) if token is None else token
    token_args: list[str] = []
    if token:
        token_file = env.tmp / f"{zone}-{free_port()}.token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        token_args = ["--kds-token-file", str(token_file)]
    cp = env.start_cp(
        data_dir=kwargs.pop("data_dir", env.tmp / f"cp-{zone}"),
        wait=False,
        extra=[
            "--mode",
            "zone",
            "--zone",
            zone,
            "--kds-global-address",
            f"grpcs://{address}",
            "--kds-ca-file",
            kds_ca_file or kds_ca(global_cp),
            *token_args,
            *(extra or []),
        ],
        **kwargs,
    )
    cp.token_source = global_cp
    wait_until(
        lambda: http_ok(f"http://127.0.0.1:{cp.diagnostics_port}/ready"),
        what=f"zone CP {zone} ready",
        proc=cp.proc,
    )
    if synced:
        wait_until(lambda: http_ok(cp.url + "/meshes/default"), what=f"{zone} synced", proc=cp.proc)
    return cp


def zone_overview(global_cp: ControlPlane, zone: str) -> dict[str, Any]:
    resp = httpx.get(f"{global_cp.url}/zones+insights/{zone}", timeout=5)
    resp.raise_for_status()
    return resp.json()  # type: ignore[no-any-return]


def zone_online(global_cp: ControlPlane, zone: str) -> bool:
    """Kuma's rule on the global CP's ZoneInsight: a subscription without a disconnect time."""
    try:
        subs = zone_overview(global_cp, zone)["zoneInsight"]["subscriptions"]
    except httpx.HTTPError:
        return False
    return any(s.get("connectTime") and not s.get("disconnectTime") for s in subs)


def items(cp: ControlPlane, path: str) -> list[dict[str, Any]]:
    resp = httpx.get(cp.url + path, timeout=5)
    resp.raise_for_status()
    return resp.json()["items"]  # type: ignore[no-any-return]


def by_display_name(cp: ControlPlane, path: str) -> dict[str, dict[str, Any]]:
    """Resources of a list path by their original name (``kuma.io/display-name``)."""
    out = {}
    for item in items(cp, path):
        labels = item.get("labels") or {}
        out[labels.get("kuma.io/display-name", item["name"])] = item
    return out


__all__ = [
    "MTLS",
    "by_display_name",
    "items",
    "kds_ca",
    "permission",
    "start_global",
    "start_zone",
    "zone_online",
    "zone_overview",
    "zone_token",
]
