"""The shape of kumadp's imports: no cycle between its modules, and the layering the
design asks for (the CP's domain modules never import its HTTP API)."""

from __future__ import annotations

import ast
from pathlib import Path

import kumadp

ROOT = Path(kumadp.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    """module -> the kumadp modules it imports (anywhere in it: lazy and type-only imports
    count too, a cycle through them is still a cycle of concerns)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{alias.name}" for alias in node.names]
                targets = [t if t in modules else base for t in targets]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read_right() -> None:
    graph = import_graph()
    assert "kumadp.cp.store.base" in graph["kumadp.cp.store.memory"]
    assert "kumadp.resources.registry" in graph["kumadp.resources"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_in_kumadp() -> None:
    assert cycles(import_graph()) == []


def test_cp_domain_modules_never_import_the_api() -> None:
    graph = import_graph()
    offenders = {
        module
        for module, imported in graph.items()
        if module.startswith("kumadp.cp.")
        and not module.startswith(("kumadp.cp.api", "kumadp.cp.runtime"))
        and any(t == "kumadp.cp.api" or t.startswith("kumadp.cp.api.") for t in imported)
    }
    assert offenders == set(), sorted(offenders)


def test_only_the_cli_imports_the_runtime() -> None:
    graph = import_graph()
    importers = {
        module
        for module, imported in graph.items()
        if any(t.startswith("kumadp.cp.runtime") for t in imported)
        and not module.startswith("kumadp.cp.runtime")
    }
    assert importers <= {"kumadp.cli.cp"}


def test_kds_knows_nothing_of_generation_nor_the_api() -> None:
    graph = import_graph()
    kds = {m: imported for m, imported in graph.items() if m.startswith("kumadp.cp.kds")}
    assert len(kds) > 5
    forbidden = ("kumadp.cp.api", "kumadp.cp.generate", "kumadp.cp.runtime", "kumadp.cp.reconcile")
    offenders = {
        m: sorted(t for t in imported if t.startswith(forbidden)) for m, imported in kds.items()
    }
    assert {m: ts for m, ts in offenders.items() if ts} == {}
    # and the protocol does not know KDS
    assert not any(
        t.startswith("kumadp.cp")
        for m, ts in graph.items()
        if m.startswith("kumadp.xds")
        for t in ts
    )


NOT_SHIPPED = ("testkit", "bench", "tests")


def _imports_outside_the_package(path: Path) -> set[str]:
    """The absolute module names ``path`` imports (lazy ones too), and the constant names it
    hands to ``importlib.import_module`` / ``__import__``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if called in ("import_module", "__import__") and isinstance(first, ast.Constant):
                found.add(str(first.value))
    return found


def test_kumadp_never_imports_the_harness_benchmarks_or_tests() -> None:
    offenders = {
        _module_name(path): sorted(
            name for name in _imports_outside_the_package(path) if name.split(".")[0] in NOT_SHIPPED
        )
        for path in ROOT.rglob("*.py")
    }
    assert {module: names for module, names in offenders.items() if names} == {}


def test_the_harness_check_sees_every_kind_of_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import testkit.procs\n"
        "def f():\n"
        "    from bench import run\n"
        "    import importlib\n"
        "    importlib.import_module('tests.unit.golden')\n"
        "from . import sibling\n"
    )
    assert _imports_outside_the_package(sample) >= {"testkit.procs", "bench", "tests.unit.golden"}
