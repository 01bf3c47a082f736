"""Modules of one concern: no hand-written module in kumadp/ reaches 400 lines (generated
protobuf code, ``*_pb2*``, is exempt)."""

from __future__ import annotations

from pathlib import Path

import kumadp

ROOT = Path(kumadp.__file__).parent
LIMIT = 400


def _sizes() -> dict[str, int]:
    return {
        path.relative_to(ROOT.parent).as_posix(): len(path.read_text().splitlines())
        for path in ROOT.rglob("*.py")
        if "_pb2" not in path.name
    }


def test_the_walk_sees_the_package() -> None:
    sizes = _sizes()
    assert "kumadp/agent/run.py" in sizes and "kumadp/cp/store/base.py" in sizes
    assert not any("_pb2" in name for name in sizes)


def test_no_module_in_kumadp_exceeds_400_lines() -> None:
    too_long = {name: lines for name, lines in _sizes().items() if lines > LIMIT}
    assert too_long == {}, f"split these modules (limit {LIMIT} lines): {too_long}"
