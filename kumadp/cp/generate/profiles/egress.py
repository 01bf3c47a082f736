"""The zone egress profile: registered, not implemented yet (generation fails clearly)."""

from __future__ import annotations

from kumadp.cp.generate.profile import EGRESS, not_implemented

PROFILE = not_implemented(EGRESS, "zone egress")
