"""The zone ingress profile: registered, not implemented yet (generation fails clearly)."""

from __future__ import annotations

from kumadp.cp.generate.profile import INGRESS, not_implemented

PROFILE = not_implemented(INGRESS, "zone ingress")
