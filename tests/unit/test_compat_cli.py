"""Kuma's command-line forms and names (issue 16, item 3): pflag booleans and maps, kuma-dp's
flags, and every Kuma environment variable and configuration-file key in the table of
``kumadp.cli.kuma_names`` reaching the command's configuration (the test walks the table),
and that table in docs/kuma-compatibility.md."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from kumadp.cli import cp as cli_cp
from kumadp.cli import run as cli_run
from kumadp.cli.config_keys import notes
from kumadp.cli.kuma_names import CP, CP_BY_PARAM, CP_LAYOUT, RUN, RUN_LAYOUT, KumaName
from kumadp.cli.pflag import rewrite_booleans, split_pairs

DOCS = Path(__file__).parents[2] / "docs" / "kuma-compatibility.md"

# parameter -> (a value as Kuma would give it, the configuration attribute, what it becomes)
RUN_VALUES: dict[str, tuple[Any, str, Any]] = {
    "cp_address": ("https://cp.example:5678", "cp_address", "https://cp.example:5678"),
    "ca_cert_file": ("/etc/kuma/ca.pem", "ca_cert_file", "/etc/kuma/ca.pem"),
    "ca_cert": ("-----BEGIN CERTIFICATE-----", "ca_cert", "-----BEGIN CERTIFICATE-----"),
    "skip_verify": (True, "skip_verify", True),
    "bootstrap_timeout": ("42s", "bootstrap_timeout", 42.0),
    "dataplane_file": ("/etc/kuma/dp.yaml", "dataplane_file", "/etc/kuma/dp.yaml"),
    "dataplane": ("type: Dataplane", "dataplane", "type: Dataplane"),
    "name": ("web-1", "name", "web-1"),
    "mesh": ("payments", "mesh", "payments"),
    "proxy_type": ("dataplane", "proxy_type", "dataplane"),
    "dataplane_token_file": ("/etc/kuma/token", "dataplane_token_file", "/etc/kuma/token"),
    "dataplane_token": ("a.b.c", "dataplane_token", "a.b.c"),
    "work_dir": ("/var/lib/kuma-dp", "work_dir", "/var/lib/kuma-dp"),
    "binary_path": ("/opt/envoy", "binary_path", "/opt/envoy"),
    "concurrency": (3, "concurrency", 3),
    "drain_time": ("7s", "drain_time", 7.0),
    "envoy_log_level": ("trace", "envoy_log_level", "trace"),
    "envoy_component_log_level": (
        "upstream:debug",
        "envoy_component_log_level",
        "upstream:debug",
    ),
    "readiness_port": (19902, "readiness_port", 19902),
    "dns_enabled": (False, "dns_enabled", False),
    "dns_port": (25053, "dns_port", 25053),
    "bind_outbounds": (True, "bind_outbounds", True),
    "log_level": ("debug", "envoy_log_level", "debug"),  # Envoy inherits it
}
ZONE = ["--mode", "zone", "--kds-global-address", "grpcs://global.example:5685"]
PG = ["--store", "postgres"]
# parameter -> (a value as Kuma would give it, the configuration attribute (dotted), what it
# becomes, the other flags it needs)
CP_VALUES: dict[str, tuple[Any, str, Any, list[str]]] = {
    "mode": ("global", "mode", "global", []),
    "store": ("memory", "store", "memory", []),
    "data_dir": ("/var/lib/kuma", "data_dir", Path("/var/lib/kuma"), []),
    "api_port": (15681, "api_port", 15681, []),
    "api_address": ("127.0.0.2", "api_address", "127.0.0.2", []),
    "api_https_enabled": (False, "api_https_port", 0, []),
    "api_https_port": (15682, "api_https_port", 15682, []),
    "api_https_address": ("127.0.0.3", "api_https_address", "127.0.0.3", []),
    "api_https_tls_cert_file": (
        "/etc/kuma/api.crt",
        "api_tls_cert_file",
        Path("/etc/kuma/api.crt"),
        [],
    ),
    "api_https_tls_key_file": (
        "/etc/kuma/api.key",
        "api_tls_key_file",
        Path("/etc/kuma/api.key"),
        [],
    ),
    "api_https_client_ca_file": (
        "/etc/kuma/ca.pem",
        "api_client_ca_file",
        Path("/etc/kuma/ca.pem"),
        [],
    ),
    "api_https_require_client_cert": (True, "api_require_client_cert", True, []),
    "api_localhost_is_admin": (False, "localhost_is_admin", False, []),
    "bootstrap_admin_token": (False, "bootstrap_admin_token", False, []),
    "dp_port": (15678, "dp_port", 15678, []),
    "dp_auth": ("none", "dp_auth", "none", []),
    "tls_cert_file": ("/etc/kuma/tls.crt", "tls_cert_file", Path("/etc/kuma/tls.crt"), []),
    "tls_key_file": ("/etc/kuma/tls.key", "tls_key_file", Path("/etc/kuma/tls.key"), []),
    "xds_host": ("cp.example", "xds_host", "cp.example", []),
    "deregistration_delay": ("30s", "deregistration_delay", 30.0, []),
    "vip_cidr": ("241.0.0.0/8", "vip_cidr", "241.0.0.0/8", []),
    "diagnostics_port": (15680, "diagnostics_port", 15680, []),
    "postgres_host": ("db.example", "postgres.host", "db.example", PG),
    "postgres_port": (15432, "postgres.port", 15432, PG),
    "postgres_user": ("kuma-cp", "postgres.user", "kuma-cp", PG),
    "postgres_password": ("s3cret", "postgres.password", "s3cret", PG),
    "postgres_db_name": ("kumadb", "postgres.db_name", "kumadb", PG),
    "postgres_tls_mode": ("verifyNone", "postgres.tls_mode", "verifyNone", PG),
    "postgres_tls_cert_path": ("/etc/pg/tls.crt", "postgres.tls_cert_path", "/etc/pg/tls.crt", PG),
    "postgres_tls_key_path": ("/etc/pg/tls.key", "postgres.tls_key_path", "/etc/pg/tls.key", PG),
    "postgres_tls_ca_path": ("/etc/pg/ca.crt", "postgres.tls_ca_path", "/etc/pg/ca.crt", PG),
    "postgres_max_open_connections": (20, "postgres.max_open_connections", 20, PG),
    "zone": ("zone-1", "zone", "zone-1", ZONE),
    "kds_global_address": (
        "grpcs://global.example:5685",
        "kds_global_address",
        "grpcs://global.example:5685",
        ["--mode", "zone", "--zone", "zone-1"],
    ),
    "kds_ca_file": (
        "/etc/kuma/global.pem",
        "kds_ca_file",
        Path("/etc/kuma/global.pem"),
        [*ZONE, "--zone", "z"],
    ),
    "kds_skip_verify": (True, "kds_skip_verify", True, [*ZONE, "--zone", "z"]),
    "kds_port": (15685, "kds_port", 15685, []),
    "kds_tls_cert_file": (
        "/etc/kuma/kds.crt",
        "kds_tls_cert_file",
        Path("/etc/kuma/kds.crt"),
        ["--kds-tls-key-file", "/k"],
    ),
    "kds_tls_key_file": (
        "/etc/kuma/kds.key",
        "kds_tls_key_file",
        Path("/etc/kuma/kds.key"),
        ["--kds-tls-cert-file", "/c"],
    ),
    "zone_health_timeout": ("45s", "zone_health_timeout", 45.0, []),
    "kds_token_file": (
        "/etc/kuma/cp.token",
        "kds_token_file",
        Path("/etc/kuma/cp.token"),
        [*ZONE, "--zone", "z"],
    ),
    "kds_token": ("eyJ.zone.token", "kds_token", "eyJ.zone.token", [*ZONE, "--zone", "z"]),
    "kds_auth": ("none", "kds_auth", "none", []),
}
ALIASES = {  # other values of Kuma's that mean the same
    "kds_auth": [("zoneToken", "cpToken"), ("cpToken", "cpToken")],
}
UNCHECKED = {"dataplane_var", "config_file"}  # checked by their own tests below


def env_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@pytest.fixture(autouse=True)
def keep_logging() -> Iterator[None]:
    """The commands configure logging (their stderr is the runner's): put it back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.fixture
def agent_configs(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """``kumadp run`` stops at the configuration it would run with."""
    seen: list[Any] = []

    async def fake_run_agent(config: Any) -> int:
        seen.append(config)
        return 0

    monkeypatch.setattr("kumadp.agent.run.run_agent", fake_run_agent)
    for name in [n for names in (RUN, CP) for n in names]:
        for variable in name.env:
            monkeypatch.delenv(variable, raising=False)
    return seen


@pytest.fixture
def cp_configs(monkeypatch: pytest.MonkeyPatch, agent_configs: list[Any]) -> list[Any]:
    seen: list[Any] = []

    async def fake_main(config: Any) -> int:
        seen.append(config)
        return 0

    monkeypatch.setattr(cli_cp, "_main", fake_main)
    return seen


def _app(register: Any) -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)  # a group, as the real ``kumadp`` command
    register(app)
    return app


def invoke(register: Any, args: list[str], env: dict[str, str] | None = None) -> Any:
    app = _app(register)
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    return result


def run_config(configs: list[Any], *args: str, env: dict[str, str] | None = None) -> Any:
    invoke(cli_run.register, ["run", "--name", "x", *args], env)
    return configs.pop()


def cp_config(configs: list[Any], *args: str, env: dict[str, str] | None = None) -> Any:
    invoke(cli_cp.register, ["cp", "run", "--store", "memory", *args], env)
    return configs.pop()


def test_every_table_row_has_a_value_here() -> None:
    assert {n.param for n in RUN} - UNCHECKED == set(RUN_VALUES)
    assert {n.param for n in CP} - UNCHECKED - {"log_level"} == set(CP_VALUES)


@pytest.mark.parametrize(
    ("name", "variable"),
    [(n, v) for n in RUN if n.param in RUN_VALUES for v in n.env],
    ids=lambda x: x if isinstance(x, str) else x.param,
)
def test_each_kuma_dp_environment_variable(
    agent_configs: list[Any], name: KumaName, variable: str
) -> None:
    value, attribute, expected = RUN_VALUES[name.param]
    args = ["--mesh", "default"] if name.param == "name" else []
    config = run_config(agent_configs, *args, env={variable: env_text(value)})
    actual = getattr(config, attribute)
    assert actual == (expected if name.param != "name" else "x"), variable  # the flag wins
    if name.param == "name":
        invoke(cli_run.register, ["run"], {variable: "web-1"})
        assert agent_configs.pop().name == "web-1"


@pytest.mark.parametrize(
    ("name", "variable"),
    [(n, v) for n in CP if n.param in CP_VALUES for v in n.env],
    ids=lambda x: x if isinstance(x, str) else x.param,
)
def test_each_kuma_cp_environment_variable(
    cp_configs: list[Any], name: KumaName, variable: str
) -> None:
    value, attribute, expected, needs = CP_VALUES[name.param]
    if name.param == "store":
        invoke(cli_cp.register, ["cp", "run"], {variable: env_text(value)})
        config = cp_configs.pop()
    else:
        config = cp_config(cp_configs, *needs, env={variable: env_text(value)})
    assert attr(config, attribute) == expected, variable


def attr(config: Any, dotted: str) -> Any:
    for name in dotted.split("."):
        config = getattr(config, name)
    return config


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    node = doc
    keys = dotted.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return doc


@pytest.mark.parametrize("name", [n for n in RUN if n.config and n.param in RUN_VALUES])
def test_each_kuma_dp_config_file_key(
    agent_configs: list[Any], tmp_path: Path, name: KumaName
) -> None:
    value, attribute, expected = RUN_VALUES[name.param]
    for dotted in name.config:
        path = tmp_path / "kuma-dp.yaml"
        path.write_text(yaml.safe_dump(_nest(dotted, value)))
        args = ["run", "--config-file", str(path)]
        if name.param != "name":
            args += ["--name", "x"]
        invoke(cli_run.register, args)
        assert getattr(agent_configs.pop(), attribute) == expected, dotted


@pytest.mark.parametrize("name", [n for n in CP if n.config])
def test_each_kuma_cp_config_file_key(
    cp_configs: list[Any], tmp_path: Path, name: KumaName
) -> None:
    value, attribute, expected, needs = CP_VALUES[name.param]
    for dotted in name.config:
        path = tmp_path / "kuma-cp.yaml"
        path.write_text(yaml.safe_dump(_nest(dotted, value)))
        result = invoke(cli_cp.register, ["cp", "run", "-c", str(path), *needs])
        assert attr(cp_configs.pop(), attribute) == expected, dotted
        assert "Warning" not in result.stderr  # the key is known


@pytest.mark.parametrize(
    ("param", "value", "expected"),
    [(param, v, e) for param, pairs in ALIASES.items() for v, e in pairs],
)
def test_kumas_other_values_of_the_same_meaning(
    cp_configs: list[Any], tmp_path: Path, param: str, value: str, expected: str
) -> None:
    """Kuma's ``zoneToken`` and Kong Mesh 2.x's ``cpToken``: one KDS authentication, from
    the environment and from the configuration file."""
    name = CP_BY_PARAM[param]
    _, attribute, _, needs = CP_VALUES[param]
    config = cp_config(cp_configs, *needs, env={name.env[0]: value})
    assert attr(config, attribute) == expected
    path = tmp_path / "kuma-cp.yaml"
    path.write_text(yaml.safe_dump(_nest(name.config[0], value)))
    invoke(cli_cp.register, ["cp", "run", "-c", str(path), *needs])
    assert attr(cp_configs.pop(), attribute) == expected


def test_precedence_flag_then_env_then_file(agent_configs: list[Any], tmp_path: Path) -> None:
    path = tmp_path / "kuma-dp.yaml"
    path.write_text("dataplane: {mesh: from-file, name: from-file, drainTime: 1s}\n")
    env = {"KUMA_DATAPLANE_MESH": "from-env"}
    invoke(cli_run.register, ["run", "-c", str(path), "--mesh", "from-flag"], env)
    config = agent_configs.pop()
    assert (config.mesh, config.name, config.drain_time) == ("from-flag", "from-file", 1.0)
    invoke(cli_run.register, ["run", "-c", str(path)], env)
    assert agent_configs.pop().mesh == "from-env"


def test_config_file_errors_are_one_line(agent_configs: list[Any], tmp_path: Path) -> None:
    app = _app(cli_run.register)
    missing = CliRunner().invoke(app, ["run", "-c", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1
    assert missing.stderr.startswith("Error: --config-file: cannot read ")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    result = CliRunner().invoke(app, ["run", "-c", str(bad)])
    assert result.stderr == f"Error: --config-file: {bad} must hold a YAML mapping\n"


def test_a_kuma_cp_file_locks_the_api_down(cp_configs: list[Any], tmp_path: Path) -> None:
    """The audit's example: Kuma's bind interface and loopback-is-admin from a file reach
    the configuration (they were dropped: the API bound 0.0.0.0 and loopback stayed admin)."""
    path = tmp_path / "kuma-cp.yaml"
    path.write_text(
        "apiServer:\n"
        "  http: {interface: 127.0.0.1, port: 15681}\n"
        "  https: {enabled: false}\n"
        "  authn: {localhostIsAdmin: false}\n"
    )
    result = invoke(cli_cp.register, ["cp", "run", "-c", str(path)])
    config = cp_configs.pop()
    assert (config.api_address, config.api_port) == ("127.0.0.1", 15681)
    assert config.localhost_is_admin is False
    assert config.api_https_port == 0
    assert result.stderr == ""


def test_the_security_docs_lock_down_file_is_taken_whole(
    cp_configs: list[Any], tmp_path: Path
) -> None:
    """docs/security.md's kuma-cp.yaml: every key reaches the configuration, no warning."""
    text = (DOCS.parent / "security.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "kuma-cp.yaml"
    path.write_text(block)
    result = invoke(cli_cp.register, ["cp", "run", "-c", str(path)])
    config = cp_configs.pop()
    assert (config.api_address, config.api_https_address) == ("127.0.0.1", "0.0.0.0")
    assert config.api_tls_cert_file == Path("/etc/kumadp/api.crt")
    assert config.localhost_is_admin is False
    assert config.data_dir == Path("/var/lib/kumadp")
    assert result.stderr == ""


def test_keys_kumadp_does_not_take_are_one_warning_line_each(
    cp_configs: list[Any], tmp_path: Path
) -> None:
    path = tmp_path / "kuma-cp.yaml"
    path.write_text(
        "environment: universal\n"  # what kumadp does: nothing to say
        "apiServer:\n"
        "  http: {interfce: 127.0.0.1, enabled: true}\n"
        "  gui: {enabled: false, basePath: /ui}\n"
        "  corsAllowedDomains: []\n"  # set to nothing
        "runtime: {kubernetes: {injector: {cniEnabled: true}}, universal: {}}\n"
        "dpServer: {authn: {dpProxy: {type: dpToken, dpToken: {validator: {useSecrets: true,"
        " publicKeys: [{kid: a}]}}}}}\n"
        "flavour: strawberry\n"
        "dnsServer: 241.0.0.0/8\n"
    )
    result = invoke(cli_cp.register, ["cp", "run", "-c", str(path)])
    assert cp_configs.pop().dp_auth == "dpToken"
    where = f"Warning: --config-file {path}: "
    assert result.stderr.splitlines() == [
        where + "apiServer.http.interfce: unknown key: ignored "
        '(did you mean "apiServer.http.interface"?)',
        where + "apiServer.gui: a Kuma setting kumadp has no feature for: ignored",
        where + "runtime: a Kuma setting kumadp has no feature for: ignored",
        where + "dpServer.authn.dpProxy.dpToken.validator.publicKeys: a Kuma setting kumadp has no "
        "feature for: ignored",
        where + "flavour: unknown key: ignored",
        where + "dnsServer: not a mapping (Kuma's layout has keys under it): ignored",
    ]


@pytest.mark.parametrize(
    ("file", "env", "error"),
    [
        (
            "apiServer: {http: {enabled: false}}",
            {},
            "apiServer.http.enabled: 'false' is not supported by kumadp (kumadp always serves "
            "the HTTP API: bind it to loopback with apiServer.http.interface: 127.0.0.1 "
            "(--api-address))",
        ),
        (
            "apiServer: {readOnly: false}",  # the file says what kumadp does...
            {"KUMA_API_SERVER_READ_ONLY": "TRUE"},  # ...the environment wins
            "KUMA_API_SERVER_READ_ONLY: 'true' is not supported by kumadp (kumadp's API has no "
            "read-only switch: give readers user tokens outside mesh-system:admin)",
        ),
        (
            "general: {tlsMinVersion: TLSv1_3}",
            {},
            "general.tlsMinVersion: 'TLSv1_3' is not supported by kumadp (kumadp's TLS servers "
            "take TLS 1.2 and newer with Python's default ciphers)",
        ),
        (
            "",
            {"KUMA_API_SERVER_HTTPS_TLS_CIPHER_SUITES": "TLS_AES_256_GCM_SHA384"},
            "KUMA_API_SERVER_HTTPS_TLS_CIPHER_SUITES: 'TLS_AES_256_GCM_SHA384' is not supported "
            "by kumadp (kumadp's TLS servers take TLS 1.2 and newer with Python's default "
            "ciphers)",
        ),
    ],
)
def test_kuma_settings_kumadp_cannot_honour_are_refused(
    cp_configs: list[Any], tmp_path: Path, file: str, env: dict[str, str], error: str
) -> None:
    """Ignoring them would leave the CP less locked down than asked: one line, exit 1."""
    path = tmp_path / "kuma-cp.yaml"
    path.write_text(file + "\n")
    result = CliRunner().invoke(_app(cli_cp.register), ["cp", "run", "-c", str(path)], env=env)
    assert result.exit_code == 1
    where = "" if error.startswith("KUMA_") else f"--config-file {path}: "
    assert result.stderr == f"Error: {where}{error}\n"
    assert cp_configs == []


def test_a_refused_setting_at_the_value_kumadp_has_is_fine(
    cp_configs: list[Any], tmp_path: Path
) -> None:
    path = tmp_path / "kuma-cp.yaml"
    path.write_text(
        "apiServer: {http: {enabled: true}, readOnly: false, https: {tlsMinVersion: TLSv1_2}}\n"
        "general: {tlsCipherSuites: []}\n"
    )
    env = {"KUMA_API_SERVER_AUTHN_TOKENS_ENABLE_ISSUER": "1", "KUMA_ENVIRONMENT": "universal"}
    result = invoke(cli_cp.register, ["cp", "run", "-c", str(path)], env)
    assert result.stderr == ""


def test_kuma_dp_file_keys_kumadp_does_not_take(agent_configs: list[Any], tmp_path: Path) -> None:
    path = tmp_path / "kuma-dp.yaml"
    path.write_text(
        "dataplane: {name: web-1, mesh: default}\n"
        "dns: {coreDnsPort: 15054, enabeld: true}\n"
        "dataplaneRuntime: {resourceVars: {a: b}, spire: {supported: true}}\n"
    )
    result = invoke(cli_run.register, ["run", "-c", str(path)])
    assert agent_configs.pop().dataplane_vars == ["a=b"]
    where = f"Warning: --config-file {path}: "
    assert result.stderr.splitlines() == [
        where + "dns.coreDnsPort: a Kuma setting kumadp has no feature for: ignored",
        where + 'dns.enabeld: unknown key: ignored (did you mean "dns.enabled"?)',
        where + "dataplaneRuntime.spire: a Kuma setting kumadp has no feature for: ignored",
    ]


@pytest.mark.parametrize(("names", "layout"), [(RUN, RUN_LAYOUT), (CP, CP_LAYOUT)])
def test_kumas_other_keys_are_not_taken_ones(names: Any, layout: Any) -> None:
    """A key is either taken by a flag or one kumadp has no feature for, never both; each
    Kuma key set alone is named as Kuma's (not as a typo)."""
    keys = layout.keys
    taken = {c for n in names for c in n.config}
    assert keys.taken == taken
    refused = {r.key for r in keys.refused}
    assert not taken & keys.kuma and not taken & refused
    for key in sorted(keys.kuma - refused):
        named = f"{key}.k" if keys.below(key) else key  # a section with taken keys below
        assert notes(_nest(key, {"k": "x"}), keys) == [
            f"{named}: a Kuma setting kumadp has no feature for: ignored"
        ]


# --- pflag's forms ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "dns_enabled"),
    [
        ("--dns-enabled=false", False),
        ("--dns-enabled=FALSE", False),
        ("--dns-enabled=0", False),
        ("--dns-enabled=f", False),
        ("--dns-enabled=true", True),
        ("--dns-enabled", True),
        ("--no-dns-enabled", False),
    ],
)
def test_pflag_booleans(agent_configs: list[Any], arg: str, dns_enabled: bool) -> None:
    assert run_config(agent_configs, arg).dns_enabled is dns_enabled


def test_other_booleans_take_the_form_too(agent_configs: list[Any]) -> None:
    config = run_config(agent_configs, "--skip-verify=true", "--bind-outbounds=false")
    assert config.skip_verify is True and config.bind_outbounds is False


def test_a_bad_boolean_is_named(agent_configs: list[Any]) -> None:
    app = _app(cli_run.register)
    result = CliRunner().invoke(app, ["run", "--name", "x", "--dns-enabled=maybe"])
    assert result.exit_code == 2 and "--dns-enabled" in result.output


def test_pflag_maps_and_kuma_dp_flags(agent_configs: list[Any]) -> None:
    config = run_config(
        agent_configs,
        "-v",
        "port.inbound=1,port.app=2",
        "--dataplane-var",
        "team=a",
        "--dns-proxy-port",
        "15054",
        "--envoy-log-level",
        "warning",
        "--proxy-type",
        "dataplane",
        "--dataplane-token",
        "a.b.c",
    )
    assert config.dataplane_vars == ["port.inbound=1", "port.app=2", "team=a"]
    assert config.dns_port == 15054
    assert config.envoy_log_level == "warning"
    assert config.dataplane_token == "a.b.c"


def test_rewrite_booleans_and_split_pairs() -> None:
    flags = {"--dns-enabled": "--no-dns-enabled", "--skip-verify": ""}
    assert rewrite_booleans(
        ["--dns-enabled=false", "--skip-verify=false", "--skip-verify=1", "--x=false", "--"],
        flags,
    ) == ["--no-dns-enabled", "--skip-verify", "--x=false", "--"]
    assert rewrite_booleans(["--", "--dns-enabled=false"], flags) == ["--", "--dns-enabled=false"]
    # CSV as pflag: a quoted pair may hold commas
    assert split_pairs(["a=1,b=2", "c=x,y", '"d=1,2",e=3']) == [
        "a=1",
        "b=2",
        "c=x,y",
        "d=1,2",
        "e=3",
    ]


def test_default_cp_address_is_kuma_dps(agent_configs: list[Any]) -> None:
    assert run_config(agent_configs).cp_address == "https://localhost:5678"


# --- the table in the docs ------------------------------------------------------------------------


HEADER = (
    "| kumadp flag | environment (Kuma's first) | Kuma's flag | Kuma's configuration key |\n"
    "|---|---|---|---|\n"
)


def doc_row(name: KumaName) -> str:
    env = ", ".join(f"`{v}`" for v in name.env) or "—"
    kuma_flag = f"`{name.kuma_flag}`" if name.kuma_flag else "—"
    config = ", ".join(f"`{c}`" for c in name.config) or "—"
    return f"| `{name.flag}` | {env} | {kuma_flag} | {config} |"


def doc_table(names: tuple[KumaName, ...]) -> str:
    return HEADER + "".join(doc_row(n) + "\n" for n in names)


def test_the_docs_show_the_table() -> None:
    """The docs' two tables are the tables of ``kuma_names``, row for row, in order
    (``UPDATE_GOLDEN=1`` rewrites them)."""
    text = DOCS.read_text()
    tables = [m.group(0) for m in re.finditer(re.escape(HEADER) + r"(\|.*\n)*", text)]
    assert len(tables) == 2, "docs/kuma-compatibility.md: the kumadp run and cp run tables"
    expected = [doc_table(RUN), doc_table(CP)]
    if os.environ.get("UPDATE_GOLDEN") == "1":
        for old, new in zip(tables, expected, strict=True):
            text = text.replace(old, new)
        DOCS.write_text(text)
        return
    assert tables == expected


@pytest.mark.parametrize(("register", "names"), [(cli_run.register, RUN), (cli_cp.register, CP)])
def test_every_table_flag_is_an_option(register: Any, names: tuple[KumaName, ...]) -> None:
    command = typer.main.get_command(_app(register))
    (group,) = command.commands.values()  # type: ignore[attr-defined]
    target = group if not hasattr(group, "commands") else group.commands["run"]
    options = {opt for p in target.params for opt in (*p.opts, *getattr(p, "secondary_opts", []))}
    by_param = {p.name: p for p in target.params}
    for name in names:
        assert name.flag in options, name.flag
        declared = by_param[name.param].envvar or []
        declared = [declared] if isinstance(declared, str) else list(declared)
        assert declared == list(name.env), name.flag
