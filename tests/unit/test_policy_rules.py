"""Which policies apply to a proxy and how their confs merge (Kuma's rules)."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3.cluster_pb2 import Cluster

from kumadp.cp.generate import build_mesh_view, generate
from kumadp.cp.generate.policies.rules import ProxyRules, ordered
from kumadp.resources import Dataplane, Mesh, parse_dataplane, parse_resource
from kumadp.resources.meshtimeout import HttpTimeouts, MeshTimeout, TimeoutConf
from kumadp.xds import types


def dataplane(name: str = "web-1", labels: dict[str, str] | None = None) -> Dataplane:
    doc: dict[str, Any] = {
        "type": "Dataplane",
        "mesh": "default",
        "name": name,
        "networking": {
            "address": "10.0.0.1",
            "inbound": [
                {"port": 10001, "tags": {"kuma.io/service": "web", "version": "v2"}},
                {"port": 10002, "tags": {"kuma.io/service": "admin"}},
            ],
        },
    }
    if labels:
        doc["labels"] = labels
    return parse_dataplane(doc)


def timeout(
    name: str, target: dict[str, Any], **sides: list[tuple[dict[str, Any], Any]]
) -> MeshTimeout:
    spec: dict[str, Any] = {"targetRef": target}
    for side, items in sides.items():
        spec[side.rstrip("_")] = [{"targetRef": ref, "default": conf} for ref, conf in items]
    found = parse_resource({"type": "MeshTimeout", "mesh": "default", "name": name, "spec": spec})
    assert isinstance(found, MeshTimeout)
    return found


MESH = {"kind": "Mesh"}


def test_order_is_kind_then_name_reversed() -> None:
    policies = [
        timeout("b", {"kind": "MeshService", "name": "web"}, to=[(MESH, {"idleTimeout": "1s"})]),
        timeout("a", {"kind": "MeshService", "name": "web"}, to=[(MESH, {"idleTimeout": "2s"})]),
        timeout("z", {"kind": "Mesh"}, to=[(MESH, {"idleTimeout": "3s"})]),
        timeout(
            "sub",
            {"kind": "MeshServiceSubset", "name": "web", "tags": {"version": "v2"}},
            to=[(MESH, {"idleTimeout": "4s"})],
        ),
        timeout("dp", {"kind": "Dataplane", "name": "web-1"}, to=[(MESH, {"idleTimeout": "5s"})]),
        timeout(
            "subset",
            {"kind": "MeshSubset", "tags": {"version": "v2"}},
            to=[(MESH, {"idleTimeout": "6s"})],
        ),
    ]
    assert [p.name for p in ordered(policies)] == ["z", "dp", "subset", "b", "a", "sub"]
    rule = ProxyRules(policies, dataplane()).outbound("backend")
    assert rule is not None
    assert rule.conf == TimeoutConf(idle_timeout="4s")
    assert rule.origins == ("z", "dp", "subset", "b", "a", "sub")


def test_fields_merge_and_mesh_items_come_first() -> None:
    policies = [
        timeout(
            "mesh",
            MESH,
            to=[
                ({"kind": "MeshService", "name": "backend"}, {"http": {"requestTimeout": "1s"}}),
                (MESH, {"connectionTimeout": "2s", "http": {"requestTimeout": "9s"}}),
            ],
        ),
        timeout(
            "web",
            {"kind": "MeshService", "name": "web"},
            to=[(MESH, {"http": {"streamIdleTimeout": "3s"}})],
        ),
    ]
    rules = ProxyRules(policies, dataplane())
    backend = rules.outbound("backend")
    assert backend is not None and backend.conf == TimeoutConf(
        connection_timeout="2s",
        http=HttpTimeouts(request_timeout="1s", stream_idle_timeout="3s"),
    )
    other = rules.outbound("db")
    assert other is not None and other.conf.http == HttpTimeouts(
        request_timeout="9s", stream_idle_timeout="3s"
    )


def test_which_proxies_and_inbounds_are_selected() -> None:
    policies = [
        timeout(
            "by-labels",
            {"kind": "Dataplane", "labels": {"team": "a"}},
            from_=[(MESH, {"idleTimeout": "1s"})],
        ),
        timeout(
            "admin",
            {"kind": "MeshService", "name": "admin"},
            from_=[(MESH, {"connectionTimeout": "2s"})],
        ),
        timeout(
            "other", {"kind": "MeshService", "name": "backend"}, to=[(MESH, {"idleTimeout": "3s"})]
        ),
    ]
    plain = ProxyRules(policies, dataplane())
    assert [p.name for p in plain.policies] == ["admin"]
    web, admin = plain.dataplane.networking.inbound
    assert plain.inbound(web) is None
    found = plain.inbound(admin)
    assert found is not None and found.conf == TimeoutConf(connection_timeout="2s")
    assert plain.outbound("x") is None  # "admin" has no to items, "other" does not apply

    labelled = ProxyRules(policies, dataplane(labels={"team": "a"}))
    found = labelled.inbound(web)
    assert found is not None and found.origins == ("by-labels",)


# --- generation: shared resources are changed once per view, never in place -------------------


def _outbound_dataplane(name: str, service: str) -> Dataplane:
    return parse_dataplane(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": name,
            "networking": {
                "address": "10.0.0.1",
                "inbound": [{"port": 10001, "tags": {"kuma.io/service": service}}],
                "outbound": [{"port": 20001, "tags": {"kuma.io/service": "backend"}}],
            },
        }
    )


def test_plugins_share_their_changes_and_leave_the_shared_original_alone() -> None:
    policy = timeout(
        "web-only",
        {"kind": "MeshService", "name": "web"},
        to=[(MESH, {"connectionTimeout": "2s"})],
    )
    web1, web2 = _outbound_dataplane("web-1", "web"), _outbound_dataplane("web-2", "web")
    admin = _outbound_dataplane("admin-1", "admin")
    view = build_mesh_view(Mesh(name="default"), [web1, web2, admin], [policy])

    def cluster_of(dataplane: Dataplane) -> Cluster:
        (found,) = [c for c in generate(view, dataplane)[types.CLUSTER] if c.name == "backend"]
        assert isinstance(found, Cluster)
        return found

    first, second, other = cluster_of(web1), cluster_of(web2), cluster_of(admin)
    assert first.connect_timeout.seconds == 2
    assert first is second  # changed once for the view, shared by both web proxies
    assert other.connect_timeout.seconds == 5  # the generator's, untouched
    assert cluster_of(admin).connect_timeout.seconds == 5
