"""Fixtures every test directory may use."""

from testkit.postgres import postgres_server  # noqa: F401 (one throw-away PostgreSQL per run)
