"""The command line: pick benchmarks, run each under a time bound, print and write figures."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.core import ROOT, Figure, Options, Skipped, machine, render, to_json
from testkit.procs import cleanup_on_signals


@dataclass(frozen=True)
class Benchmark:
    module: str  # under bench, imported only when it runs
    function: str
    budget: float  # seconds; the benchmark is stopped (and cleaned up) after this
    what: str

    def load(self) -> Callable[[Path, Options], list[Figure]]:
        mod = importlib.import_module(f"bench.{self.module}")
        fn: Callable[[Path, Options], list[Figure]] = getattr(mod, self.function)
        return fn


BENCHMARKS: dict[str, Benchmark] = {
    "startup": Benchmark(
        "startup", "bench_startup", 180, "kumadp run -> first request, vs bare Envoy"
    ),
    "convergence": Benchmark(
        "convergence", "bench_convergence", 300, "new endpoint -> all of 10 / 30 real Envoys"
    ),
    "cp-scale": Benchmark(
        "cpscale",
        "bench_cp_scale",
        420,
        "CP memory, initial snapshots, convergence: 100-1,000 ADS clients",
    ),
    "generation": Benchmark(
        "generation",
        "bench_generation",
        120,
        "resources generated+serialised/s vs serialising only",
    ),
    "datapath": Benchmark(
        "datapath",
        "bench_datapath",
        240,
        "two mTLS sidecars vs direct: 1,000 rps latency, max rate",
    ),
    "dns": Benchmark("dns", "bench_dns", 240, "the agent's resolver vs dnsmasq under dnsperf"),
    "memory": Benchmark(
        "memory", "bench_memory", 120, "agent RSS without Envoy, idle and under load"
    ),
    "rotation": Benchmark(
        "rotation", "bench_rotation", 300, "3 min of 60 s certificates at 200 rps: failures"
    ),
    "names": Benchmark("names", "bench_names", 150, "a new service resolvable by every agent"),
    "postgres": Benchmark(
        "postgres",
        "bench_postgres",
        600,
        "PostgreSQL vs SQLite: API writes, EDS with 3 instances x 1,000 clients, leader failover",
    ),
    "dp-front": Benchmark(
        "dpfront", "bench_dp_front", 240, "the DP port's router vs gRPC straight on TCP"
    ),
    "multizone": Benchmark(
        "multizone",
        "bench_multizone",
        600,
        "global CP -> zone Envoy, zone -> global inventory, a zone's initial sync and reconnect",
    ),
    "crosszone": Benchmark(
        "crosszone",
        "bench_crosszone",
        420,
        "zone-b service -> reachable from zone-a; the ingress hop at 1,000 rps",
    ),
    "crosszone-severed": Benchmark(
        "crosszone_severed",
        "bench_crosszone_severed",
        420,
        "a zone's ingress killed -> severed by outlier detection, beside without it",
    ),
}


class BudgetExceeded(Exception):
    pass


@contextlib.contextmanager
def time_bound(seconds: float, name: str) -> Iterator[None]:
    """SIGALRM after ``seconds``: the benchmark unwinds through its ``finally`` clean-ups."""

    def expired(signum: int, frame: object) -> None:
        raise BudgetExceeded(f"{name} exceeded its {seconds:.0f} s time bound")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_one(name: str, opts: Options) -> tuple[list[Figure], str | None]:
    bench = BENCHMARKS[name]
    with tempfile.TemporaryDirectory(prefix=f"kumadp-bench-{name}-") as tmp:
        try:
            fn = bench.load()
            with time_bound(bench.budget, name):
                return fn(Path(tmp), opts), None
        except Skipped as exc:
            return [], str(exc)
        except Exception as exc:  # a figure is never invented: say why it is missing
            detail = str(exc)
            if "\n" in detail:  # e.g. a process's log tail: on the console, not in the table
                print(f"    {type(exc).__name__}: {detail}", file=sys.stderr, flush=True)
                detail = detail.splitlines()[0]
            return [], f"failed: {type(exc).__name__}: {detail[:300]}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description="kumadp benchmarks, each beside a baseline"
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--quick", action="store_true", help="shorter runs, fewer trials")
    write = parser.add_mutually_exclusive_group()
    write.add_argument("--write", action="store_true", help="write BENCHMARKS.md/.json")
    write.add_argument("--no-write", action="store_true", help="only print")
    parser.add_argument("--output-dir", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.list:
        for name, bench in BENCHMARKS.items():
            print(f"{name:12} {bench.what} (bound {bench.budget:.0f} s)")
        return
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; one of: {', '.join(BENCHMARKS)}")
    names = list(dict.fromkeys(args.names)) or list(BENCHMARKS)
    opts = Options(quick=args.quick)
    full = not args.names and not args.quick
    do_write = args.write or (full and not args.no_write)

    figures: list[Figure] = []
    skipped: dict[str, str] = {}
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    try:
        with cleanup_on_signals():
            for name in names:
                print(f"==> {name}", flush=True)
                t0 = time.monotonic()
                got, why = run_one(name, opts)
                for f in got:
                    print(f.line(), flush=True)
                if why is not None:
                    skipped[name] = why
                    print(f"    skipped: {why}", flush=True)
                print(f"    ({time.monotonic() - t0:.0f} s)", flush=True)
                figures += got
    except KeyboardInterrupt:
        print("\ninterrupted: every process was stopped; nothing written", file=sys.stderr)
        sys.exit(130)
    command = (
        "scripts/bench" + (" --quick" if opts.quick else "") + "".join(f" {n}" for n in args.names)
    )
    load = f"load average {load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    report = render(figures, skipped, machine_text=f"{machine()}; {load}", command=command)
    print()
    print(report)
    print(f"total {time.monotonic() - started:.0f} s")
    if do_write:
        (args.output_dir / "BENCHMARKS.md").write_text(report)
        (args.output_dir / "BENCHMARKS.json").write_text(to_json(figures, skipped))
        print(f"wrote {args.output_dir / 'BENCHMARKS.md'} and BENCHMARKS.json")
