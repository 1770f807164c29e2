"""Run every benchmarks/bench_*.py in turn with this interpreter (``make bench``).

    .venv/bin/python benchmarks/run_all.py            # full runs; each rewrites its RESULTS.md section
    .venv/bin/python benchmarks/run_all.py --quick    # smoke check of every benchmark
    .venv/bin/python benchmarks/run_all.py -k serving # only the benchmarks whose name contains "serving"

The benchmarks (each rewrites its own RESULTS.md section): bench_byom.py (users' own pipelines published with
publish_user_model: runtime, parity, cold start and warm latency against each pipeline's naive handler and bare
estimator), bench_drift.py, bench_load.py, bench_serving.py; any new bench_*.py is picked up too.

Benchmarks run one after another, never in parallel (they would disturb each other's timings).
Extra arguments after ``--`` are passed to every benchmark. Exits non-zero if any benchmark fails.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run every benchmarks/bench_*.py in turn.")
    p.add_argument("--quick", action="store_true", help="pass --quick to every benchmark (smoke check)")
    p.add_argument("-k", dest="match", default="", help="only benchmarks whose file name contains this")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="-- then arguments for every benchmark")
    args = p.parse_args(argv)
    extra = [a for a in args.extra if a != "--"]
    scripts = sorted(s for s in BENCH.glob("bench_*.py") if args.match in s.name)
    if not scripts:
        print(f"no benchmarks/bench_*.py matching {args.match!r}", file=sys.stderr)
        return 1
    failed: list[str] = []
    for script in scripts:
        cmd = [sys.executable, str(script), *(["--quick"] if args.quick else []), *extra]
        print(f"==> {' '.join(cmd)}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        code = subprocess.call(cmd, cwd=BENCH.parent)
        elapsed = time.perf_counter() - started
        status = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"<== {script.name}: {status} in {elapsed:.0f} s", file=sys.stderr, flush=True)
        if code != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
