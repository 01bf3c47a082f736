"""The control plane's runtime: configuration, the composition root (which components run
in which mode, in which shutdown order) and ``run_control_plane``."""

from kumadp.cp.runtime.config import MODES, ControlPlaneConfig
from kumadp.cp.runtime.control_plane import ControlPlane
from kumadp.cp.runtime.phases import Phase, run_in_phases
from kumadp.cp.runtime.run import run_control_plane
from kumadp.cp.runtime.tls import server_certificate

__all__ = [
    "MODES",
    "ControlPlane",
    "ControlPlaneConfig",
    "Phase",
    "run_control_plane",
    "run_in_phases",
    "server_certificate",
]
