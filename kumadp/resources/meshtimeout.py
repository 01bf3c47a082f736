"""MeshTimeout (Kuma 2.x): connection, idle and HTTP timeouts, outbound (``to``) and inbound
(``from``)::

    default:
      connectionTimeout: 5s        # TCP connect to the upstream (not 0)
      idleTimeout: 1h              # no bytes either way (0: never)
      http:
        requestTimeout: 15s        # the whole request (0: none)
        streamIdleTimeout: 30m     # a stream without activity (0: never)
        maxStreamDuration: 0s      # a stream's lifetime (0: unbounded)
        maxConnectionDuration: 0s  # a connection's lifetime (0: unbounded)
        requestHeadersTimeout: 0s  # receiving the request headers (0: none)

The values in the comments are what a proxy gets for a field no policy sets (``DEFAULTS``);
the mesh's default policy (``default_mesh_timeout``) sets the first four.
"""

from __future__ import annotations

from dataclasses import dataclass

from kumadp.resources.confschema import DURATION, POSITIVE_DURATION, Conf, Nested, conf_field
from kumadp.resources.targeted import FROM, TO, Item, PolicyKind, TargetedPolicy, parse_policy
from kumadp.resources.targetref import MESH, TargetRef

MESH_TIMEOUT_TYPE = "MeshTimeout"


@dataclass(frozen=True)
class HttpTimeouts(Conf):
    request_timeout: str | None = conf_field(DURATION)
    stream_idle_timeout: str | None = conf_field(DURATION)
    max_stream_duration: str | None = conf_field(DURATION)
    max_connection_duration: str | None = conf_field(DURATION)
    request_headers_timeout: str | None = conf_field(DURATION)


_HTTP = Nested(HttpTimeouts)


@dataclass(frozen=True)
class TimeoutConf(Conf):
    connection_timeout: str | None = conf_field(POSITIVE_DURATION)
    idle_timeout: str | None = conf_field(DURATION)
    http: HttpTimeouts | None = conf_field(_HTTP)  # noqa: RUF009 (an immutable conf)


# What a proxy gets for a field no MeshTimeout sets (Kuma's plugin defaults).
DEFAULTS = TimeoutConf(
    connection_timeout="5s",
    idle_timeout="1h",
    http=HttpTimeouts(
        request_timeout="15s",
        stream_idle_timeout="30m",
        max_stream_duration="0s",
        max_connection_duration="0s",
        request_headers_timeout="0s",
    ),
)


class MeshTimeout(TargetedPolicy[TimeoutConf]):
    type = MESH_TIMEOUT_TYPE


KIND: PolicyKind[MeshTimeout, TimeoutConf] = PolicyKind(MeshTimeout, TimeoutConf, (TO, FROM))


def parse_mesh_timeout(doc: object) -> MeshTimeout:
    return parse_policy(doc, KIND)


def default_mesh_timeout(mesh: str) -> MeshTimeout:
    """``mesh-timeout-all-<mesh>``: what Kuma creates with a new mesh."""
    conf = TimeoutConf(
        connection_timeout="5s",
        idle_timeout="1h",
        http=HttpTimeouts(request_timeout="15s", stream_idle_timeout="30m"),
    )
    item = Item(TargetRef(MESH), conf)
    return MeshTimeout(
        mesh=mesh,
        name=f"mesh-timeout-all-{mesh}",
        target_ref=TargetRef(MESH),
        to=(item,),
        from_=(item,),
    )


__all__ = [
    "DEFAULTS",
    "KIND",
    "MESH_TIMEOUT_TYPE",
    "HttpTimeouts",
    "MeshTimeout",
    "TimeoutConf",
    "default_mesh_timeout",
    "parse_mesh_timeout",
]
