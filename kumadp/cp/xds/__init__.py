"""The xDS protocol server: versioned snapshots, a snapshot cache and state-of-the-world ADS.

It knows nothing about how config is generated. Wiring::

    cache = SnapshotCache()
    ads = AdsServer(cache, callbacks)
    server = grpc.aio.server()
    add_ads_to_server(server, ads)
"""

from kumadp.cp.xds.cache import SnapshotCache
from kumadp.cp.xds.grpc_adapter import AdsServicer, add_ads_to_server
from kumadp.cp.xds.server import (
    AdsServer,
    AdsStream,
    Callbacks,
    NoopCallbacks,
    SnapshotSource,
    StreamRejected,
)
from kumadp.cp.xds.snapshot import (
    InconsistentSnapshot,
    Snapshot,
    message_to_dict,
    resource_name,
    snapshot_to_dict,
)

__all__ = [
    "AdsServer",
    "AdsServicer",
    "AdsStream",
    "Callbacks",
    "InconsistentSnapshot",
    "NoopCallbacks",
    "Snapshot",
    "SnapshotCache",
    "SnapshotSource",
    "StreamRejected",
    "add_ads_to_server",
    "message_to_dict",
    "resource_name",
    "snapshot_to_dict",
]
