"""``kumadp ctl inspect dataplane NAME``: the policies that apply to one dataplane, from the
control plane's ``/meshes/{mesh}/dataplanes/{name}/_rules``, as a table (one row per policy
type and traffic: ``to`` a service, ``*`` for any other, or ``from`` callers of an inbound)
or as the API's JSON/YAML."""

from __future__ import annotations

from typing import Any

from kumadp.ctl import tables
from kumadp.ctl.client import ApiClient, CtlError, NotFoundError, segment
from kumadp.ctl.resources import check_format, dump

RULES_HEADERS = ("TYPE", "TRAFFIC", "TARGET", "POLICIES", "CONF")


def flatten(conf: Any, prefix: str = "") -> list[str]:
    """``{"http": {"requestTimeout": "1s"}}`` -> ``["http.requestTimeout=1s"]``."""
    if isinstance(conf, dict):
        out: list[str] = []
        for key, value in conf.items():
            out.extend(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(conf, list):
        items = [",".join(flatten(v)) if isinstance(v, dict) else str(v) for v in conf]
        return [f"{prefix}=[{' '.join(items)}]"]
    return [f"{prefix}={conf}"]


def _matchers(matchers: list[dict[str, str]]) -> str:
    if not matchers:
        return "*"
    return ",".join(f"{m.get('key')}={m.get('value')}" for m in matchers)


def _origins(rule: dict[str, Any]) -> str:
    metas = ((o.get("resourceMeta") or o) for o in rule.get("origin") or [])  # Kuma's shape
    return ",".join(str(m.get("name")) for m in metas)


def rule_rows(body: dict[str, Any]) -> list[list[str]]:
    rows = []
    for entry in body.get("rules") or []:
        kind = str(entry.get("type"))
        for rule in entry.get("toRules") or []:
            target = _matchers(rule.get("matchers") or [])
            rows.append([kind, "to", target, _origins(rule), " ".join(flatten(rule["conf"]))])
        for inbound in entry.get("fromRules") or []:
            port = inbound.get("inbound", {}).get("port")
            for rule in inbound.get("rules") or []:
                callers = _matchers(rule.get("matchers") or [])
                target = f":{port} from {callers}"
                conf = " ".join(flatten(rule["conf"]))
                rows.append([kind, "from", target, _origins(rule), conf])
    return rows


def fetch_rules(client: ApiClient, name: str, mesh: str) -> dict[str, Any]:
    path = f"/meshes/{segment(mesh)}/dataplanes/{segment(name)}/_rules"
    try:
        return client.get_object(path)
    except NotFoundError:
        raise CtlError(f'dataplane "{name}" not found in mesh "{mesh}"') from None


def inspect_dataplane(client: ApiClient, name: str, *, mesh: str, output: str = "table") -> str:
    """The text ``inspect dataplane`` prints: the table, or the API's document."""
    fmt = check_format(output)
    body = fetch_rules(client, name, mesh)
    if fmt != "table":
        return dump(body, fmt)
    return tables.render_table(RULES_HEADERS, rule_rows(body))


__all__ = ["RULES_HEADERS", "fetch_rules", "flatten", "inspect_dataplane", "rule_rows"]
