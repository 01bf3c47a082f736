"""TLS configurers for mesh mTLS: secrets from the agent's SDS server, the inbound listener's
``DownstreamTlsContext`` and the outbound clusters' ``UpstreamTlsContext``.

Envoy gets both secrets from the agent (``identity_cert:secret:<mesh>``: this dataplane's
certificate and key; ``mesh_ca:secret:<mesh>``: the mesh CA) through the static cluster
``sds_cluster`` of the bootstrap, so no key ever goes through the control plane.
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.listener.v3.listener_components_pb2 import FilterChain
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2
from google.protobuf.message import Message

from kumadp.cp.generate.context import MtlsContext
from kumadp.cp.generate.protocol import is_http
from kumadp.wire.names import spiffe_id, spiffe_prefix

SDS_CLUSTER = "sds_cluster"  # the bootstrap's static cluster to the agent's SDS socket
TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"

KUMA_ALPN = "kuma"  # what a mesh client offers: tells mesh mTLS apart from other TLS
# An HTTP inbound must let its connection manager see HTTP/2 from the first bytes, and an
# HCM with codec AUTO takes any negotiated ALPN as the protocol ("kuma" would mean
# HTTP/1.1). So HTTP inbounds offer only h2 and http/1.1: a mesh client's "kuma" then
# negotiates nothing and the protocol is detected from the data.
HTTP_ALPN = ("h2", "http/1.1")
TLS_MIN_VERSION = common_pb2.TlsParameters.TLSv1_2
TLS_TRANSPORT_PROTOCOL = "tls"  # tls_inspector's value of FilterChainMatch.transport_protocol


def sni(service: str, mesh: str) -> str:
    """The SNI a mesh client sends: ``backend{mesh=default}``."""
    return f"{service}{{mesh={mesh}}}"


def _any(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def sds_config() -> config_source_pb2.ConfigSource:
    """Secrets over gRPC SDS from the agent, through the bootstrap's ``sds_cluster``.

    ``initial_fetch_timeout: 0s``: a listener keeps warming (the old one keeps serving) until
    the agent has a certificate, instead of going active without one after 15 s."""
    return config_source_pb2.ConfigSource(
        initial_fetch_timeout=duration_pb2.Duration(seconds=0),
        api_config_source=config_source_pb2.ApiConfigSource(
            api_type=config_source_pb2.ApiConfigSource.GRPC,
            transport_api_version=config_source_pb2.V3,
            grpc_services=[
                grpc_service_pb2.GrpcService(
                    envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=SDS_CLUSTER)
                )
            ],
        ),
        resource_api_version=config_source_pb2.V3,
    )


def sds_secret(name: str) -> secret_pb2.SdsSecretConfig:
    return secret_pb2.SdsSecretConfig(name=name, sds_config=sds_config())


def common_tls_context(
    mtls: MtlsContext, peer_san: string_pb2.StringMatcher, alpn: Sequence[str]
) -> tls_pb2.CommonTlsContext:
    """Present the identity certificate; accept a peer signed by the mesh CA whose URI SAN
    matches ``peer_san``; TLS 1.2 at least."""
    return tls_pb2.CommonTlsContext(
        tls_params=common_pb2.TlsParameters(tls_minimum_protocol_version=TLS_MIN_VERSION),
        tls_certificate_sds_secret_configs=[sds_secret(mtls.identity_secret)],
        combined_validation_context=tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
            default_validation_context=common_pb2.CertificateValidationContext(
                match_typed_subject_alt_names=[
                    common_pb2.SubjectAltNameMatcher(
                        san_type=common_pb2.SubjectAltNameMatcher.URI, matcher=peer_san
                    )
                ]
            ),
            validation_context_sds_secret_config=sds_secret(mtls.ca_secret),
        ),
        alpn_protocols=list(alpn),
    )


def inbound_alpn(protocol: str) -> tuple[str, ...]:
    return HTTP_ALPN if is_http(protocol) else (KUMA_ALPN,)


def downstream_tls_context(
    mtls: MtlsContext, mesh: str, protocol: str
) -> tls_pb2.DownstreamTlsContext:
    """An inbound's server side: a client certificate of any identity of ``mesh`` required."""
    return tls_pb2.DownstreamTlsContext(
        common_tls_context=common_tls_context(
            mtls, string_pb2.StringMatcher(prefix=spiffe_prefix(mesh)), inbound_alpn(protocol)
        ),
        require_client_certificate=wrappers_pb2.BoolValue(value=True),
    )


def upstream_tls_context(mtls: MtlsContext, mesh: str, service: str) -> tls_pb2.UpstreamTlsContext:
    """An outbound cluster's client side: the server must prove it is ``service``."""
    return tls_pb2.UpstreamTlsContext(
        common_tls_context=common_tls_context(
            mtls, string_pb2.StringMatcher(exact=spiffe_id(mesh, service)), (KUMA_ALPN,)
        ),
        sni=sni(service, mesh),
    )


def transport_socket(context: Message) -> base_pb2.TransportSocket:
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=_any(context))


def originate_mtls(cluster: Cluster, mtls: MtlsContext, mesh: str, service: str) -> None:
    """Connections of ``cluster`` (the EDS cluster of ``service``) speak mesh mTLS."""
    cluster.transport_socket.CopyFrom(transport_socket(upstream_tls_context(mtls, mesh, service)))


def terminate_mtls(listener: Listener, mtls: MtlsContext, mesh: str, protocol: str) -> None:
    """Make an inbound listener (one plaintext filter chain) accept mesh mTLS.

    STRICT: its chain gets the TLS transport socket.
    PERMISSIVE: a TLS inspector reads the ClientHello; a connection in TLS offering ALPN
    ``kuma`` (a mesh client) gets that mTLS chain, anything else (plaintext, or TLS of the
    application's own) the unchanged plaintext chain as the listener's default chain.
    Either way ``mtls_filter_chains`` are the chains where the caller's identity is known
    (where policies such as MeshTrafficPermission put their filters).
    """
    (plain,) = listener.filter_chains
    secure = FilterChain(
        filters=list(plain.filters),
        transport_socket=transport_socket(downstream_tls_context(mtls, mesh, protocol)),
    )
    if not mtls.permissive:
        plain.CopyFrom(secure)
        return
    secure.filter_chain_match.CopyFrom(
        listener_components_pb2.FilterChainMatch(
            transport_protocol=TLS_TRANSPORT_PROTOCOL, application_protocols=[KUMA_ALPN]
        )
    )
    listener.default_filter_chain.CopyFrom(plain)
    del listener.filter_chains[:]
    listener.filter_chains.append(secure)
    listener.listener_filters.append(
        listener_components_pb2.ListenerFilter(
            name=TLS_INSPECTOR, typed_config=_any(tls_inspector_pb2.TlsInspector())
        )
    )


def mtls_filter_chains(listener: Listener) -> list[FilterChain]:
    """The filter chains of ``listener`` that terminate mesh mTLS (``terminate_mtls``); the
    plaintext default chain of a PERMISSIVE listener is not one of them."""
    return [
        chain
        for chain in listener.filter_chains
        if chain.transport_socket.name == TLS_TRANSPORT_SOCKET
    ]
