"""Go-style durations (``30s``, ``1h30m``): what Kuma's flags and resource fields accept."""

from __future__ import annotations

import re

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "y": 365 * 86400.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d|y)")
_DURATION_HELP = "expected e.g. 30s, 1h30m, 500ms, 24h (units: ns, us, ms, s, m, h, d, y)"


def parse_duration(value: str) -> float:
    """A Go-style duration (``30s``, ``1h30m``, ``500ms``; also ``d`` and ``y`` = 365d) in
    seconds; ``"0"`` is 0. Raises ``ValueError`` naming the bad input."""
    if not isinstance(value, str):
        raise ValueError(f"invalid duration {value!r}: {_DURATION_HELP}")
    text = value.strip()
    if text == "0":
        return 0.0
    if not text:
        raise ValueError(f'invalid duration "{value}": empty, {_DURATION_HELP}')
    total, pos = 0.0, 0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            missing = re.fullmatch(r"[\d.]+", text[pos:]) is not None
            problem = "missing unit" if missing else f'unexpected "{text[pos:]}"'
            raise ValueError(f'invalid duration "{value}": {problem}, {_DURATION_HELP}')
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return total


__all__ = ["parse_duration"]
