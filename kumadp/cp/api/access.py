"""Who may call which route of the API: one explicit table, checked for every request by
``kumadp.cp.api.authn.AccessMiddleware``.

A rule is ``(method, path template, access)``; the template is the route's own, spelled as
it is declared (``/meshes/{mesh}/dataplanes/{name}``). ``GET`` also covers ``HEAD``.

=========  =================================================================================
``PUBLIC``  anyone, no credentials: the index, the API description, the DP server's CA
            certificate, ``POST /bootstrap`` (which checks the dataplane token itself)
``READ``    reads of what is not secret: any authenticated caller, and anonymous callers
            unless ``--no-api-anonymous-read``
``ADMIN``   admins only: every write, issuing and revoking tokens, secrets, config dumps
=========  =================================================================================

A route without a rule is refused (403) and logged: a new route must be added here (or
passed to ``create_app(extra_rules=...)``), and ``tests/unit/test_api_access.py`` fails
until it is. Resource routes get their rules from the resource registry
(``resource_rules``): reads are ``READ`` unless the type is secret, writes ``ADMIN``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum

from starlette.routing import BaseRoute, Route

from kumadp.resources.registry import Registry

READ_METHODS = frozenset({"GET", "HEAD"})


class Access(Enum):
    PUBLIC = "public"
    READ = "read"
    ADMIN = "admin"


PUBLIC, READ, ADMIN = Access.PUBLIC, Access.READ, Access.ADMIN


@dataclass(frozen=True)
class Rule:
    method: str  # GET, PUT, POST, DELETE (GET covers HEAD)
    path: str  # the route's path template
    access: Access
    why: str = ""


# Resource types whose documents hold secrets: reading them needs an admin.
SECRET_KINDS = frozenset({"Secret", "GlobalSecret", "MeshCA", "SigningKey"})

RULES: tuple[Rule, ...] = (
    Rule("GET", "/", PUBLIC, "the index: name and version"),
    Rule("GET", "/openapi.json", PUBLIC, "the description of these routes"),
    Rule("POST", "/bootstrap", PUBLIC, "authenticated by the dataplane token it carries"),
    Rule("GET", "/certs/dp-server-ca.pem", PUBLIC, "a CA certificate, public by nature"),
    # tokens
    Rule("POST", "/tokens/dataplane", ADMIN),
    Rule("POST", "/tokens/dataplane/revoke", ADMIN),
    Rule("POST", "/tokens/zone", ADMIN),
    Rule("POST", "/tokens/zone/revoke", ADMIN),
    Rule("POST", "/tokens/user", ADMIN),
    Rule("POST", "/tokens/user/revoke", ADMIN),
    # insights
    Rule("GET", "/meshes/{mesh}/dataplanes+insights", READ),
    Rule("GET", "/dataplanes+insights", READ),
    Rule("GET", "/meshes/{mesh}/dataplanes/{name}/_overview", READ),
    Rule("GET", "/meshes/{mesh}/dataplanes/{name}/_config", ADMIN, "a config dump"),
    Rule("GET", "/meshes/{mesh}/dataplanes/_overview", READ),
    Rule("GET", "/dataplanes/_overview", READ),
    Rule("GET", "/meshes/{mesh}/dataplanes+insights/{name}", READ),
    Rule("GET", "/meshes/{mesh}/dataplanes/{name}/_rules", READ, "the policies that apply"),
    Rule("GET", "/meshes/{mesh}/dataplanes/{name}/xds", ADMIN, "Envoy's config dump"),
    Rule("GET", "/meshes/{mesh}/dataplanes/{name}/stats", ADMIN, "Envoy's stats"),
    Rule("GET", "/meshes/{mesh}/dataplanes/{name}/clusters", ADMIN, "Envoy's clusters"),
    Rule("GET", "/control-planes", READ, "the instances sharing the store"),
    # multi-zone and Kuma's other read routes
    Rule("GET", "/zones", READ),
    Rule("GET", "/zones/{name}", READ),
    Rule("PUT", "/zones/{name}", ADMIN),
    Rule("DELETE", "/zones/{name}", ADMIN),
    Rule("GET", "/zones/{name}/ca", READ, "serials and validity of its intermediate CAs"),
    Rule("POST", "/zones/{name}/ca/revoke", ADMIN),
    Rule("POST", "/zones/{name}/ca/allow", ADMIN),
    Rule("GET", "/zones+insights", READ),
    Rule("GET", "/zones+insights/{name}", READ),
    Rule("GET", "/zoneingresses+insights", READ),
    Rule("GET", "/zoneingresses+insights/{name}", READ),
    Rule("GET", "/zoneegressoverviews", READ),
    Rule("GET", "/zoneegressoverviews/{name}", READ),
    Rule("GET", "/zoneegresses+insights", READ),
    Rule("GET", "/zoneegresses+insights/{name}", READ),
    Rule("GET", "/global-insights", READ),
    Rule("GET", "/_resources", READ),
    Rule("GET", "/policies", READ),
    Rule("GET", "/who-am-i", PUBLIC, "tells the caller who it is"),
    # the web UI's page and assets: no mesh data (the pages read it through the API, under
    # the caller's own rights)
    Rule("GET", "/gui", PUBLIC, "the web UI's page"),
    Rule("GET", "/gui/{page:path}", PUBLIC, "the web UI's page (deep links)"),
    Rule("GET", "/gui/assets/{path:path}", PUBLIC, "the web UI's scripts and styles"),
    Rule("GET", "/gui/_resources", PUBLIC, "the resource types, for the web UI"),
    Rule("GET", "/config", ADMIN, "the CP's configuration"),
)


def resource_rules(registry: Registry) -> list[Rule]:
    """The rules of the resource routes of every type ``registry`` serves."""
    rules: list[Rule] = []
    for kind in registry.served():
        read = ADMIN if kind.name in SECRET_KINDS else READ
        collection = f"/meshes/{{mesh}}/{kind.plural}" if kind.mesh_scoped else f"/{kind.plural}"
        item = f"{collection}/{{name}}"
        rules += [
            Rule("GET", collection, read),
            Rule("GET", item, read),
            Rule("PUT", item, ADMIN),
            Rule("DELETE", item, ADMIN),
        ]
        if kind.mesh_scoped:
            rules.append(Rule("GET", f"/{kind.plural}", read))
    return rules


class AccessRules:
    """The rule table by ``(method, path template)``; a rule given twice is an error."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self._rules: dict[tuple[str, str], Rule] = {}
        for rule in rules:
            key = (rule.method.upper(), rule.path)
            if key in self._rules and self._rules[key] != rule:
                raise ValueError(f"two access rules for {rule.method} {rule.path}")
            self._rules[key] = rule

    def rule_for(self, method: str, path: str) -> Rule | None:
        method = method.upper()
        if method == "HEAD":
            method = "GET"
        return self._rules.get((method, path))

    def __iter__(self) -> Iterator[Rule]:
        return iter(self._rules.values())

    def missing(self, routes: Iterable[BaseRoute]) -> list[str]:
        """``"METHOD /path"`` of every route method that has no rule (should be none)."""
        out: list[str] = []
        for route in routes:
            if not isinstance(route, Route):
                out.append(f"* {getattr(route, 'path', route)!r} (not a plain route)")
                continue
            for method in sorted(route.methods or ()):
                if method != "HEAD" and self.rule_for(method, route.path) is None:
                    out.append(f"{method} {route.path}")
        return out


def default_rules(registry: Registry, extra: Iterable[Rule] = ()) -> AccessRules:
    return AccessRules([*RULES, *resource_rules(registry), *extra])


__all__ = [
    "ADMIN",
    "PUBLIC",
    "READ",
    "READ_METHODS",
    "RULES",
    "SECRET_KINDS",
    "Access",
    "AccessRules",
    "Rule",
    "default_rules",
    "resource_rules",
]
