"""Kuma's names for what ``kumadp run`` and ``kumadp cp run`` take: for each of their Kuma
counterparts' flags, environment variables and configuration-file keys that kumadp has a
feature for, the kumadp flag that takes it. The commands read their ``envvar`` lists and
``--config-file`` layouts from here, ``docs/kuma-compatibility.md`` shows this table and a
test walks it (each env var and file key must reach the command's configuration).
"""

from __future__ import annotations

from dataclasses import dataclass

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

# kuma-cp run (its env vars and file keys: pkg/config/app/kuma-cp/kuma-cp.defaults.yaml)
CP = (
    KumaName("--config-file", "config_file", (), "--config-file"),
    KumaName("--mode", "mode", ("KUMA_MODE",), "", ("mode",)),
    KumaName("--store", "store", ("KUMA_STORE_TYPE",), "", ("store.type",)),
    KumaName("--api-port", "api_port", ("KUMA_API_SERVER_HTTP_PORT",), "",
             ("apiServer.http.port",)),
    KumaName("--dp-port", "dp_port", ("KUMA_DP_SERVER_PORT",), "", ("dpServer.port",)),
    KumaName("--diagnostics-port", "diagnostics_port", ("KUMA_DIAGNOSTICS_SERVER_PORT",), "",
             ("diagnostics.serverPort",)),
    KumaName("--xds-host", "xds_host", ("KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_HOST",), "",
             ("bootstrapServer.params.xdsHost",)),
    KumaName("--deregistration-delay", "deregistration_delay",
             ("KUMA_XDS_DATAPLANE_DEREGISTRATION_DELAY",), "",
             ("xdsServer.dataplaneDeregistrationDelay",)),
    KumaName("--dp-auth", "dp_auth",
             ("KUMA_DP_SERVER_AUTHN_DP_PROXY_TYPE", "KUMA_DP_SERVER_AUTH_TYPE"), "",
             ("dpServer.authn.dpProxy.type", "dpServer.auth.type")),
    KumaName("--tls-cert-file", "tls_cert_file",
             ("KUMA_DP_SERVER_TLS_CERT_FILE", "KUMA_GENERAL_TLS_CERT_FILE"), "",
             ("dpServer.tlsCertFile", "general.tlsCertFile")),
    KumaName("--tls-key-file", "tls_key_file",
             ("KUMA_DP_SERVER_TLS_KEY_FILE", "KUMA_GENERAL_TLS_KEY_FILE"), "",
             ("dpServer.tlsKeyFile", "general.tlsKeyFile")),
    KumaName("--vip-cidr", "vip_cidr", ("KUMA_DNS_SERVER_CIDR",), "", ("dnsServer.CIDR",)),
    KumaName("--log-level", "log_level", ("KUMA_LOG_LEVEL",), "--log-level"),
)  # fmt: skip


def _by_param(names: tuple[KumaName, ...]) -> dict[str, KumaName]:
    return {n.param: n for n in names}


RUN_BY_PARAM = _by_param(RUN)
CP_BY_PARAM = _by_param(CP)


def env(names: dict[str, KumaName], param: str) -> list[str]:
    """The environment variables a parameter reads (typer's ``envvar``)."""
    return list(names[param].env)


def layout(names: tuple[KumaName, ...]) -> Layout:
    """The ``--config-file`` layout of a command: {parameter: paths in Kuma's file}."""
    return {n.param: n.config for n in names if n.config}


__all__ = ["CP", "CP_BY_PARAM", "RUN", "RUN_BY_PARAM", "KumaName", "env", "layout"]
