"""What one generator run knows: the mesh view, the dataplane, and per-proxy extras."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kumadp.cp.generate import names
from kumadp.cp.generate.view import MeshView
from kumadp.resources.model import Dataplane, Mesh

STRICT = "STRICT"
PERMISSIVE = "PERMISSIVE"
MTLS_MODES = (STRICT, PERMISSIVE)


@dataclass(frozen=True)
class MtlsContext:
    """mTLS is on for the mesh: the SDS secret names the TLS configurers point Envoy at, and
    whether inbounds also accept plaintext (``PERMISSIVE``) or only mesh mTLS (``STRICT``)."""

    identity_secret: str
    ca_secret: str
    mode: str = STRICT

    @classmethod
    def for_mesh(cls, mesh: str, mode: str = STRICT) -> MtlsContext:
        if mode not in MTLS_MODES:
            raise ValueError(f"mTLS mode must be one of {', '.join(MTLS_MODES)}, not {mode!r}")
        return cls(
            identity_secret=names.identity_secret(mesh),
            ca_secret=names.mesh_ca_secret(mesh),
            mode=mode,
        )

    @property
    def permissive(self) -> bool:
        return self.mode == PERMISSIVE


def mtls_context_for(mesh: Mesh) -> MtlsContext | None:
    """The mesh's mTLS as generation needs it: None unless ``mtls.enabledBackend`` names one
    of its backends; the mode is that backend's (default ``STRICT``)."""
    mtls = mesh.mtls or {}
    enabled = mtls.get("enabledBackend")
    if not enabled:
        return None
    backend = next((b for b in mtls.get("backends") or [] if b.get("name") == enabled), None)
    if backend is None:
        return None  # validation forbids it; a stored mesh from elsewhere: stay plaintext
    return MtlsContext.for_mesh(mesh.name, backend.get("mode") or STRICT)


@dataclass(frozen=True)
class Context:
    view: MeshView
    dataplane: Dataplane
    mtls: MtlsContext | None = None  # None: plaintext
    # service -> the address this dataplane reaches it on: its VIP, or under bind-outbounds
    # its loopback address (kumadp.cp.vips.VipMap.addresses)
    vips: Mapping[str, str] = field(default_factory=dict)
    bind_outbounds: bool = False  # the agent runs with --bind-outbounds
    transparent_proxy: bool = False  # traffic is redirected to Envoy by iptables

    @property
    def mesh(self) -> str:
        return self.view.mesh.name

    @property
    def proxy_id(self) -> str:
        """The Envoy node id: ``<mesh>.<name>``."""
        return f"{self.dataplane.mesh}.{self.dataplane.name}"
