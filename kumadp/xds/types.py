"""xDS type URLs, the order ADS sends them in, and the name of a resource: the one place
that knows them (ADS, the agent's SDS, generators and KDS all use these).

Importing this module loads no protobuf module and no gRPC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from google.protobuf.message import Message

TYPE_URL_PREFIX: Final = "type.googleapis.com/"
_ENVOY: Final = TYPE_URL_PREFIX + "envoy."

CLUSTER: Final = _ENVOY + "config.cluster.v3.Cluster"
ENDPOINT: Final = _ENVOY + "config.endpoint.v3.ClusterLoadAssignment"
LISTENER: Final = _ENVOY + "config.listener.v3.Listener"
ROUTE: Final = _ENVOY + "config.route.v3.RouteConfiguration"
SECRET: Final = _ENVOY + "extensions.transport_sockets.tls.v3.Secret"

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

# Types whose resources carry their name in ``cluster_name`` rather than ``name``.
_NAMED_BY_CLUSTER: Final = frozenset({ENDPOINT})


_URLS: dict[Any, str] = {}  # message descriptor -> type URL (generation asks ~10^6 times)


def type_url_of(resource: Message | type[Message]) -> str:
    """The type URL of a message or message class (``type.googleapis.com/<full name>``)."""
    descriptor = resource.DESCRIPTOR
    url = _URLS.get(descriptor)
    if url is None:
        url = _URLS[descriptor] = TYPE_URL_PREFIX + descriptor.full_name
    return url


def name_of(resource: Message) -> str:
    """The xDS name of a resource: ``cluster_name`` for a ClusterLoadAssignment, else
    ``name``. Raises ``ValueError`` for a message type without a name field."""
    field = "cluster_name" if type_url_of(resource) in _NAMED_BY_CLUSTER else "name"
    name = getattr(resource, field, None)
    if not isinstance(name, str):
        raise ValueError(f"{resource.DESCRIPTOR.full_name} has no {field} field")
    return name


def short_name(type_url: str) -> str:
    """``cds``, ``eds``... for Envoy's types; the last part of the type name otherwise."""
    return SHORT_NAMES.get(type_url, type_url.rsplit(".", 1)[-1].rsplit("/", 1)[-1])
