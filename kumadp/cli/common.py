"""Helpers shared by the CLI commands: logging setup, flag parsing, one-line errors.

Only the CLI configures logging; the packages below it only create loggers.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

LOG_LEVELS = ("debug", "info", "warning", "error")
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Libraries that log every request at INFO; quiet unless the user asked for debug.
_CHATTY = ("httpx", "httpcore", "grpc", "asyncio")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``Error: <message>`` on stderr and exit with ``code`` (no traceback)."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)


def setup_logging(level: str = "info") -> None:
    """Log to stderr at ``level`` (debug, info, warning, error)."""
    name = level.lower()
    if name == "warn":
        name = "warning"
    if name not in LOG_LEVELS:
        fail(f"--log-level: must be one of {', '.join(LOG_LEVELS)}")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_kumadp", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler._kumadp = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(getattr(logging, name.upper()))
    for chatty in _CHATTY:
        logging.getLogger(chatty).setLevel(logging.DEBUG if name == "debug" else logging.WARNING)


def parse_duration_flag(flag: str, value: str) -> float:
    """``--flag 30s`` in seconds; a bad value exits with one line naming the flag."""
    from kumadp.resources import ValidationError, parse_duration

    try:
        seconds = parse_duration(value)
    except (ValueError, ValidationError) as exc:
        fail(f"{flag}: {exc}")
    if seconds < 0:
        fail(f"{flag}: must not be negative")
    return seconds


def parse_port_flag(flag: str, value: int | None, *, allow_zero: bool = False) -> int | None:
    if value is None:
        return None
    low = 0 if allow_zero else 1
    if not low <= value <= 65535:
        fail(f"{flag}: must be {low}-65535")
    return value


@contextmanager
def one_line_errors(*errors: type[BaseException]) -> Iterator[None]:
    """Turn the given exception types (and OSError) into ``Error: <message>`` + exit 1."""
    caught: tuple[type[BaseException], ...] = (*errors, OSError)
    try:
        yield
    except typer.Exit:
        raise
    except caught as exc:
        fail(_describe(exc))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__
