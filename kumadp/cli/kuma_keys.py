"""Kuma's configuration keys that no kumadp flag takes (read from kuma-cp's and kuma-dp's
configuration, Kuma 2.14), so that ``--config-file`` can tell a Kuma setting kumadp has no
feature for from a typo; and the Kuma settings kumadp refuses rather than ignore, because
ignoring them would leave the control plane less locked down than its user asked.

A key covers its whole subtree (``runtime`` is every key under it). The keys kumadp takes
are in ``kumadp.cli.kuma_names``.
"""

from __future__ import annotations

from dataclasses import dataclass


def _keys(text: str) -> frozenset[str]:
    """``parent: a b`` lines -> {parent.a, parent.b}; ``: a b`` -> top-level a, b."""
    keys: set[str] = set()
    for line in text.strip().splitlines():
        parent, _, leaves = line.partition(":")
        keys.update(
            f"{parent.strip()}.{leaf}" if parent.strip() else leaf for leaf in leaves.split()
        )
    return frozenset(keys)


# kuma-cp (pkg/config/app/kuma-cp/kuma-cp.defaults.yaml and the structs it fills)
CP_KEYS = _keys("""
: environment runtime defaults metrics reports monitoringAssignmentServer interCp access
: experimental proxy tracing eventBus policies coreResources ipam meshService
store: kubernetes cache upsert unsafeDelete
store.postgres: driverName connectionTimeout maxConnectionIdleTime maxConnectionLifetime
store.postgres: maxConnectionLifetimeJitter healthCheckInterval minOpenConnections
store.postgres: maxIdleConnections maxListQueryElements tolerateNewerDBVersions readReplica
store.postgres.tls: disableSSLSNI
bootstrapServer.params: adminAddress adminPort envoyAdminUnixSocket readinessPort
bootstrapServer.params: adminAccessLogPath xdsPort xdsConnectTimeout
bootstrapServer.params: xdsGrpcMaxReceiveMessageBytes
xdsServer: dataplaneConfigurationRefreshInterval dataplaneStatusFlushInterval nackBackoff
apiServer: readOnly corsAllowedDomains rootUrl basePath gui auth readHeaderTimeout
apiServer: readTimeout writeTimeout idleTimeout
apiServer.http: enabled
apiServer.https: tlsMinVersion tlsMaxVersion tlsCipherSuites
apiServer.authn: type
apiServer.authn.tokens: enableIssuer validator
general: dnsCacheTTL tlsMinVersion tlsMaxVersion tlsCipherSuites resilientComponentBaseBackoff
general: resilientComponentMaxBackoff certGenerationBaseBackoff certGenerationMaxBackoff
general: certGenerationCircuitBreakerMinProxies
dnsServer: domain serviceVipEnabled serviceVipPort
multizone.global.kds: refreshInterval zoneInsightFlushInterval tlsEnabled tlsMinVersion
multizone.global.kds: tlsMaxVersion tlsCipherSuites maxMsgSize msgSendTimeout nackBackoff
multizone.global.kds: responseBackoff logPayloads tracing labels
multizone.global.kds.zoneHealthCheck: pollInterval closeStaleConn
multizone.zone: disableOriginLabelValidation ingressUpdateInterval
multizone.zone.kds: refreshInterval maxMsgSize msgSendTimeout nackBackoff responseBackoff
multizone.zone.kds: logPayloads labels
diagnostics: debugEndpoints tlsEnabled tlsCertFile tlsKeyFile tlsMinVersion tlsMaxVersion
diagnostics: tlsCipherSuites
dpServer: tlsMinVersion tlsMaxVersion tlsCipherSuites readHeaderTimeout
dpServer: gracefulShutdownTimeout hds
dpServer.authn: zoneProxy enableReloadableTokens
dpServer.authn.dpProxy: dpToken
""")

# kuma-dp (pkg/config/app/kuma-dp/config.go)
RUN_KEYS = _keys("""
: applicationProbeProxyServer
controlPlane: apiServer
controlPlane.retry: backoff
dataplane: resilientComponentBaseBackoff resilientComponentMaxBackoff
dataplaneRuntime: configDir socketDir resources metrics dynamicConfiguration systemCaPath
dataplaneRuntime: transparentProxy envoyXdsTransportProtocolVariant spire
dataplaneRuntime: unifiedResourceNamingEnabled IPv6Enabled strictInboundPortsEnabled
dataplaneRuntime: otelPipeEnabled reusePortEnabled
dns: coreDnsPort envoyDnsPort coreDnsBinaryPath coreDnsConfigTemplatePath configDir
dns: prometheusPort coreDNSLogging
""")


@dataclass(frozen=True)
class Refused:
    """A Kuma setting kumadp acts on only with one of ``honoured`` (its values as text, the
    way the environment gives them; a list joined with commas): any other value is refused,
    because ignoring it would weaken what the user asked for."""

    key: str  # in Kuma's configuration file
    env: str  # Kuma's environment variable for it
    honoured: tuple[str, ...]
    why: str  # what kumadp does instead, and what to use


_TLS_MIN = ("", "TLSv1_0", "TLSv1_1", "TLSv1_2")
_TLS_WHY = "kumadp's TLS servers take TLS 1.2 and newer with Python's default ciphers"


def _tls(key: str, env: str) -> tuple[Refused, Refused]:
    return (
        Refused(f"{key}.tlsMinVersion", f"{env}_TLS_MIN_VERSION", _TLS_MIN, _TLS_WHY),
        Refused(f"{key}.tlsCipherSuites", f"{env}_TLS_CIPHER_SUITES", ("",), _TLS_WHY),
    )


CP_REFUSED: tuple[Refused, ...] = (
    Refused("environment", "KUMA_ENVIRONMENT", ("", "universal"), "kumadp runs on universal"),
    Refused(
        "apiServer.http.enabled",
        "KUMA_API_SERVER_HTTP_ENABLED",
        ("true",),
        "kumadp always serves the HTTP API: bind it to loopback with "
        "apiServer.http.interface: 127.0.0.1 (--api-address)",
    ),
    Refused(
        "apiServer.readOnly",
        "KUMA_API_SERVER_READ_ONLY",
        ("false",),
        "kumadp's API has no read-only switch: give readers user tokens outside mesh-system:admin",
    ),
    Refused(
        "apiServer.authn.type",
        "KUMA_API_SERVER_AUTHN_TYPE",
        ("", "tokens"),
        "kumadp takes user tokens, and client certificates signed by "
        "apiServer.https.tlsCaFile, together",
    ),
    Refused(
        "apiServer.authn.tokens.enableIssuer",
        "KUMA_API_SERVER_AUTHN_TOKENS_ENABLE_ISSUER",
        ("true",),
        "kumadp always lets admins issue user tokens",
    ),
    Refused(
        "apiServer.authn.tokens.validator.useSecrets",
        "KUMA_API_SERVER_AUTHN_TOKENS_VALIDATOR_USE_SECRETS",
        ("true",),
        "kumadp verifies user tokens with its own signing keys",
    ),
    Refused(
        "dpServer.authn.dpProxy.dpToken.enableIssuer",
        "KUMA_DP_SERVER_AUTHN_DP_PROXY_DP_TOKEN_ENABLE_ISSUER",
        ("true",),
        "kumadp always lets admins issue dataplane tokens",
    ),
    Refused(
        "dpServer.authn.dpProxy.dpToken.validator.useSecrets",
        "KUMA_DP_SERVER_AUTHN_DP_PROXY_DP_TOKEN_VALIDATOR_USE_SECRETS",
        ("true",),
        "kumadp verifies dataplane tokens with its own signing keys",
    ),
    Refused(
        "diagnostics.tlsEnabled",
        "KUMA_DIAGNOSTICS_TLS_ENABLED",
        ("false",),
        "kumadp's diagnostics server is plain HTTP",
    ),
    *_tls("general", "KUMA_GENERAL"),
    *_tls("dpServer", "KUMA_DP_SERVER"),
    *_tls("apiServer.https", "KUMA_API_SERVER_HTTPS"),
    *_tls("multizone.global.kds", "KUMA_MULTIZONE_GLOBAL_KDS"),
)

__all__ = ["CP_KEYS", "CP_REFUSED", "RUN_KEYS", "Refused"]
