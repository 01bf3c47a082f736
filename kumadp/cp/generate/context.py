"""What one generator run knows: the mesh view, the dataplane, and per-proxy extras."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kumadp.cp.generate import names
from kumadp.cp.generate.view import MeshView
from kumadp.resources.model import Dataplane


@dataclass(frozen=True)
class MtlsContext:
    """SDS secret names the TLS configurers point Envoy at (mTLS issue fills this in)."""

    identity_secret: str
    ca_secret: str

    @classmethod
    def for_mesh(cls, mesh: str) -> MtlsContext:
        return cls(
            identity_secret=names.identity_secret(mesh), ca_secret=names.mesh_ca_secret(mesh)
        )


@dataclass(frozen=True)
class Context:
    view: MeshView
    dataplane: Dataplane
    mtls: MtlsContext | None = None  # None: plaintext
    vips: Mapping[str, str] = field(default_factory=dict)  # service -> VIP

    @property
    def mesh(self) -> str:
        return self.view.mesh.name
