"""The wheel a user installs: built from this tree with pip (about 3 s, once per run), it
holds the whole package with what shipped files need (the demo app, the bootstrap template,
the web UI's assets) and nothing of the harness, the benchmarks or the tests; unpacked alone
on sys.path, it loads its template and assets and finds no harness to import."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import kumadp

REPO = Path(kumadp.__file__).resolve().parents[1]
PACKAGE = REPO / "kumadp"
ASSETS = PACKAGE / "cp" / "gui" / "assets"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (built,) = out.glob("kumadp-*.whl")
    return built


def _names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def _source_files(directory: Path) -> set[str]:
    return {
        path.relative_to(REPO).as_posix()
        for path in directory.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def test_the_wheel_holds_nothing_of_the_harness_benchmarks_or_tests(wheel: Path) -> None:
    names = _names(wheel)
    top = {name.split("/")[0] for name in names}
    assert top == {"kumadp", next(t for t in top if t.endswith(".dist-info"))}, sorted(top)
    unwanted = [
        n
        for n in names
        if any(part in ("testkit", "bench", "tests", "devtools") for part in n.split("/"))
    ]
    assert unwanted == []


def test_the_wheel_holds_the_package_and_what_shipped_files_need(wheel: Path) -> None:
    names = _names(wheel)
    assert "kumadp/demo_app.py" in names  # the image's and the k8s example's demo app
    assert "kumadp/bootstrap_templates/bootstrap.yaml" in names
    assert {"kumadp/wire/agent.proto", "kumadp/wire/kds.proto"} <= names
    assets = _source_files(ASSETS)
    assert "kumadp/cp/gui/assets/index.html" in assets and len(assets) > 10
    assert assets - names == set(), "GUI assets missing from the wheel"
    modules = {n for n in _source_files(PACKAGE) if n.endswith(".py")}
    assert modules - names == set(), "modules missing from the wheel"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as archive:
        assert "kumadp = kumadp.cli.main:main" in archive.read(entry_points).decode()


CHECK_UNPACKED = """
import importlib.util, sys
sys.path = [sys.argv[1]] + [p for p in sys.path if p not in ("", sys.argv[2])]
import kumadp, kumadp.demo_app
from kumadp.cp.bootstrap import load_template
from kumadp.cp.gui.routes import ASSETS_DIR, load_assets
assert kumadp.__file__.startswith(sys.argv[1]), kumadp.__file__
assert str(ASSETS_DIR).startswith(sys.argv[1]), ASSETS_DIR
from importlib.resources import files
assert (files("kumadp") / "bootstrap_templates" / "bootstrap.yaml").is_file()
assert load_template()["node"]["id"] == "{{ node_id }}"
assets = load_assets()
assert "index.html" in assets and any(name.startswith("pages/") for name in assets)
for harness in ("testkit", "bench", "tests"):
    assert importlib.util.find_spec(harness) is None, harness
print("ok")
"""


def test_the_unpacked_wheel_alone_loads_its_template_and_assets(
    wheel: Path, tmp_path: Path
) -> None:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", CHECK_UNPACKED, str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
