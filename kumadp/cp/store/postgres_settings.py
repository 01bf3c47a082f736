"""How to reach PostgreSQL: Kuma's connection settings, or one DSN.

Kuma's names (``KUMA_STORE_POSTGRES_HOST``, ``_PORT``, ``_USER``, ``_PASSWORD``,
``_DB_NAME``, ``_TLS_MODE``, ``_TLS_CERT_PATH``, ``_TLS_KEY_PATH``, ``_TLS_CA_PATH``,
``_MAX_OPEN_CONNECTIONS``) map onto libpq's; ``--postgres-dsn`` (a ``postgresql://`` URL or
``key=value`` pairs) takes their place when given, and the separate settings then only fill
what the DSN leaves out. TLS modes, Kuma's words: ``disable``, ``verifyNone`` (encrypt, trust
any certificate), ``verifyCa`` (check the CA), ``verifyFull`` (check the CA and the host
name).

The values here never reach a log: ``describe()`` is the safe form (no password).
"""

from __future__ import annotations

from dataclasses import dataclass, field

TLS_MODES = {
    "disable": "disable",
    "verifyNone": "require",
    "verifyCa": "verify-ca",
    "verifyFull": "verify-full",
}
DEFAULT_MAX_OPEN_CONNECTIONS = 50


class PostgresSettingsError(ValueError):
    """A PostgreSQL setting is invalid (the message names it)."""


@dataclass(frozen=True)
class PostgresSettings:
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "kuma"
    password: str = field(default="", repr=False)
    db_name: str = "kuma"
    tls_mode: str = "disable"
    tls_cert_path: str = ""
    tls_key_path: str = ""
    tls_ca_path: str = ""
    max_open_connections: int = DEFAULT_MAX_OPEN_CONNECTIONS
    dsn: str = field(default="", repr=False)  # when set, the base of the connection string
    connect_timeout: int = 5

    def check(self) -> None:
        if self.tls_mode not in TLS_MODES:
            raise PostgresSettingsError(
                f"--postgres-tls-mode: must be one of {', '.join(TLS_MODES)}, got {self.tls_mode!r}"
            )
        if not 0 < self.port < 65536:
            raise PostgresSettingsError(f"--postgres-port: must be 1-65535, got {self.port}")
        if self.max_open_connections < 3:
            raise PostgresSettingsError(
                "--postgres-max-open-connections: must be at least 3 (one each is kept for "
                f"change events and the leader lease), got {self.max_open_connections}"
            )
        if self.tls_mode in ("verifyCa", "verifyFull") and not self.tls_ca_path and not self.dsn:
            raise PostgresSettingsError(
                f"--postgres-tls-ca-path: needed with --postgres-tls-mode {self.tls_mode}"
            )

    def conninfo(self) -> str:
        """The libpq connection string (contains the password)."""
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        given = conninfo_to_dict(self.dsn) if self.dsn else {}
        params: dict[str, str | int | None] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.db_name,
            "sslmode": TLS_MODES[self.tls_mode],
            "connect_timeout": self.connect_timeout,
            "application_name": "kumadp-cp",
            # notice a dead server or a cut network within seconds, not hours
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
        }
        if self.password:
            params["password"] = self.password
        if self.tls_cert_path:
            params["sslcert"] = self.tls_cert_path
        if self.tls_key_path:
            params["sslkey"] = self.tls_key_path
        if self.tls_ca_path:
            params["sslrootcert"] = self.tls_ca_path
        params = {**params, **given}  # the DSN wins; the settings fill the rest
        return make_conninfo("", **{k: v for k, v in params.items() if v not in (None, "")})

    def describe(self) -> str:
        """Where the store is, for logs: ``user@host:port/db`` without the password."""
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(self.conninfo())
        return f"{info.get('user', '')}@{info.get('host', '')}:{info.get('port', '')}/" + str(
            info.get("dbname", "")
        )


__all__ = [
    "DEFAULT_MAX_OPEN_CONNECTIONS",
    "TLS_MODES",
    "PostgresSettings",
    "PostgresSettingsError",
]
