"""Golden cases of every profile (layout and loader: ``tests/unit/golden.py``): the generated
config is byte for byte the golden YAML, and Envoy itself accepts it."""

from __future__ import annotations

from pathlib import Path

import pytest

from kumadp.cp.generate import PROFILES, resources_to_yaml
from tests.unit.golden import (
    TESTDATA,
    assert_envoy_accepts,
    case_dirs,
    case_id,
    check_golden,
    load_case,
)

CASES = case_dirs()


def test_cases_are_there() -> None:
    assert len(case_dirs("dataplane")) >= 17
    profiles = {p.name for p in TESTDATA.iterdir() if p.is_dir()}
    assert profiles <= set(PROFILES), "a directory per profile, named as its proxy type"
    for path in CASES:
        assert path.name[:2].isdigit() and path.name[2] == "-", f"{case_id(path)}: NN-<case>"


@pytest.mark.parametrize("path", CASES, ids=case_id)
def test_golden(path: Path) -> None:
    case = load_case(path)
    check_golden(path, resources_to_yaml(case.generate()))


@pytest.mark.parametrize("path", CASES, ids=case_id)
def test_envoy_accepts_generated_config(path: Path, tmp_path: Path) -> None:
    assert_envoy_accepts(load_case(path).generate(), tmp_path)
