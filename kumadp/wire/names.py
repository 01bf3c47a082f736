"""Names both the agent and the control plane must spell the same: defined here, once.

- the secrets Envoy asks the agent's SDS for (Kuma's names);
- the identities in mesh certificates: ``spiffe://<mesh>/<service>`` per service and
  ``kuma://<tag>/<value>`` per inbound tag (the CA itself is ``spiffe://<mesh>``);
- the agent's features (sent in the bootstrap request and the ``Watch`` call);
- the SDS socket's file name in the agent's work dir (the CP writes its path into the
  bootstrap);
- gRPC metadata keys;
- the proxy types (``--proxy-type``, the bootstrap's ``proxyType``, token claims).
"""

from __future__ import annotations

from typing import Final

# -- proxy types ----------------------------------------------------------------------------
PROXY_DATAPLANE: Final = "dataplane"
PROXY_INGRESS: Final = "ingress"
PROXY_EGRESS: Final = "egress"
PROXY_TYPES: Final = (PROXY_DATAPLANE, PROXY_INGRESS, PROXY_EGRESS)

# -- SDS secrets ------------------------------------------------------------------------------
IDENTITY_SECRET_PREFIX: Final = "identity_cert:secret:"
MESH_CA_SECRET_PREFIX: Final = "mesh_ca:secret:"


def identity_secret_name(mesh: str) -> str:
    """The dataplane's certificate chain and key for ``mesh``."""
    return IDENTITY_SECRET_PREFIX + mesh


def mesh_ca_secret_name(mesh: str) -> str:
    """The CA bundle that validates the peers of ``mesh``."""
    return MESH_CA_SECRET_PREFIX + mesh


# -- identities in certificates -------------------------------------------------------------
SPIFFE_SCHEME: Final = "spiffe://"
KUMA_TAG_SCHEME: Final = "kuma://"


def spiffe_trust_domain(mesh: str) -> str:
    """``spiffe://<mesh>``: the URI SAN of the mesh's CA."""
    return SPIFFE_SCHEME + mesh


def spiffe_prefix(mesh: str) -> str:
    """What every identity of ``mesh`` starts with (the trailing slash keeps ``mesh2`` out)."""
    return spiffe_trust_domain(mesh) + "/"


def spiffe_id(mesh: str, service: str) -> str:
    """``spiffe://<mesh>/<service>``: the identity of a service of the mesh."""
    return spiffe_prefix(mesh) + service


def kuma_tag_uri(key: str, value: str) -> str:
    """``kuma://<tag>/<value>``: the URI SAN a dataplane certificate carries for each tag of
    its inbounds."""
    return f"{KUMA_TAG_SCHEME}{key}/{value}"


# -- agent features ----------------------------------------------------------------------------
FEATURE_BIND_OUTBOUNDS: Final = "bind-outbounds"  # names resolve to per-service loopback IPs
FEATURES: Final = frozenset({FEATURE_BIND_OUTBOUNDS})  # every feature this agent may announce

# -- files in the agent's work dir -----------------------------------------------------------
SDS_SOCKET_FILE: Final = "sds.sock"

# -- gRPC metadata -------------------------------------------------------------------------------
AUTHORIZATION_METADATA: Final = "authorization"  # the dataplane token (ADS, agent channel)
