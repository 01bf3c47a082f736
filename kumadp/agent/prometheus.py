"""The Prometheus text format, as the agent's merged ``/metrics`` page needs it: pure
functions over strings, no I/O, no Prometheus library (the product does not depend on one).

- ``parse_families``: a page into metric families (``# HELP``/``# TYPE`` plus the sample lines
  that belong to them by name: ``x`` for counters, gauges and untyped, ``x_bucket``/``x_sum``/
  ``x_count`` for histograms, ``x``/``x_sum``/``x_count`` for summaries; a sample outside the
  family announced before it starts an untyped family of its own name). Lines that are not
  comments or samples are dropped; OpenMetrics exemplars are stripped.
- ``Page``: families merged from several sources, so that the page parses and Prometheus
  accepts it. Families are written once each, in the order first seen, with one ``# HELP``
  (the first source's) and one ``# TYPE``. A family name a later source shares with an
  earlier one, with the same type, is merged: the later source's samples get an extra label
  ``kumadp_source="<source>"`` so no two series are identical (a sample that already has
  that label is kept as is). With a different type the later source's family is dropped
  (``Page.add`` counts them): mixing types under one name would break parsers. Sample lines
  are otherwise copied verbatim (labels, values, timestamps).
- ``family``: a family of the agent's own, from values.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SOURCE_LABEL = "kumadp_source"

_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?=[{\s])")

# -- parsing and merging ---------------------------------------------------------------------


class Family:
    """One metric family: its name, type, help and sample lines (verbatim)."""

    __slots__ = ("help", "name", "samples", "type", "typed")

    def __init__(self, name: str, type_: str = "untyped", help_: str | None = None) -> None:
        self.name = name
        self.type = type_
        self.help = help_
        self.typed = False  # a # TYPE line was seen for it
        self.samples: list[str] = []

    def allowed(self) -> tuple[str, ...]:
        name = self.name
        if self.type == "histogram":
            return (name + "_bucket", name + "_sum", name + "_count")
        if self.type == "summary":
            return (name, name + "_sum", name + "_count")
        return (name,)


def parse_families(text: str, *, openmetrics: bool = False) -> dict[str, Family]:
    """The families in a Prometheus text page, by name, in the order first seen."""
    families: dict[str, Family] = {}
    current: Family | None = None
    allowed: tuple[str, ...] = ()
    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            continue
        if line[0] == "#":
            parts = line.split(None, 3)
            if len(parts) < 3 or parts[1] not in ("HELP", "TYPE") or not _NAME.match(parts[2]):
                continue  # a plain comment (or # EOF, # UNIT)
            name = parts[2]
            family = families.get(name)
            if family is None:
                family = families[name] = Family(name)
            if parts[1] == "HELP":
                if family.help is None:
                    family.help = parts[3] if len(parts) > 3 else ""
            elif not family.typed:
                kind = parts[3].strip().lower() if len(parts) > 3 else "untyped"
                family.type = kind if kind in _TYPES else "untyped"
                family.typed = True
            current, allowed = family, family.allowed()
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name = match.group(1)
        if current is None or name not in allowed:
            family = families.get(name)
            if family is None:
                family = families[name] = Family(name)
            elif name not in family.allowed():
                continue  # e.g. a bare "x" after histogram "x": cannot be placed
            current, allowed = family, family.allowed()
        if openmetrics and " # " in line:
            line = line.split(" # ", 1)[0].rstrip()  # an exemplar
        current.samples.append(line)
    return families


def _label_set_end(line: str, start: int) -> int:
    """Index just past the ``}`` closing the label set opened at ``line[start]``."""
    quoted = False
    i = start + 1
    while i < len(line):
        ch = line[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "}":
            return i + 1
        i += 1
    return len(line)


def sample_value(line: str) -> float | None:
    """The value of a sample line (None when it cannot be read)."""
    match = _SAMPLE.match(line)
    if match is None:
        return None
    rest_at = match.end()
    if rest_at < len(line) and line[rest_at] == "{":
        rest_at = _label_set_end(line, rest_at)
    fields = line[rest_at:].split()
    if not fields:
        return None
    try:
        return float(fields[0])
    except ValueError:
        return None


def add_label(line: str, name: str, value: str) -> str:
    """The sample line with ``name="value"`` added first in its label set (unchanged when
    the sample already has a label of that name)."""
    match = _SAMPLE.match(line)
    if match is None:
        return line
    at = match.end()
    pair = f'{name}="{escape_label_value(value)}"'
    if at < len(line) and line[at] == "{":
        end = _label_set_end(line, at)
        labels = line[at + 1 : end - 1]
        if re.search(rf'(?:^|[,\s]){re.escape(name)}\s*=\s*"', labels):
            return line
        sep = "," if labels.strip() else ""
        return f"{line[: at + 1]}{pair}{sep}{line[at + 1 :]}"
    return f"{line[:at]}{{{pair}}}{line[at:]}"


class Page:
    """Families merged from several sources (see the module docstring for the rules)."""

    def __init__(self) -> None:
        self.families: dict[str, Family] = {}

    def add(self, families: Iterable[Family], source: str | None = None) -> int:
        """Merge one source's families; returns how many were dropped for a type conflict."""
        dropped = 0
        for family in families:
            if not family.samples:
                continue
            have = self.families.get(family.name)
            if have is None:
                self.families[family.name] = family
            elif have.type != family.type:
                dropped += 1
                log.debug(
                    "metrics: dropped %s family %s from %s (already a %s)",
                    family.type,
                    family.name,
                    source,
                    have.type,
                )
            elif source is None:
                have.samples.extend(family.samples)
            else:
                have.samples.extend(add_label(s, SOURCE_LABEL, source) for s in family.samples)
        return dropped

    def render(self) -> str:
        out: list[str] = []
        for family in self.families.values():
            if not family.samples:
                continue
            if family.help is not None:
                out.append(f"# HELP {family.name} {family.help}".rstrip())
            out.append(f"# TYPE {family.name} {family.type}")
            out.extend(family.samples)
        return "\n".join(out) + "\n" if out else ""


# -- writing our own families ----------------------------------------------------------------


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


Labels = Mapping[str, str]


def family(
    name: str,
    type_: str,
    help_: str,
    samples: Iterable[tuple[Labels, float]] | float,
) -> Family:
    """A family of our own: ``samples`` is one value (no labels) or (labels, value) pairs."""
    fam = Family(name, type_, help_)
    fam.typed = True
    pairs: Iterable[tuple[Labels, float]] = (
        [({}, samples)] if isinstance(samples, int | float) else samples
    )
    for labels, value in pairs:
        text = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items())
        fam.samples.append(
            f"{name}{{{text}}} {format_value(value)}" if text else f"{name} {format_value(value)}"
        )
    return fam
