"""The contract is defined once: every agent<->CP constant lives in ``kumadp.wire`` (type URLs
in ``kumadp.xds.types``), and the contract modules are light to import."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "kumadp"

# what a definition of each constant looks like in a string literal of the package's code
CONSTANTS = {
    "spiffe://": re.compile(r"spiffe://"),
    "kuma://": re.compile(r"kuma://"),
    "identity_cert:secret": re.compile(r"identity_cert:secret"),
    "mesh_ca:secret": re.compile(r"mesh_ca:secret"),
    "sds.sock": re.compile(r"\bsds\.sock\b"),
    "bind-outbounds": re.compile(r"(?<![-\w])bind-outbounds\b"),  # not the --bind-outbounds flag
    "authorization": re.compile(r"^authorization$"),
    "the Secret type URL": re.compile(r"transport_sockets\.tls\.v3\.Secret\b"),
    "type.googleapis.com/": re.compile(r"type\.googleapis\.com/"),
}


def _code_strings(path: Path) -> Iterator[tuple[int, str]]:
    """The string literals of a module's code (docstrings and comments are not code)."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                yield node.lineno, node.value


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if not p.name.endswith(("_pb2.py", "_grpc.py")))


@pytest.mark.parametrize("name", sorted(CONSTANTS))
def test_each_contract_constant_is_defined_once(name: str) -> None:
    pattern = CONSTANTS[name]
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in _sources()
        for line, text in _code_strings(path)
        if pattern.search(text)
    ]
    assert len(found) == 1, f"{name} is spelled out in {len(found)} places: {found}"


def test_the_defining_modules_are_the_contract() -> None:
    from kumadp.wire import names
    from kumadp.xds import types

    assert names.identity_secret_name("m") == "identity_cert:secret:m"
    assert names.mesh_ca_secret_name("m") == "mesh_ca:secret:m"
    assert names.spiffe_id("m", "web") == "spiffe://m/web"
    assert names.spiffe_prefix("m") == "spiffe://m/"
    assert names.spiffe_trust_domain("m") == "spiffe://m"
    assert names.kuma_tag_uri("kuma.io/zone", "east") == "kuma://kuma.io/zone/east"
    assert names.FEATURE_BIND_OUTBOUNDS == "bind-outbounds" in names.FEATURES
    assert names.SDS_SOCKET_FILE == "sds.sock"
    assert names.AUTHORIZATION_METADATA == "authorization"
    assert types.SECRET == "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


def test_the_checker_sees_a_second_definition(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        '"""Docstrings may say spiffe://<mesh>/<service>."""\n'
        "# so may comments: sds.sock\n"
        'A = f"spiffe://{1}/x"\n'
        'FLAG = "--bind-outbounds"\n'
    )
    texts = [text for _, text in _code_strings(module)]
    assert [t for t in texts if CONSTANTS["spiffe://"].search(t)] == ["spiffe://"]
    assert not any(CONSTANTS["sds.sock"].search(t) for t in texts)
    assert not any(CONSTANTS["bind-outbounds"].search(t) for t in texts)


@pytest.mark.parametrize("module", ["kumadp.wire", "kumadp.wire.names", "kumadp.xds.types"])
def test_contract_modules_load_neither_grpc_nor_the_servers(module: str) -> None:
    heavy = (
        "grpc",
        "kumadp.xds.server",
        "kumadp.xds.delta",
        "kumadp.xds.grpc_adapter",
        "kumadp.cp",
        "kumadp.agent",
        "google.protobuf",
    )
    code = f"import sys, {module}; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_bootstrap_types_load_no_grpc() -> None:
    code = "import sys, kumadp.wire.bootstrap; print('grpc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
