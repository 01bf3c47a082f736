"""``scripts/bench``: performance figures, each beside a baseline measured in the same run.

    scripts/bench                     # the whole suite (under 15 minutes on 2 cores)
    scripts/bench dns datapath        # only some, by name (scripts/bench --list)
    scripts/bench --quick             # shorter runs, fewer trials (development)
    scripts/bench --no-write          # print only; --write forces writing for a subset

A full run writes ``BENCHMARKS.md`` and ``BENCHMARKS.json`` at the repository root; a subset
or a ``--quick`` run only prints unless given ``--write``. Every figure is a median or a
percentile over repeated trials. A benchmark that cannot run says skipped and why.
"""

from __future__ import annotations

from bench.cli import BENCHMARKS, main
from bench.core import Figure, Options, Skipped, median, percentile, render

__all__ = [
    "BENCHMARKS",
    "Figure",
    "Options",
    "Skipped",
    "main",
    "median",
    "percentile",
    "render",
]
