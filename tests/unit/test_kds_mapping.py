"""KDS mapping: keys, copy names, labels, content versions, and the checks of what arrives."""

from __future__ import annotations

import json
from typing import Any

import pytest
from envoy.service.discovery.v3 import discovery_pb2

from kumadp.cp.kds.catalog import check_document, sync_types
from kumadp.cp.kds.mapping import (
    MappingError,
    copy_key,
    copy_name,
    copy_version,
    from_wire,
    local_copy,
    split_key,
    to_wire,
)
from kumadp.resources import REGISTRY, Sync, ValidationError
from kumadp.wire import kds as wire
from kumadp.wire.kds_pb2 import KumaResource

MTP: dict[str, Any] = {
    "type": "MeshTrafficPermission",
    "mesh": "default",
    "name": "allow-web",
    "labels": {"team": "payments"},
    "spec": {
        "targetRef": {"kind": "Mesh"},
        "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}],
    },
}
DATAPLANE: dict[str, Any] = {
    "type": "Dataplane",
    "mesh": "default",
    "name": "web-1",
    "networking": {
        "address": "10.0.0.1",
        "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web", "kuma.io/zone": "zone-a"}}],
    },
}


def resource(doc: dict[str, Any], origin: str = "global") -> discovery_pb2.Resource:
    out = to_wire(doc, origin)
    return discovery_pb2.Resource(name=out.key, version=out.version, resource=out.packed)


def test_keys_and_copy_names() -> None:
    assert split_key("default/web-1") == ("default", "web-1")
    assert split_key("default") == ("", "default")
    # a Mesh from global keeps its name; mesh-scoped copies get a 16-hex hash
    assert copy_name(False, "default", "", None) == "default"
    name = copy_name(True, "allow-web", "default", None)
    assert name.startswith("allow-web-") and len(name) == len("allow-web-") + 16
    # the zone is part of the hash: two zones' web-1 never collide on global
    a, b = (
        copy_name(True, "web-1", "default", "zone-a"),
        copy_name(True, "web-1", "default", "zone-b"),
    )
    assert a != b and a.startswith("web-1-") and b.startswith("web-1-")
    assert copy_name(True, "web-1", "default", "zone-a") == a  # stable
    assert len(copy_name(True, "x" * 253, "default", None)) == 253


def test_numbers_stay_numbers_and_versions_are_content_hashes() -> None:
    incoming = from_wire("Dataplane", True, resource(DATAPLANE, "zone"))
    assert incoming.spec["networking"]["inbound"][0]["port"] == 8080  # not 8080.0
    assert isinstance(incoming.spec["networking"]["inbound"][0]["port"], int)
    same = to_wire(json.loads(json.dumps(DATAPLANE)), "zone")
    assert same.version == to_wire(DATAPLANE, "zone").version
    changed = json.loads(json.dumps(DATAPLANE))
    changed["networking"]["address"] = "10.0.0.2"
    assert to_wire(changed, "zone").version != same.version
    # the labels of the copy itself do not change the version: a copy re-sent is the same
    relabelled = {**DATAPLANE, "labels": {wire.VERSION_LABEL: "x", wire.DISPLAY_NAME_LABEL: "y"}}
    assert to_wire(relabelled, "zone").version == same.version


def test_the_copy_is_labelled_from_what_the_receiver_knows() -> None:
    lying = {
        **MTP,
        "labels": {**MTP["labels"], wire.ORIGIN_LABEL: "zone", wire.ZONE_LABEL: "zone-x"},
    }
    incoming = from_wire("MeshTrafficPermission", True, resource(lying))
    doc = local_copy(incoming, mesh_scoped=True, origin="global", zone=None)
    assert doc["name"] == copy_name(True, "allow-web", "default", None)
    assert doc["labels"][wire.ORIGIN_LABEL] == "global"
    assert doc["labels"][wire.DISPLAY_NAME_LABEL] == "allow-web"
    assert doc["labels"][wire.VERSION_LABEL] == incoming.version
    assert doc["labels"]["team"] == "payments"
    assert copy_key(doc) == "default/allow-web" and copy_version(doc) == incoming.version
    # at global, the zone label is the stream's, whatever the payload claims
    dp = from_wire(
        "Dataplane", True, resource({**DATAPLANE, "labels": {wire.ZONE_LABEL: "zone-b"}})
    )
    stored = local_copy(dp, mesh_scoped=True, origin="zone", zone="zone-a")
    assert stored["labels"][wire.ZONE_LABEL] == "zone-a"
    assert stored["labels"][wire.ORIGIN_LABEL] == "zone"
    check_document(REGISTRY["Dataplane"], stored)  # the copy is a valid Dataplane


def test_a_private_key_is_never_sent() -> None:
    key = {"type": "SigningPublicKey", "name": "k", "publicKeyPem": "-----BEGIN PRIVATE KEY-----"}
    with pytest.raises(MappingError, match="private key"):
        to_wire(key, "global")


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda r: setattr(r, "name", "default/other"), 'but its meta says "default/allow-web"'),
        (lambda r: r.resource.Pack(discovery_pb2.Resource()), "not a KumaResource"),
    ],
)
def test_malformed_resources_are_refused_with_a_reason(mutate: Any, reason: str) -> None:
    res = resource(MTP)
    mutate(res)
    with pytest.raises(MappingError, match=reason):
        from_wire("MeshTrafficPermission", True, res)


def test_spec_json_is_bounded_and_must_be_an_object() -> None:
    deep = '{"a":' * 40 + "1" + "}" * 40
    cases = [
        ("[1]", "must be a JSON object"),
        ("[" * 100_000, "not valid JSON"),
        (
            "{" + '"a":[' * 100_000 + "]" * 100_000 + "}",
            "not valid JSON",
        ),  # past the recursion limit
        (deep, "nested deeper than 32 levels"),
    ]
    for spec_json, reason in cases:
        message = KumaResource(spec_json=spec_json)
        message.meta.type, message.meta.name, message.meta.mesh = "MeshTrafficPermission", "x", "m"
        res = discovery_pb2.Resource(name="m/x", version="1")
        res.resource.Pack(message)
        with pytest.raises(MappingError, match=reason):
            from_wire("MeshTrafficPermission", True, res)
    wrong_type = resource(MTP)
    with pytest.raises(MappingError, match=r"meta\.type is MeshTrafficPermission, not Mesh"):
        from_wire("Mesh", False, wrong_type)


def test_types_travel_in_dependency_order() -> None:
    assert [t.name for t in sync_types(REGISTRY, Sync.GLOBAL_TO_ZONE)] == [
        "Mesh",
        "SigningPublicKey",
        "TokenRevocations",
        *(t.name for t in REGISTRY.policies()),  # policies after what they depend on
        "MeshTrustBundle",  # the rest of a mesh's resources, after its policies
    ]
    assert [t.name for t in sync_types(REGISTRY, Sync.ZONE_TO_GLOBAL)] == [
        "ZoneIngress",
        "ZoneIngressInsight",
        "ZoneEgress",
        "ZoneEgressInsight",
        "Dataplane",
        "DataplaneInsight",
    ]


def test_checks_of_types_without_a_parser() -> None:
    public = REGISTRY["SigningPublicKey"]
    with pytest.raises(ValidationError, match="publicKeyPem: is not a PEM public key"):
        check_document(public, {"type": "SigningPublicKey", "name": "k", "publicKeyPem": "junk"})
    with pytest.raises(ValidationError, match="never a private one"):
        check_document(public, {"type": "SigningPublicKey", "name": "k", "publicKeyPem": "PRIVATE"})
    with pytest.raises(ValidationError, match="jtis: must be a list"):
        check_document(REGISTRY["TokenRevocations"], {"type": "TokenRevocations", "jtis": "a"})
