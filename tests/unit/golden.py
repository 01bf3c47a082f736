"""Shared by the generator tests: golden files and Envoy's own validation of generated config.

``UPDATE_GOLDEN=1`` rewrites golden files on purpose.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from envoy.config.bootstrap.v3.bootstrap_pb2 import Bootstrap
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from google.protobuf.json_format import MessageToJson
from google.protobuf.message import Message

from kumadp.cp.generate import tls
from kumadp.cp.generate.resource_set import name_of
from kumadp.xds import types
from testkit.procs import envoy_binary

TESTDATA = Path(__file__).parent / "testdata" / "generate"

Resources = dict[str, list[Message]]


def check_golden(case: str, actual: str) -> None:
    golden = TESTDATA / f"{case}.golden.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(actual)
    assert golden.exists(), f"no golden file {golden.name}: run with UPDATE_GOLDEN=1"
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
