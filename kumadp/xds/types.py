"""xDS type URLs and the order ADS sends them in (the one place that knows them)."""

from __future__ import annotations

from typing import Final

_PREFIX: Final = "type.googleapis.com/envoy."

CLUSTER: Final = _PREFIX + "config.cluster.v3.Cluster"
ENDPOINT: Final = _PREFIX + "config.endpoint.v3.ClusterLoadAssignment"
LISTENER: Final = _PREFIX + "config.listener.v3.Listener"
ROUTE: Final = _PREFIX + "config.route.v3.RouteConfiguration"
SECRET: Final = _PREFIX + "extensions.transport_sockets.tls.v3.Secret"

# Make-before-break order for state-of-the-world ADS: clusters before their endpoints,
# listeners before their routes (Envoy's xDS protocol docs, "eventual consistency").
ADS_ORDER: Final = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)

SHORT_NAMES: Final = {
    CLUSTER: "cds",
    ENDPOINT: "eds",
    LISTENER: "lds",
    ROUTE: "rds",
    SECRET: "sds",
}
