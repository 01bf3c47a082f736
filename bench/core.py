"""What every benchmark shares: figures, percentiles, options, the report, clean-up helpers."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[3]

# Where a baseline is a published or configured number rather than one measured in this run,
# its name says so.
REFERENCE = "reference, not measured"


class Skipped(Exception):
    """A benchmark cannot run here; the message says why (never an invented figure)."""


@dataclass
class Options:
    """What the command line chose for every benchmark."""

    quick: bool = False  # shorter runs and fewer trials (development; not the published run)


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: float | None
    baseline_name: str
    target: str
    met: bool | None  # None: no target for this figure (context only)
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}

    def line(self) -> str:
        """One printed line: name, value, baseline, ratio, target, met."""
        base = ""
        if self.baseline is not None:
            base = f"  baseline {fmt(self.baseline)} {self.unit} ({self.baseline_name})"
        ratio = f"  ratio {self.ratio:.2f}x" if self.ratio is not None else ""
        met = {True: "met", False: "MISSED", None: "-"}[self.met]
        value = f"{fmt(self.value)} {self.unit}"
        return f"    {self.name}: {value}{base}{ratio}  target {self.target}: {met}"


def fmt(value: float) -> str:
    """Three significant digits, no exponent for everyday magnitudes."""
    if value == 0 or not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = q / 100 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


# -- the report ---------------------------------------------------------------------------
def machine() -> str:
    version = "?"
    envoy = shutil.which("envoy")
    if envoy:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [envoy, "--version"], capture_output=True, text=True, timeout=10
            ).stdout
            found = re.search(r"version: \S+?/(\d+\.\d+\.\d+)", out)
            version = found.group(1) if found else "?"
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = psutil.virtual_memory().total / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Python {platform.python_version()}, "
        f"Envoy {version}, {platform.system()} {platform.release()}"
    )


def _cell(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{fmt(value)} {unit}"


def render(
    figures: Sequence[Figure],
    skipped: dict[str, str],
    *,
    machine_text: str | None = None,
    command: str = "scripts/bench",
    date: str | None = None,
) -> str:
    """``BENCHMARKS.md``: the table, the machine, a note per missed target, the skips."""
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `{command}` on {date or time.strftime('%Y-%m-%d')}.",
        f"Machine: {machine_text if machine_text is not None else machine()}.",
        "",
        "Every figure is a median or a percentile over repeated trials, beside a baseline",
        "measured in the same run (or, where marked, a reference figure that was not measured).",
        "These machines are shared and noisy: read the ratios. `met` is `-` for figures that",
        "give context and have no target of their own.",
        "",
        "| figure | value | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        base = "-" if f.baseline is None else f"{_cell(f.baseline, f.unit)} ({f.baseline_name})"
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else "-"
        met = {True: "yes", False: "**NO**", None: "-"}[f.met]
        lines.append(
            f"| {f.name} | {_cell(f.value, f.unit)} | {base} | {ratio} | {f.target} | {met} |"
        )
    for name, why in skipped.items():
        lines.append(f"| {name} | skipped: {why} | | | | |")
    missed = [f for f in figures if f.met is False]
    notes = [f for f in figures if f.note and f.met is not False]
    if missed:
        lines += ["", "## Missed targets", ""]
        lines += [f"- **{f.name}**: {f.note or 'no explanation recorded'}" for f in missed]
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {f.name}: {f.note}" for f in notes]
    if skipped:
        lines += ["", "## Skipped", ""]
        lines += [f"- {name}: {why}" for name, why in skipped.items()]
    return "\n".join(lines) + "\n"


def to_json(figures: Sequence[Figure], skipped: dict[str, str] | None = None) -> str:
    doc: list[dict[str, Any]] = [f.to_json() for f in figures]
    doc += [{"name": name, "skipped": why} for name, why in (skipped or {}).items()]
    return json.dumps(doc, indent=2) + "\n"


# -- process helpers ----------------------------------------------------------------------
def rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def uss_mb(pid: int) -> float:
    """Unique set size: what the process alone holds (shared library pages excluded), i.e.
    what one more agent on the same host costs."""
    return float(psutil.Process(pid).memory_full_info().uss) / 2**20


def raise_fd_limit(want: int = 16_384) -> None:
    """Many sockets (ADS clients, their CP) need more than the usual 1,024 descriptors;
    children started afterwards inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise Skipped(
            f"`{tool}` not found (Debian package {package}: BENCH=1 scripts/install-deps)"
        )
    return path


# -- the local mesh, as the benchmarks run it -----------------------------------------------
QUIET = ["--log-level", "info"]  # the harness defaults to debug logs: not what users run


def start_quiet_cp(env: Any, **kwargs: Any) -> Any:
    """A CP (memory store) logging at info, as it would run in production."""
    kwargs.setdefault("store", "memory")
    kwargs["extra"] = [*(kwargs.get("extra") or []), *QUIET]
    return env.start_cp(**kwargs)


def close_fast(env: Any) -> None:
    """SIGTERM every process at once, then let ``MeshEnv.close`` reap them (and SIGKILL
    stragglers): stopping 30 agents one after the other would take minutes."""
    import signal

    for proc in list(env.procs.procs):
        with contextlib.suppress(Exception):
            proc.signal(signal.SIGTERM)
    env.close()
