"""kumadp: a Python data-plane agent for Kuma-style service meshes, with a small control plane."""

__version__ = "0.1.0"
