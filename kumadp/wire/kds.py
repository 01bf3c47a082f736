"""The KDS contract (global <-> zone control planes), spelled once: method paths, the
metadata that identifies a zone, the labels synced copies carry, and the type URL of a
KDS resource. The messages are in ``kds.proto`` (``kds_pb2``).

Importing this module loads no protobuf module and no gRPC.
"""

from __future__ import annotations

from typing import Final

# -- the service (registered generically: see kds.proto) -------------------------------------
SERVICE: Final = "kumadp.kds.v1.KDS"
GLOBAL_TO_ZONE_METHOD: Final = "GlobalToZoneSync"
ZONE_TO_GLOBAL_METHOD: Final = "ZoneToGlobalSync"
HEALTH_CHECK_METHOD: Final = "HealthCheck"
SIGN_INTERMEDIATE_METHOD: Final = "SignIntermediateCA"  # a zone's intermediate CA, signed
RESOURCE_MESSAGE: Final = "kumadp.kds.v1.KumaResource"  # packed in each delta Resource


def method_path(method: str) -> str:
    """``/kumadp.kds.v1.KDS/<method>``: what a gRPC client calls."""
    return f"/{SERVICE}/{method}"


DEFAULT_PORT: Final = 5685
ADDRESS_SCHEME: Final = "grpcs"  # --kds-global-address grpcs://HOST:5685
MAX_MESSAGE_BYTES: Final = 32 * 1024 * 1024  # a whole type can travel in one response

# -- who is calling: gRPC metadata on every call of a zone -----------------------------------
ZONE_METADATA: Final = "client-id"  # the zone's name (Kuma's key)
INSTANCE_METADATA: Final = "kds-instance-id"  # which zone CP process
SESSION_METADATA: Final = "kds-session-id"  # which connection of that process
VERSION_METADATA: Final = "kds-cp-version"  # the zone CP's kumadp version

# -- labels on synced copies ----------------------------------------------------------------
ORIGIN_LABEL: Final = "kuma.io/origin"
ORIGIN_GLOBAL: Final = "global"
ORIGIN_ZONE: Final = "zone"
ZONE_LABEL: Final = "kuma.io/zone"  # on zone-originated copies at global
DISPLAY_NAME_LABEL: Final = "kuma.io/display-name"  # the name before hashing
VERSION_LABEL: Final = "kds.kumadp.io/version"  # the content hash of the stored copy

# Labels of a stored copy that describe the copy itself, not the resource: never passed on
# (the receiver sets them from what it knows; global sets ``kuma.io/zone`` from the stream).
SYNC_LABELS: Final = frozenset({ORIGIN_LABEL, DISPLAY_NAME_LABEL, VERSION_LABEL})

__all__ = [
    "ADDRESS_SCHEME",
    "DEFAULT_PORT",
    "DISPLAY_NAME_LABEL",
    "GLOBAL_TO_ZONE_METHOD",
    "HEALTH_CHECK_METHOD",
    "INSTANCE_METADATA",
    "MAX_MESSAGE_BYTES",
    "ORIGIN_GLOBAL",
    "ORIGIN_LABEL",
    "ORIGIN_ZONE",
    "RESOURCE_MESSAGE",
    "SERVICE",
    "SESSION_METADATA",
    "SIGN_INTERMEDIATE_METHOD",
    "SYNC_LABELS",
    "VERSION_LABEL",
    "VERSION_METADATA",
    "ZONE_LABEL",
    "ZONE_METADATA",
    "ZONE_TO_GLOBAL_METHOD",
    "method_path",
]
