"""Golden cases of the generators: one layout and one loader for every profile, and Envoy's own
validation of generated config.

A case is a directory ``testdata/generate/<profile>/<NN-case>/`` (``<profile>``: a proxy type
of ``kumadp.cp.generate.PROFILES``) holding:

``input.yaml``, everything the case needs::

    # What the case shows (a comment).
    target: web-1                 # the proxy generated for, a dataplane of the mesh
    options:                      # optional: what generate() takes besides the view
      vips: {backend: 240.0.0.1}  # service -> address
      bindOutbounds: false
      transparentProxy: false
    mesh: {type: Mesh, name: default, ...}  # mTLS from its ``mtls``, as the CP does
    policies: [...]               # optional: policy resources, any type
    dataplanes: [...]             # Dataplane resources (other meshes' are ignored)
    zone: zone-a                  # optional: the zone of the control plane (multi-zone)
    zoneIngresses: [...]          # optional: every zone's ZoneIngress (cross-zone endpoints)
    zoneEgresses: [...]           # optional: ZoneEgress resources

A zone ingress or egress case (profile ``ingress``, ``egress``) names a ZoneIngress or a
ZoneEgress as its ``target``, needs ``zone``, and lists every mesh of the zone under
``meshes`` (instead of ``mesh``).

``golden.yaml``: the generated resources (``resources_to_yaml``). ``UPDATE_GOLDEN=1``
rewrites golden files on purpose.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy.config.bootstrap.v3.bootstrap_pb2 import Bootstrap
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from google.protobuf.json_format import MessageToJson
from google.protobuf.message import Message

from kumadp.cp.generate import (
    DATAPLANE,
    MeshView,
    MtlsContext,
    ZoneProxyContext,
    build_mesh_view,
    crosszone,
    generate,
    generate_zone_proxy,
    mtls_context_for,
    tls,
)
from kumadp.cp.generate.resource_set import name_of
from kumadp.resources import Dataplane, Mesh, parse_resource
from kumadp.resources.zone_proxies import ZoneEgress, ZoneIngress
from kumadp.xds import types
from testkit.procs import envoy_binary

TESTDATA = Path(__file__).parent / "testdata" / "generate"
INPUT = "input.yaml"
GOLDEN = "golden.yaml"
_KEYS = {
    "target",
    "options",
    "mesh",
    "meshes",
    "policies",
    "dataplanes",
    "zone",
    "zoneIngresses",
    "zoneEgresses",
}
_OPTIONS = {"vips", "bindOutbounds", "transparentProxy"}

Resources = dict[str, list[Message]]


@dataclass(frozen=True)
class Case:
    """One golden case, loaded: the view and the proxy to generate for, and the options."""

    profile: str
    path: Path
    view: MeshView | None
    target: Dataplane | None
    mtls: MtlsContext | None = None
    vips: dict[str, str] = field(default_factory=dict)
    bind_outbounds: bool = False
    transparent_proxy: bool = False
    zone_proxy: ZoneProxyContext | None = None  # an ingress or egress case

    def generate(self) -> Resources:
        if self.zone_proxy is not None:
            return generate_zone_proxy(self.zone_proxy)
        assert self.view is not None and self.target is not None
        return generate(
            self.view,
            self.target,
            proxy_type=self.profile,
            mtls=self.mtls,
            vips=self.vips,
            bind_outbounds=self.bind_outbounds,
            transparent_proxy=self.transparent_proxy,
        )


def case_dirs(profile: str | None = None) -> list[Path]:
    """Every case directory (of ``profile``, or of every profile), sorted."""
    profiles = [TESTDATA / profile] if profile else sorted(TESTDATA.iterdir())
    return sorted(d for p in profiles if p.is_dir() for d in p.iterdir() if (d / INPUT).exists())


def case_id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _parsed(doc: Any, kind: type[Any], where: str) -> Any:
    model = parse_resource(doc)
    assert isinstance(model, kind), f"{where}: a {kind.__name__} is expected, not {doc!r}"
    return model


def _view(
    mesh: Mesh,
    dataplanes: list[Dataplane],
    policies: list[Any],
    zone: str | None,
    ingresses: list[ZoneIngress],
    egresses: list[ZoneEgress],
) -> MeshView:
    """The mesh's view as a zone CP builds it: with the other zones' services (mTLS only)."""
    remote = crosszone.remote_endpoints(
        mesh,
        mtls=mtls_context_for(mesh) is not None,
        zone=zone,
        ingresses=ingresses,
        egresses=egresses,
    )
    return build_mesh_view(mesh, dataplanes, policies, remote=remote.endpoints, zone=zone)


def load_case(path: Path) -> Case:
    doc = yaml.safe_load((path / INPUT).read_text())
    unknown = set(doc) - _KEYS
    assert not unknown, f"{path / INPUT}: unknown keys {sorted(unknown)}"
    options = doc.get("options") or {}
    unknown = set(options) - _OPTIONS
    assert not unknown, f"{path / INPUT}: unknown options {sorted(unknown)}"
    dataplanes = [_parsed(d, Dataplane, "dataplanes") for d in doc.get("dataplanes") or []]
    policies: list[Any] = [parse_resource(p) for p in doc.get("policies") or []]
    zone = doc.get("zone")
    ingresses = [_parsed(d, ZoneIngress, "zoneIngresses") for d in doc.get("zoneIngresses") or []]
    egresses = [_parsed(d, ZoneEgress, "zoneEgresses") for d in doc.get("zoneEgresses") or []]
    if path.parent.name != DATAPLANE:
        meshes: list[Mesh] = [_parsed(m, Mesh, "meshes") for m in doc["meshes"]]
        targets = [*ingresses, *egresses]
        (proxy,) = (p for p in targets if p.name == doc["target"] and p.zone == zone)
        views = tuple(
            _view(m, dataplanes, policies, zone, ingresses, egresses)
            for m in sorted(meshes, key=lambda m: m.name)
        )
        mtls_meshes = frozenset(m.name for m in meshes if mtls_context_for(m) is not None)
        return Case(
            profile=path.parent.name,
            path=path,
            view=None,
            target=None,
            zone_proxy=ZoneProxyContext(
                proxy=proxy,
                zone=zone,
                views=views,
                mtls_meshes=mtls_meshes,
                ingresses=tuple(ingresses),
            ),
        )
    mesh: Mesh = _parsed(doc["mesh"], Mesh, "mesh")
    (target,) = (dp for dp in dataplanes if dp.name == doc["target"] and dp.mesh == mesh.name)
    return Case(
        profile=path.parent.name,
        path=path,
        view=_view(mesh, dataplanes, policies, zone, ingresses, egresses),
        target=target,
        mtls=mtls_context_for(mesh),
        vips=dict(options.get("vips") or {}),
        bind_outbounds=bool(options.get("bindOutbounds", False)),
        transparent_proxy=bool(options.get("transparentProxy", False)),
    )


def check_golden(path: Path, actual: str) -> None:
    golden = path / GOLDEN
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(actual)
    assert golden.exists(), f"no golden file {golden}: run with UPDATE_GOLDEN=1"
    assert actual == golden.read_text()


def static_bootstrap(resources: Resources, sds_socket: Path) -> Bootstrap:
    """The snapshot as static resources (EDS clusters become STATIC with their endpoints),
    plus the ``sds_cluster`` the agent's bootstrap has (a Unix socket nobody listens on:
    validate mode does not connect)."""
    assignments = {name_of(r): r for r in resources[types.ENDPOINT]}
    bootstrap = Bootstrap()
    bootstrap.node.id = "default.dp-1"  # SDS needs both, as the CP's bootstrap sets them
    bootstrap.node.cluster = "service"
    sds = bootstrap.static_resources.clusters.add()
    sds.name = tls.SDS_CLUSTER
    sds.type = Cluster.STATIC
    sds.connect_timeout.seconds = 1
    sds.load_assignment.cluster_name = tls.SDS_CLUSTER
    endpoint = sds.load_assignment.endpoints.add().lb_endpoints.add().endpoint
    endpoint.address.pipe.path = str(sds_socket)
    sds.http2_protocol_options.SetInParent()
    for generated in resources[types.CLUSTER]:
        cluster = bootstrap.static_resources.clusters.add()
        cluster.CopyFrom(generated)
        if cluster.type == Cluster.EDS:
            cluster.ClearField("eds_cluster_config")
            cluster.type = Cluster.STATIC
            cluster.load_assignment.CopyFrom(assignments.pop(cluster.name))
    assert not assignments, f"endpoints without a cluster: {sorted(assignments)}"
    for listener in resources[types.LISTENER]:
        bootstrap.static_resources.listeners.add().CopyFrom(listener)
    return bootstrap


def assert_envoy_accepts(resources: Resources, tmp_path: Path) -> None:
    """``envoy --mode validate`` on the generated resources: a wrong type URL or field fails."""
    envoy = envoy_binary()
    if envoy is None:
        pytest.skip("no envoy binary in PATH or beside the Python interpreter")
    config = tmp_path / "envoy.json"
    config.write_text(MessageToJson(static_bootstrap(resources, tmp_path / "sds.sock")))
    result = subprocess.run(
        [envoy, "--mode", "validate", "-c", str(config), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
