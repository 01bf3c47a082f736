from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.mesh import MeshEnv


@pytest.fixture
def env(tmp_path: Path) -> Iterator[MeshEnv]:
    mesh_env = MeshEnv(tmp_path)
    try:
        yield mesh_env
    finally:
        mesh_env.close()
