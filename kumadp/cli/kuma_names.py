"""Kuma's names for what ``kumadp run`` and ``kumadp cp run`` take: for each of their Kuma
counterparts' flags, environment variables and configuration-file keys that kumadp has a
feature for, the kumadp flag that takes it. The commands read their ``envvar`` lists and
``--config-file`` layouts from here (Kuma's other keys: ``kumadp.cli.kuma_keys``),
``docs/kuma-compatibility.md`` shows this table and a test walks it (each env var and file
key must reach the command's configuration).
"""

from __future__ import annotations

from dataclasses import dataclass

from kumadp.cli.config_keys import KnownKeys
from kumadp.cli.kuma_keys import CP_KEYS, CP_REFUSED, RUN_KEYS, Refused
from kumadp.cli.pflag import Layout


@dataclass(frozen=True)
class KumaName:
    flag: str  # kumadp's flag
    param: str  # the command's parameter
    env: tuple[str, ...] = ()  # every variable read, Kuma's first; kumadp's own after
    kuma_flag: str = ""  # kuma-dp's / kuma-cp's flag of the same meaning
    config: tuple[str, ...] = ()  # where Kuma's configuration file has it


# kuma-dp run (its env vars: pkg/config/app/kuma-dp; its flags: app/kuma-dp/cmd/run.go)
RUN = (
    KumaName("--cp-address", "cp_address", ("KUMA_CONTROL_PLANE_URL",), "--cp-address",
             ("controlPlane.url",)),
    KumaName("--ca-cert-file", "ca_cert_file", ("KUMA_CONTROL_PLANE_CA_CERT_FILE",),
             "--ca-cert-file", ("controlPlane.caCertFile",)),
    KumaName("--ca-cert", "ca_cert", ("KUMA_CONTROL_PLANE_CA_CERT",), "",
             ("controlPlane.caCert",)),
    KumaName("--skip-verify", "skip_verify", ("KUMA_CONTROL_PLANE_TLS_SKIP_VERIFY",),
             "--skip-verify", ("controlPlane.tlsSkipVerify",)),
    KumaName("--bootstrap-timeout", "bootstrap_timeout",
             ("KUMA_CONTROL_PLANE_RETRY_MAX_DURATION",), "", ("controlPlane.retry.maxDuration",)),
    KumaName("--dataplane-file", "dataplane_file", ("KUMA_DATAPLANE_RUNTIME_RESOURCE_PATH",),
             "--dataplane-file", ("dataplaneRuntime.resourcePath",)),
    KumaName("--dataplane", "dataplane", ("KUMA_DATAPLANE_RUNTIME_RESOURCE",), "--dataplane",
             ("dataplaneRuntime.resource",)),
    KumaName("--dataplane-var", "dataplane_var", (), "--dataplane-var",
             ("dataplaneRuntime.resourceVars",)),
    KumaName("--name", "name", ("KUMA_DATAPLANE_NAME",), "--name", ("dataplane.name",)),
    KumaName("--mesh", "mesh", ("KUMA_DATAPLANE_MESH",), "--mesh", ("dataplane.mesh",)),
    KumaName("--proxy-type", "proxy_type", ("KUMA_DATAPLANE_PROXY_TYPE",), "--proxy-type",
             ("dataplane.proxyType",)),
    KumaName("--dataplane-token-file", "dataplane_token_file",
             ("KUMA_DATAPLANE_RUNTIME_TOKEN_PATH",), "--dataplane-token-file",
             ("dataplaneRuntime.dataplaneTokenPath",)),
    KumaName("--dataplane-token", "dataplane_token", ("KUMA_DATAPLANE_RUNTIME_TOKEN",),
             "--dataplane-token", ("dataplaneRuntime.dataplaneToken",)),
    KumaName("--work-dir", "work_dir", ("KUMA_DATAPLANE_RUNTIME_WORK_DIR",), "--work-dir",
             ("dataplaneRuntime.workDir",)),
    KumaName("--binary-path", "binary_path", ("KUMA_DATAPLANE_RUNTIME_BINARY_PATH",),
             "--binary-path", ("dataplaneRuntime.binaryPath",)),
    KumaName("--concurrency", "concurrency", ("KUMA_DATAPLANE_RUNTIME_CONCURRENCY",),
             "--concurrency", ("dataplaneRuntime.concurrency",)),
    KumaName("--drain-time", "drain_time", ("KUMA_DATAPLANE_DRAIN_TIME",), "--drain-time",
             ("dataplane.drainTime",)),
    KumaName("--envoy-log-level", "envoy_log_level",
             ("KUMA_DATAPLANE_RUNTIME_ENVOY_LOG_LEVEL",), "--envoy-log-level",
             ("dataplaneRuntime.envoyLogLevel",)),
    KumaName("--envoy-component-log-level", "envoy_component_log_level",
             ("KUMA_DATAPLANE_RUNTIME_ENVOY_COMPONENT_LOG_LEVEL",), "--envoy-component-log-level",
             ("dataplaneRuntime.envoyComponentLogLevel",)),
    KumaName("--readiness-port", "readiness_port", ("KUMA_READINESS_PORT",), "",
             ("dataplane.readinessPort",)),
    KumaName("--dns-enabled", "dns_enabled", ("KUMA_DNS_ENABLED",), "--dns-enabled",
             ("dns.enabled",)),
    KumaName("--dns-proxy-port", "dns_port", ("KUMA_DNS_PROXY_PORT",), "--dns-proxy-port",
             ("dns.proxyPort",)),
    KumaName("--bind-outbounds", "bind_outbounds", ("KUMA_DATAPLANE_RUNTIME_BIND_OUTBOUNDS",),
             "--bind-outbounds", ("dataplaneRuntime.bindOutbounds",)),
    KumaName("--log-level", "log_level", ("KUMA_LOG_LEVEL",), "--log-level"),
)  # fmt: skip

# kuma-cp run (its env vars and file keys: pkg/config/app/kuma-cp/kuma-cp.defaults.yaml and
# the structs under pkg/config; where the two disagree, the structs' envconfig tags)
_PG = "KUMA_STORE_POSTGRES_"
_HTTPS = "KUMA_API_SERVER_HTTPS_"
_KDS = "KUMA_MULTIZONE_GLOBAL_KDS_"
_ZONE = "KUMA_MULTIZONE_ZONE_"
CP = (
    KumaName("--config-file", "config_file", (), "--config-file"),
    KumaName("--mode", "mode", ("KUMA_MODE",), "", ("mode",)),
    KumaName("--store", "store", ("KUMA_STORE_TYPE",), "", ("store.type",)),
    KumaName("--data-dir", "data_dir", ("KUMA_GENERAL_WORK_DIR", "KUMADP_DATA_DIR"), "",
             ("general.workDir",)),
    # the API (HTTP and HTTPS) and who is admin
    KumaName("--api-port", "api_port", ("KUMA_API_SERVER_HTTP_PORT",), "",
             ("apiServer.http.port",)),
    KumaName("--api-address", "api_address", ("KUMA_API_SERVER_HTTP_INTERFACE",), "",
             ("apiServer.http.interface",)),
    KumaName("--api-https-enabled", "api_https_enabled", (_HTTPS + "ENABLED",), "",
             ("apiServer.https.enabled",)),
    KumaName("--api-https-port", "api_https_port", (_HTTPS + "PORT",), "",
             ("apiServer.https.port",)),
    KumaName("--api-https-address", "api_https_address", (_HTTPS + "INTERFACE",), "",
             ("apiServer.https.interface",)),
    KumaName("--api-https-tls-cert-file", "api_https_tls_cert_file",
             (_HTTPS + "TLS_CERT_FILE",), "", ("apiServer.https.tlsCertFile",)),
    KumaName("--api-https-tls-key-file", "api_https_tls_key_file", (_HTTPS + "TLS_KEY_FILE",),
             "", ("apiServer.https.tlsKeyFile",)),
    KumaName("--api-https-client-ca-file", "api_https_client_ca_file",
             (_HTTPS + "TLS_CA_FILE",), "", ("apiServer.https.tlsCaFile",)),
    KumaName("--api-https-require-client-cert", "api_https_require_client_cert",
             (_HTTPS + "REQUIRE_CLIENT_CERT",), "", ("apiServer.https.requireClientCert",)),
    KumaName("--api-localhost-is-admin", "api_localhost_is_admin",
             ("KUMA_API_SERVER_AUTHN_LOCALHOST_IS_ADMIN",), "",
             ("apiServer.authn.localhostIsAdmin",)),
    KumaName("--bootstrap-admin-token", "bootstrap_admin_token",
             ("KUMA_API_SERVER_AUTHN_TOKENS_BOOTSTRAP_ADMIN_TOKEN",), "",
             ("apiServer.authn.tokens.bootstrapAdminToken",)),
    # the DP server, bootstraps, xDS, VIPs, diagnostics
    KumaName("--dp-port", "dp_port", ("KUMA_DP_SERVER_PORT",), "", ("dpServer.port",)),
    KumaName("--dp-auth", "dp_auth",
             ("KUMA_DP_SERVER_AUTHN_DP_PROXY_TYPE", "KUMA_DP_SERVER_AUTH_TYPE"), "",
             ("dpServer.authn.dpProxy.type", "dpServer.auth.type")),
    KumaName("--tls-cert-file", "tls_cert_file",
             ("KUMA_DP_SERVER_TLS_CERT_FILE", "KUMA_GENERAL_TLS_CERT_FILE"), "",
             ("dpServer.tlsCertFile", "general.tlsCertFile")),
    KumaName("--tls-key-file", "tls_key_file",
             ("KUMA_DP_SERVER_TLS_KEY_FILE", "KUMA_GENERAL_TLS_KEY_FILE"), "",
             ("dpServer.tlsKeyFile", "general.tlsKeyFile")),
    KumaName("--xds-host", "xds_host", ("KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_HOST",), "",
             ("bootstrapServer.params.xdsHost",)),
    KumaName("--deregistration-delay", "deregistration_delay",
             ("KUMA_XDS_DATAPLANE_DEREGISTRATION_DELAY",), "",
             ("xdsServer.dataplaneDeregistrationDelay",)),
    KumaName("--vip-cidr", "vip_cidr", ("KUMA_DNS_SERVER_CIDR",), "", ("dnsServer.CIDR",)),
    KumaName("--diagnostics-port", "diagnostics_port", ("KUMA_DIAGNOSTICS_SERVER_PORT",), "",
             ("diagnostics.serverPort",)),
    # PostgreSQL
    KumaName("--postgres-host", "postgres_host", (_PG + "HOST",), "", ("store.postgres.host",)),
    KumaName("--postgres-port", "postgres_port", (_PG + "PORT",), "", ("store.postgres.port",)),
    KumaName("--postgres-user", "postgres_user", (_PG + "USER",), "", ("store.postgres.user",)),
    KumaName("--postgres-password", "postgres_password", (_PG + "PASSWORD",), "",
             ("store.postgres.password",)),
    KumaName("--postgres-db-name", "postgres_db_name", (_PG + "DB_NAME",), "",
             ("store.postgres.dbName",)),
    KumaName("--postgres-tls-mode", "postgres_tls_mode", (_PG + "TLS_MODE",), "",
             ("store.postgres.tls.mode",)),
    KumaName("--postgres-tls-cert-path", "postgres_tls_cert_path", (_PG + "TLS_CERT_PATH",), "",
             ("store.postgres.tls.certPath",)),
    KumaName("--postgres-tls-key-path", "postgres_tls_key_path", (_PG + "TLS_KEY_PATH",), "",
             ("store.postgres.tls.keyPath",)),
    KumaName("--postgres-tls-ca-path", "postgres_tls_ca_path", (_PG + "TLS_CA_PATH",), "",
             ("store.postgres.tls.caPath",)),
    KumaName("--postgres-max-open-connections", "postgres_max_open_connections",
             (_PG + "MAX_OPEN_CONNECTIONS",), "", ("store.postgres.maxOpenConnections",)),
    # multi-zone
    KumaName("--zone", "zone", (_ZONE + "NAME",), "", ("multizone.zone.name",)),
    KumaName("--kds-global-address", "kds_global_address", (_ZONE + "GLOBAL_ADDRESS",), "",
             ("multizone.zone.globalAddress",)),
    KumaName("--kds-ca-file", "kds_ca_file", (_ZONE + "KDS_ROOT_CA_FILE",), "",
             ("multizone.zone.kds.rootCaFile",)),
    KumaName("--kds-skip-verify", "kds_skip_verify", (_ZONE + "KDS_TLS_SKIP_VERIFY",), "",
             ("multizone.zone.kds.tlsSkipVerify",)),
    KumaName("--kds-token-file", "kds_token_file",
             (_ZONE + "KDS_AUTH_TOKEN_PATH", _ZONE + "KDS_AUTH_CP_TOKEN_PATH"), "",
             ("multizone.zone.kds.auth.tokenPath",)),
    KumaName("--kds-token", "kds_token",
             (_ZONE + "KDS_AUTH_TOKEN_INLINE", _ZONE + "KDS_AUTH_CP_TOKEN_INLINE"), "",
             ("multizone.zone.kds.auth.tokenInline",)),
    KumaName("--kds-auth", "kds_auth", (_KDS + "AUTH_TYPE",), "",
             ("multizone.global.kds.auth.type",)),
    KumaName("--kds-port", "kds_port", (_KDS + "GRPC_PORT",), "",
             ("multizone.global.kds.grpcPort",)),
    KumaName("--kds-tls-cert-file", "kds_tls_cert_file", (_KDS + "TLS_CERT_FILE",), "",
             ("multizone.global.kds.tlsCertFile",)),
    KumaName("--kds-tls-key-file", "kds_tls_key_file", (_KDS + "TLS_KEY_FILE",), "",
             ("multizone.global.kds.tlsKeyFile",)),
    KumaName("--zone-health-timeout", "zone_health_timeout",
             (_KDS + "ZONE_HEALTH_CHECK_TIMEOUT",), "",
             ("multizone.global.kds.zoneHealthCheck.timeout",)),
    KumaName("--log-level", "log_level", ("KUMA_LOG_LEVEL",), "--log-level"),
)  # fmt: skip


def _by_param(names: tuple[KumaName, ...]) -> dict[str, KumaName]:
    return {n.param: n for n in names}


RUN_BY_PARAM = _by_param(RUN)
CP_BY_PARAM = _by_param(CP)


def env(names: dict[str, KumaName], param: str) -> list[str]:
    """The environment variables a parameter reads (typer's ``envvar``)."""
    return list(names[param].env)


def layout(
    names: tuple[KumaName, ...],
    kuma_keys: frozenset[str] = frozenset(),
    refused: tuple[Refused, ...] = (),
) -> Layout:
    """The ``--config-file`` layout of a command: {parameter: paths in Kuma's file}, and
    Kuma's keys that no parameter takes."""
    params = {n.param: n.config for n in names if n.config}
    taken = frozenset(path for paths in params.values() for path in paths)
    return Layout(params, KnownKeys(taken, kuma_keys, refused))


RUN_LAYOUT = layout(RUN, RUN_KEYS)
CP_LAYOUT = layout(CP, CP_KEYS, CP_REFUSED)

__all__ = [
    "CP",
    "CP_BY_PARAM",
    "CP_LAYOUT",
    "RUN",
    "RUN_BY_PARAM",
    "RUN_LAYOUT",
    "KumaName",
    "env",
    "layout",
]
