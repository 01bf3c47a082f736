"""Parsing and validation of Dataplane and Mesh documents: the errors a user sees."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest

import kumadp.resources as resources
from kumadp.resources import (
    SUPPORTED_TYPES,
    Dataplane,
    FieldError,
    Inbound,
    Mesh,
    Outbound,
    TransparentProxying,
    ValidationError,
    load_document,
    parse_dataplane,
    parse_duration,
    parse_mesh,
    parse_resource,
)

SERVICE = "kuma.io/service"


def dataplane_doc(**networking: Any) -> dict[str, Any]:
    net: dict[str, Any] = {
        "address": "10.0.0.1",
        "inbound": [{"port": 10000, "servicePort": 8080, "tags": {SERVICE: "web"}}],
    }
    net.update(networking)
    return {"type": "Dataplane", "mesh": "default", "name": "web-1", "networking": net}


def errors_of(doc: Any, parse: Any = parse_dataplane) -> list[str]:
    with pytest.raises(ValidationError) as info:
        parse(doc)
    return [str(e) for e in info.value.errors]


# --- errors ---------------------------------------------------------------------------------


def test_field_error_and_validation_error_strings() -> None:
    error = ValidationError(
        [FieldError("networking.inbound[0].port", "must be 1-65535"), FieldError("name", "x")]
    )
    assert str(error.errors[0]) == "networking.inbound[0].port: must be 1-65535"
    assert str(error) == "networking.inbound[0].port: must be 1-65535; name: x"
    single = ValidationError.single("type", "is required")
    assert single.errors == [FieldError("type", "is required")]
    assert str(single) == "type: is required"


def test_validation_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(ValidationError.single("mesh", "is required")))
    assert error.errors == [FieldError("mesh", "is required")]


def test_validation_error_needs_errors() -> None:
    with pytest.raises(ValueError):
        ValidationError([])


def test_public_surface() -> None:
    for name in resources.__all__:
        assert hasattr(resources, name), name
    assert {"parse_vars", "render", "render_resource", "load_document"} <= set(resources.__all__)


# --- Dataplane: valid documents ---------------------------------------------------------


def test_minimal_dataplane_fills_defaults() -> None:
    doc = dataplane_doc(inbound=[{"port": 8080, "tags": {SERVICE: "web"}}])
    dp = parse_dataplane(doc)
    assert dp == Dataplane(
        mesh="default",
        name="web-1",
        networking=resources.Networking(
            address="10.0.0.1",
            inbound=(Inbound(port=8080, tags={SERVICE: "web"}, service_port=8080),),
        ),
    )
    assert dp.admin_port == 9901


def test_full_dataplane() -> None:
    text = """
type: Dataplane
mesh: default
name: web-1.eu_west
labels: {team: payments}
creationTime: "2024-01-01T00:00:00Z"
modificationTime: 2024-01-01T00:00:00Z
networking:
  address: web.internal
  advertisedAddress: 203.0.113.7
  admin: {port: 9950}
  inbound:
  - port: 10000
    servicePort: 8080
    serviceAddress: 127.0.0.2
    tags: {kuma.io/service: web, kuma.io/protocol: http, version: "2"}
  - port: 10001
    address: 10.0.0.2
    tags: {kuma.io/service: web-admin}
  outbound:
  - port: 5432
    tags: {kuma.io/service: db}
  - port: 6379
    address: "::1"
    tags: {kuma.io/service: redis}
  transparentProxying: {redirectPortInbound: 16006}
"""
    dp = parse_dataplane(load_document(text))
    net = dp.networking
    assert dp.labels == {"team": "payments"}
    assert (net.address, net.advertised_address, net.admin_port) == (
        "web.internal",
        "203.0.113.7",
        9950,
    )
    assert net.inbound[0] == Inbound(
        port=10000,
        tags={SERVICE: "web", "kuma.io/protocol": "http", "version": "2"},
        service_port=8080,
        service_address="127.0.0.2",
    )
    assert net.inbound[0].protocol == "http"
    assert net.inbound[1].address == "10.0.0.2"
    assert net.outbound == (
        Outbound(port=5432, tags={SERVICE: "db"}, address="127.0.0.1"),
        Outbound(port=6379, tags={SERVICE: "redis"}, address="::1"),
    )
    assert net.transparent_proxying == TransparentProxying(16006, 15001)
    assert isinstance(net.inbound, tuple) and isinstance(net.outbound, tuple)
    assert dp.services == ("web", "web-admin")
    assert parse_dataplane(dp.to_dict()) == dp


@pytest.mark.parametrize(
    "networking",
    [
        {},
        {"admin": {"port": 9000}, "advertisedAddress": "192.0.2.1"},
        {"outbound": [{"port": 7000, "tags": {SERVICE: "b"}}]},
        {"transparentProxying": {}},
        {
            "address": "fd00::1",
            "inbound": [{"port": 80, "address": "fd00::2", "tags": {SERVICE: "a"}}],
        },
    ],
)
def test_round_trip(networking: dict[str, Any]) -> None:
    dp = parse_dataplane(dataplane_doc(**networking))
    assert parse_dataplane(dp.to_dict()) == dp
    assert parse_dataplane(copy.deepcopy(dp.to_dict())).to_dict() == dp.to_dict()


def test_null_optional_fields_count_as_absent() -> None:
    dp = parse_dataplane(dataplane_doc(outbound=None, admin=None, advertisedAddress=None))
    assert dp.networking.outbound == () and dp.networking.admin_port is None


def test_document_is_not_modified() -> None:
    doc = dataplane_doc()
    before = copy.deepcopy(doc)
    parse_dataplane(doc)
    assert doc == before


# --- Dataplane: errors --------------------------------------------------------------------


def test_every_problem_is_reported_at_once() -> None:
    doc = {
        "type": "Dataplane",
        "mesh": "Default_",
        "name": "-web",
        "labels": {"team": 1},
        "networking": {
            "address": "999.0.0.1",
            "inbound": [
                {"port": 70000, "serviceport": 80, "tags": {SERVICE: "web"}},
                {"port": "8080", "tags": {"kuma.io/protocol": "udp"}},
            ],
        },
    }
    assert errors_of(doc) == [
        "mesh: must be a DNS-1123 label: 1-63 lowercase letters, digits and '-', "
        "starting and ending with a letter or digit",
        "name: must be 1-253 letters, digits, '-', '.' and '_', "
        "starting and ending with a letter or digit",
        'labels["team"]: must be a string',
        "networking.address: must be an IP address or a hostname",
        'networking.inbound[0].serviceport: unknown field (did you mean "servicePort"?)',
        "networking.inbound[0].port: must be 1-65535",
        "networking.inbound[1].port: must be an integer",
        'networking.inbound[1].tags["kuma.io/service"]: is required',
    ]


@pytest.mark.parametrize(
    ("inbound", "expected"),
    [
        ({"tags": {SERVICE: "a"}}, "networking.inbound[0].port: is required"),
        ({"port": 0, "tags": {SERVICE: "a"}}, "networking.inbound[0].port: must be 1-65535"),
        ({"port": True, "tags": {SERVICE: "a"}}, "networking.inbound[0].port: must be an integer"),
        ({"port": 8.5, "tags": {SERVICE: "a"}}, "networking.inbound[0].port: must be an integer"),
        (
            {"port": 1, "servicePort": 65536, "tags": {SERVICE: "a"}},
            "networking.inbound[0].servicePort: must be 1-65535",
        ),
        (
            {"port": 1, "serviceAddress": "localhost", "tags": {SERVICE: "a"}},
            "networking.inbound[0].serviceAddress: must be an IP address",
        ),
        (
            {"port": 1, "address": "0.0.0.0", "tags": {SERVICE: "a"}},
            "networking.inbound[0].address: must not be 0.0.0.0 or :: "
            "(other dataplanes connect to this address)",
        ),
        (
            {"port": 1},
            'networking.inbound[0].tags: is required (with at least "kuma.io/service") unless '
            'the dataplane has a "kuma.io/workload" label naming the service of its inbounds '
            "without tags",
        ),
        ({"port": 1, "tags": ["a"]}, "networking.inbound[0].tags: must be an object"),
        (
            {"port": 1, "tags": {SERVICE: ""}},
            'networking.inbound[0].tags["kuma.io/service"]: must not be empty',
        ),
        (
            {"port": 1, "tags": {SERVICE: "a", "kuma.io/protocol": "udp"}},
            'networking.inbound[0].tags["kuma.io/protocol"]: must be one of tcp, http, http2, grpc',
        ),
        (
            {"port": 1, "tags": {SERVICE: "a", "bad key": "x"}},
            'networking.inbound[0].tags["bad key"]: key must contain only letters, digits '
            "and '.', '-', '_', ':', '/'",
        ),
        (
            {"port": 1, "tags": {SERVICE: "a b"}},
            'networking.inbound[0].tags["kuma.io/service"]: value must contain only letters, '
            "digits and '.', '-', '_', ':', '/'",
        ),
        (
            {"port": 1, "tags": {SERVICE: "a", "": "x"}},
            'networking.inbound[0].tags[""]: key must be a non-empty string',
        ),
        (
            {"port": 1, "tags": {SERVICE: "a", "version": 2}},
            'networking.inbound[0].tags["version"]: must be a string',
        ),
        (
            {"port": 1, "health": {"ready": "yes"}, "tags": {SERVICE: "a"}},
            "networking.inbound[0].health.ready: must be true or false",
        ),
        (
            {"port": 1, "tags": {SERVICE: "a"}, "tag": {}},
            'networking.inbound[0].tag: unknown field (did you mean "tags"?)',
        ),
        ({"port": 1, "tags": {SERVICE: "a"}, "zzz": 1}, "networking.inbound[0].zzz: unknown field"),
    ],
)
def test_inbound_errors(inbound: dict[str, Any], expected: str) -> None:
    assert errors_of(dataplane_doc(inbound=[inbound])) == [expected]


@pytest.mark.parametrize(
    ("outbound", "expected"),
    [
        ({"tags": {SERVICE: "a"}}, "networking.outbound[0].port: is required"),
        (
            {"port": 1, "address": "db.local", "tags": {SERVICE: "a"}},
            "networking.outbound[0].address: must be an IP address",
        ),
        (
            {"port": 1, "tags": {"x": "y"}},
            'networking.outbound[0].tags["kuma.io/service"]: is required',
        ),
        (
            {"port": 1, "backendRef": {"kind": "MeshService"}, "tags": {SERVICE: "a"}},
            "networking.outbound[0].backendRef: must not be given together with tags",
        ),
        ("db:5432", "networking.outbound[0]: must be an object"),
    ],
)
def test_outbound_errors(outbound: Any, expected: str) -> None:
    assert errors_of(dataplane_doc(outbound=[outbound])) == [expected]


@pytest.mark.parametrize(
    ("networking", "expected"),
    [
        ({"address": None}, "networking.address: is required"),
        ({"address": 10}, "networking.address: must be a string"),
        (
            {"address": "0.0.0.0"},
            "networking.address: must not be 0.0.0.0 or :: "
            "(other dataplanes connect to this address)",
        ),
        ({"address": "bad_host!"}, "networking.address: must be an IP address or a hostname"),
        (
            {"advertisedAddress": "1.2.3"},
            "networking.advertisedAddress: must be an IP address or a hostname",
        ),
        ({"inbound": {"port": 1}}, "networking.inbound: must be a list"),
        ({"outbound": {}}, "networking.outbound: must be a list"),
        ({"admin": 9901}, "networking.admin: must be an object"),
        ({"admin": {"port": -1}}, "networking.admin.port: must be 1-65535"),
        ({"admin": {"address": "x"}}, "networking.admin.address: unknown field"),
        ({"gateway": {}}, "networking.gateway: not supported yet by kumadp"),
        ({"Address2": 1}, 'networking.Address2: unknown field (did you mean "address"?)'),
        (
            {"transparentProxying": {"redirectPortInbound": 15001}},
            "networking.transparentProxying.redirectPortOutbound: "
            "must differ from redirectPortInbound (15001)",
        ),
        (
            {"transparentProxying": {"redirectPortOutbound": "15001"}},
            "networking.transparentProxying.redirectPortOutbound: must be an integer",
        ),
        (
            {"transparentProxying": {"directAccessServices": ["*"]}},
            "networking.transparentProxying.directAccessServices: not supported yet by kumadp",
        ),
        ({"listeners": []}, "networking.listeners: not supported yet by kumadp"),
    ],
)
def test_networking_errors(networking: dict[str, Any], expected: str) -> None:
    assert errors_of(dataplane_doc(**networking)) == [expected]


def test_networking_is_required() -> None:
    doc = dataplane_doc()
    del doc["networking"]
    assert errors_of(doc) == ["networking: is required"]
    assert errors_of({**doc, "networking": []}) == ["networking: must be an object"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"type": None}, 'type: is required (must be "Dataplane")'),
        ({"type": "Mesh"}, 'type: must be "Dataplane", not "Mesh"'),
        ({"mesh": None}, "mesh: is required"),
        (
            {"mesh": ""},
            "mesh: must be a DNS-1123 label: 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit",
        ),
        (
            {"mesh": "a" * 64},
            "mesh: must be a DNS-1123 label: 1-63 lowercase letters, digits "
            "and '-', starting and ending with a letter or digit",
        ),
        ({"name": None}, "name: is required"),
        ({"name": 12}, "name: must be a string"),
        (
            {"name": "a" * 254},
            "name: must be 1-253 letters, digits, '-', '.' and '_', "
            "starting and ending with a letter or digit",
        ),
        ({"labels": ["a"]}, "labels: must be an object"),
        ({"nmae": "x"}, 'nmae: unknown field (did you mean "name"?)'),
    ],
)
def test_top_level_errors(change: dict[str, Any], expected: str) -> None:
    doc = {**dataplane_doc(), **change}
    assert errors_of(doc) == [expected]


def test_names_that_are_valid() -> None:
    doc = {**dataplane_doc(), "mesh": "a" * 63, "name": "A.b_c-" + "d" * 247}
    dp = parse_dataplane(doc)
    assert dp.mesh == "a" * 63 and len(dp.name) == 253


def test_document_must_be_an_object() -> None:
    assert errors_of(["type"]) == ["document: must be an object"]
    assert errors_of("x", parse_mesh) == ["document: must be an object"]


# --- Dataplane: listeners that clash ------------------------------------------------------


def test_duplicate_inbound_names_the_earlier_one() -> None:
    doc = dataplane_doc(
        inbound=[
            {"port": 80, "servicePort": 8080, "tags": {SERVICE: "a"}},
            {"port": 81, "servicePort": 8081, "tags": {SERVICE: "b"}},
            {"port": 80, "servicePort": 8082, "tags": {SERVICE: "c"}},
            {"port": 80, "address": "10.0.0.2", "servicePort": 8083, "tags": {SERVICE: "d"}},
        ]
    )
    assert errors_of(doc) == [
        "networking.inbound[2].port: 10.0.0.1:80 is already used by networking.inbound[0]"
    ]


def test_inbound_address_equal_to_networking_address_is_a_duplicate() -> None:
    doc = dataplane_doc(
        inbound=[
            {"port": 80, "servicePort": 8080, "tags": {SERVICE: "a"}},
            {"port": 80, "address": "10.0.0.1", "servicePort": 8081, "tags": {SERVICE: "b"}},
        ]
    )
    assert errors_of(doc) == [
        "networking.inbound[1].port: 10.0.0.1:80 is already used by networking.inbound[0]"
    ]


def test_duplicate_outbound() -> None:
    doc = dataplane_doc(
        outbound=[
            {"port": 5000, "tags": {SERVICE: "a"}},
            {"port": 5000, "address": "127.0.0.1", "tags": {SERVICE: "b"}},
            {"port": 5000, "address": "::1", "tags": {SERVICE: "c"}},
        ]
    )
    assert errors_of(doc) == [
        "networking.outbound[1].port: 127.0.0.1:5000 is already used by networking.outbound[0]"
    ]


def test_admin_port_clashes_with_inbound_on_loopback() -> None:
    doc = dataplane_doc(
        address="127.0.0.1",
        admin={"port": 9901},
        inbound=[{"port": 9901, "servicePort": 8080, "tags": {SERVICE: "a"}}],
    )
    assert errors_of(doc) == [
        "networking.inbound[0].port: 127.0.0.1:9901 is already used by networking.admin.port"
    ]


def test_admin_port_on_loopback_does_not_clash_with_another_address() -> None:
    doc = dataplane_doc(
        admin={"port": 9901}, inbound=[{"port": 9901, "servicePort": 80, "tags": {SERVICE: "a"}}]
    )
    assert parse_dataplane(doc).admin_port == 9901


def test_wildcard_outbound_clashes_with_everything_on_its_port() -> None:
    doc = dataplane_doc(outbound=[{"port": 10000, "address": "0.0.0.0", "tags": {SERVICE: "b"}}])
    assert errors_of(doc) == [
        "networking.outbound[0].port: 0.0.0.0:10000 is already used by networking.inbound[0]"
    ]


def test_inbound_listener_on_the_application_port() -> None:
    doc = dataplane_doc(address="127.0.0.1", inbound=[{"port": 8080, "tags": {SERVICE: "a"}}])
    assert errors_of(doc) == [
        "networking.inbound[0].port: the inbound listener and the application would both use "
        "127.0.0.1:8080; set servicePort (or serviceAddress) to where the application listens"
    ]
    # With transparent proxying the inbound listener does not bind its port.
    doc["networking"]["transparentProxying"] = {}
    assert parse_dataplane(doc).networking.inbound[0].service_port == 8080


# --- Mesh ---------------------------------------------------------------------------------

MTLS: dict[str, Any] = {
    "enabledBackend": "ca-1",
    "backends": [
        {
            "name": "ca-1",
            "type": "builtin",
            "mode": "PERMISSIVE",
            "dpCert": {"rotation": {"expiration": "24h"}},
            "conf": {"caCert": {"RSAbits": 2048, "expiration": "10y"}},
        },
        {"name": "ca-2", "type": "provided", "conf": {"cert": {"file": "/c.pem"}}},
    ],
}


def test_mesh() -> None:
    mesh = parse_mesh(
        {
            "type": "Mesh",
            "name": "default",
            "labels": {"env": "prod"},
            "mtls": MTLS,
            "creationTime": "2024-01-01T00:00:00Z",
        }
    )
    assert mesh == Mesh(name="default", mtls=MTLS, labels={"env": "prod"})
    assert mesh.mtls is not MTLS
    assert parse_mesh(mesh.to_dict()) == mesh
    assert parse_mesh({"type": "Mesh", "name": "m"}) == Mesh(name="m")


@pytest.mark.parametrize(
    ("mtls", "expected"),
    [
        (
            {"enabledBackend": "x"},
            'mtls.enabledBackend: must name one of mtls.backends (none is defined), not "x"',
        ),
        (
            {**MTLS, "enabledBackend": "ca-3"},
            'mtls.enabledBackend: must name one of mtls.backends ("ca-1", "ca-2"), not "ca-3"',
        ),
        ({"backends": [{"name": "a"}]}, "mtls.backends[0].type: is required"),
        (
            {"backends": [{"name": "a", "type": "vault"}]},
            "mtls.backends[0].type: must be one of builtin, provided",
        ),
        (
            {"backends": [{"name": "a", "type": "builtin", "mode": "strict"}]},
            "mtls.backends[0].mode: must be one of STRICT, PERMISSIVE",
        ),
        (
            {"backends": [{"name": "a", "type": "builtin"}, {"name": "a", "type": "builtin"}]},
            'mtls.backends[1].name: "a" is already used by mtls.backends[0]',
        ),
        (
            {"backends": [{"type": "builtin"}]},
            "mtls.backends[0].name: is required",
        ),
        (
            {
                "backends": [
                    {"name": "a", "type": "builtin", "dpCert": {"rotation": {"expiration": "24"}}}
                ]
            },
            'mtls.backends[0].dpCert.rotation.expiration: invalid duration "24": missing unit, '
            "expected e.g. 30s, 1h30m, 500ms, 24h (units: ns, us, ms, s, m, h, d, y)",
        ),
        (
            {
                "backends": [
                    {"name": "a", "type": "builtin", "dpCert": {"rotation": {"expiration": "0s"}}}
                ]
            },
            "mtls.backends[0].dpCert.rotation.expiration: must be longer than 0",
        ),
        (
            {"backends": [{"name": "a", "type": "builtin", "conf": {"caCert": {"RSAbits": 1024}}}]},
            "mtls.backends[0].conf.caCert.RSAbits: must be at least 2048",
        ),
        (
            {"backends": [{"name": "a", "type": "builtin", "conf": {"caCrt": {}}}]},
            'mtls.backends[0].conf.caCrt: unknown field (did you mean "caCert"?)',
        ),
        (
            {"backends": [{"name": "a", "type": "builtin", "conf": []}]},
            "mtls.backends[0].conf: must be an object",
        ),
        ({"backends": {}}, "mtls.backends: must be a list"),
        (
            {"skipValidaton": True},
            'mtls.skipValidaton: unknown field (did you mean "skipValidation"?)',
        ),
    ],
)
def test_mesh_mtls_errors(mtls: dict[str, Any], expected: str) -> None:
    assert errors_of({"type": "Mesh", "name": "m", "mtls": mtls}, parse_mesh) == [expected]


def test_mesh_errors() -> None:
    doc = {"type": "Mesh", "name": "My_Mesh", "networking": {}, "metrics": {}, "mtl": {}}
    assert errors_of(doc, parse_mesh) == [
        "networking: not supported yet by kumadp",
        'mtl: unknown field (did you mean "mtls"?)',
        "name: must be a DNS-1123 label: 1-63 lowercase letters, digits and '-', "
        "starting and ending with a letter or digit",
    ]
    assert errors_of({"name": "m"}, parse_mesh) == ['type: is required (must be "Mesh")']


# --- parse_resource -------------------------------------------------------------------------


def test_parse_resource_dispatches_on_type() -> None:
    assert isinstance(parse_resource(dataplane_doc()), Dataplane)
    assert parse_resource({"type": "Mesh", "name": "default"}) == Mesh(name="default")


_SUPPORTED = ", ".join(SUPPORTED_TYPES)  # sorted: Dataplane, Mesh, MeshCircuitBreaker, ...


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {"type": "MeshGateway"},
            f'type: unknown type "MeshGateway" (supported: {_SUPPORTED})',
        ),
        ({"type": 3}, f"type: unknown type 3 (supported: {_SUPPORTED})"),
        ({"name": "x"}, f"type: is required (one of {_SUPPORTED})"),
        ([], "document: must be an object"),
    ],
)
def test_parse_resource_errors(doc: Any, expected: str) -> None:
    assert errors_of(doc, parse_resource) == [expected]


# --- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("24h", 86400.0),
        ("2d", 172800.0),
        ("10y", 10 * 365 * 86400.0),
        ("1.5m", 90.0),
        ("100us", 1e-4),
        ("0", 0.0),
        (" 5s ", 5.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("30", "missing unit"),
        ("", "empty"),
        ("abc", 'unexpected "abc"'),
        ("1h 30m", 'unexpected " 30m"'),
        ("-5s", 'unexpected "-5s"'),
        ("5w", 'unexpected "5w"'),
        ("1 day", 'unexpected "1 day"'),
    ],
)
def test_parse_duration_errors(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == (
        f'invalid duration "{text}": {problem}, '
        "expected e.g. 30s, 1h30m, 500ms, 24h (units: ns, us, ms, s, m, h, d, y)"
    )


# --- the three classes of fields a Kuma user may write --------------------------------------


def warnings_of(doc: Any) -> list[str]:
    result = resources.validate_resource(doc)
    return [str(w) for w in result.warnings]


@pytest.mark.parametrize("field", ["kri", "creationTime", "modificationTime"])
def test_output_only_fields_are_accepted_silently(field: str) -> None:
    for doc in (
        dataplane_doc(),
        {"type": "Mesh", "name": "m"},
        {
            "type": "MeshTrafficPermission",
            "mesh": "default",
            "name": "p",
            "spec": {"from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]},
        },
    ):
        exported = {**doc, field: "kri_x_default___p_" if field == "kri" else "2024-01-01T00:00Z"}
        result = resources.validate_resource(exported)
        assert result.model == parse_resource(doc)
        assert result.warnings == ()
        assert field not in result.model.to_dict()


def test_labels_are_kept() -> None:
    doc = {**dataplane_doc(), "labels": {"kuma.io/origin": "zone", "team": "a"}}
    assert parse_dataplane(doc).to_dict()["labels"] == {"kuma.io/origin": "zone", "team": "a"}


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {**dataplane_doc(), "metrics": {"type": "prometheus"}},
            "metrics: ignored: kumadp's agent serves the merged metrics on its --metrics-port",
        ),
        (
            dataplane_doc(
                inbound=[
                    {"port": 1, "tags": {SERVICE: "a"}, "serviceProbe": {"tcp": {}}},
                ]
            ),
            "networking.inbound[0].serviceProbe: ignored: no probe runs; the inbound counts as "
            "healthy while its proxy is online",
        ),
        (
            dataplane_doc(transparentProxying={"reachableServices": ["a"]}),
            "networking.transparentProxying.reachableServices: ignored: every service of the "
            "mesh stays reachable",
        ),
        (
            {"type": "Mesh", "name": "m", "tracing": {"backends": []}},
            "tracing: ignored: no tracing is configured",
        ),
        (
            {"type": "Mesh", "name": "m", "mtls": {"skipValidation": True}},
            "mtls.skipValidation: ignored: the backends are validated all the same",
        ),
        (
            {"type": "Mesh", "name": "m", "meshServices": {"mode": "Everywhere"}},
            "meshServices.mode: ignored: Everywhere (kumadp routes by kuma.io/service and makes "
            "no MeshService resources)",
        ),
    ],
)
def test_kuma_fields_without_effect_are_accepted_with_a_warning(doc: Any, expected: str) -> None:
    assert warnings_of(doc) == [expected]


def test_warnings_leave_the_model_as_without_the_field() -> None:
    doc = {**dataplane_doc(), "probes": {"port": 9000}}
    assert resources.validate_resource(doc).model == parse_dataplane(dataplane_doc())


def test_a_typo_of_an_ignored_field_is_an_error_with_its_suggestion() -> None:
    doc = dataplane_doc(inbound=[{"port": 1, "tags": {SERVICE: "a"}, "serviceProbes": {}}])
    assert errors_of(doc) == [
        'networking.inbound[0].serviceProbes: unknown field (did you mean "serviceProbe"?)'
    ]


def test_mesh_exclusive_mesh_services_and_skip_initial_policies() -> None:
    doc = {"type": "Mesh", "name": "m", "meshServices": {"mode": "Exclusive"}}
    assert errors_of(doc, parse_mesh) == [
        "meshServices.mode: Exclusive is not supported yet by kumadp"
    ]
    mesh = parse_mesh(
        {"type": "Mesh", "name": "m", "skipCreatingInitialPolicies": ["*"], "meshServices": {}}
    )
    assert mesh.skips_initial_policy("MeshTrafficPermission")
    assert mesh.to_dict() == {"type": "Mesh", "name": "m", "skipCreatingInitialPolicies": ["*"]}
    assert errors_of(
        {"type": "Mesh", "name": "m", "skipCreatingInitialPolicies": [1]}, parse_mesh
    ) == ['skipCreatingInitialPolicies[0]: must be a policy type name or "*"']


# --- Kuma 2.14's dataplane forms --------------------------------------------------------------


def test_outbound_only_dataplane() -> None:
    for inbound in ([], None):
        doc = dataplane_doc(inbound=inbound, outbound=[{"port": 10001, "tags": {SERVICE: "b"}}])
        dp = parse_dataplane(doc)
        assert dp.networking.inbound == ()
        assert dp.services == () and dp.identity_services == ()
    labelled = {**doc, "labels": {"kuma.io/workload": "cron"}}
    assert parse_dataplane(labelled).identity_services == ("cron",)


def test_inbound_without_tags_takes_its_service_from_the_workload_label() -> None:
    doc = dataplane_doc(inbound=[{"port": 10000, "name": "http", "protocol": "http"}])
    doc["labels"] = {"kuma.io/workload": "backend"}
    dp = parse_dataplane(doc)
    inbound = dp.networking.inbound[0]
    assert inbound.service == "backend"
    assert inbound.protocol == "http"
    assert inbound.tags == {SERVICE: "backend", "kuma.io/protocol": "http"}
    assert inbound.section_name == "http"
    # written back as given
    assert dp.to_dict()["networking"]["inbound"] == [
        {"port": 10000, "name": "http", "protocol": "http"}
    ]
    assert parse_dataplane(dp.to_dict()) == dp


def test_inbound_name_state_and_health() -> None:
    doc = dataplane_doc(
        inbound=[
            {"port": 1, "name": "a", "tags": {SERVICE: "a"}, "state": "NotReady"},
            {"port": 2, "tags": {SERVICE: "a"}, "health": {"ready": False}},
            {"port": 3, "tags": {SERVICE: "a"}, "state": "Ignored"},
            {"port": 4, "tags": {SERVICE: "a"}, "health": {"ready": True}},
        ]
    )
    inbound = parse_dataplane(doc).networking.inbound
    assert [i.serving for i in inbound] == [False, False, False, True]
    assert [i.has_listener for i in inbound] == [True, True, False, True]
    assert [i.section_name for i in inbound] == ["a", "2", "3", "4"]
    assert parse_dataplane(parse_dataplane(doc).to_dict()) == parse_dataplane(doc)
    dup = dataplane_doc(
        inbound=[
            {"port": 1, "name": "a", "tags": {SERVICE: "a"}},
            {"port": 2, "name": "a", "tags": {SERVICE: "a"}},
        ]
    )
    assert errors_of(dup) == [
        'networking.inbound[1].name: "a" is already used by networking.inbound[0]'
    ]
    assert errors_of(
        dataplane_doc(inbound=[{"port": 1, "tags": {SERVICE: "a"}, "state": "x"}])
    ) == ["networking.inbound[0].state: must be one of Ready, NotReady, Ignored"]


def test_outbound_backend_ref() -> None:
    ref = {"kind": "MeshService", "name": "backend", "port": 8080}
    dp = parse_dataplane(dataplane_doc(outbound=[{"port": 10001, "backendRef": ref}]))
    outbound = dp.networking.outbound[0]
    assert outbound.service == "backend" and outbound.backend_port == 8080
    assert dp.to_dict()["networking"]["outbound"] == [
        {"port": 10001, "address": "127.0.0.1", "backendRef": ref}
    ]
    assert parse_dataplane(dp.to_dict()) == dp


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (
            {"kind": "MeshService", "name": "b"},
            "networking.outbound[0].backendRef.port: is required",
        ),
        ({"kind": "MeshService", "port": 1}, "networking.outbound[0].backendRef.name: is required"),
        (
            {"kind": "MeshExternalService", "name": "b", "port": 1},
            "networking.outbound[0].backendRef.kind: MeshExternalService is not supported yet "
            "by kumadp",
        ),
        (
            {"kind": "MeshService", "labels": {"a": "b"}, "port": 1},
            "networking.outbound[0].backendRef.labels: not supported yet by kumadp",
        ),
        (
            {"kind": "Mesh", "name": "b", "port": 1},
            "networking.outbound[0].backendRef.kind: must be MeshService",
        ),
    ],
)
def test_outbound_backend_ref_errors(ref: dict[str, Any], expected: str) -> None:
    assert errors_of(dataplane_doc(outbound=[{"port": 10001, "backendRef": ref}])) == [expected]
