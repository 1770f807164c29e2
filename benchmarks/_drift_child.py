"""One measured drift computation in a fresh process (spawned by bench_drift.py).

    python benchmarks/_drift_child.py MODE ROWS BASELINE_JSON [JSONL] --repeat R

MODE is ``columns`` (one ``add_columns`` call with the whole window as arrays), ``chunks`` (the
same arrays in 65,536-row slices, as a reader of capture objects would feed them) or ``jsonl``
(the realistic path: read a JSON-lines capture file, ``json.loads`` each line, ``add_records``).
Every mode ends with ``evaluate``. Prints one JSON line: wall times; RSS before the computation
and its peak during the timed runs (VmHWM after a reset, so scipy's import peak does not count);
the whole process's peak; and the tracemalloc peak of a separate, traced run (tracing slows
Python code, so it is never timed).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _drift_data as D

from sklambda.monitoring.drift import DriftAggregate, evaluate

CHUNK_ROWS = 65_536


def process_peak_mib() -> float:
    """This process's RSS high-water mark so far (VmHWM), imports included.

    Not ru_maxrss: on Linux that survives execve, so a child spawned by a big parent reports the
    parent's size. Falls back to it where /proc is missing.
    """
    hwm = status_mib("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def status_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM) to the current RSS (Linux >= 4.0).

    Importing scipy alone peaks above what the drift computation needs, so ru_maxrss would
    measure the import; after this reset VmHWM measures the computation window only.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["columns", "chunks", "jsonl", "parse"])
    parser.add_argument("rows", type=int)
    parser.add_argument("baseline")
    parser.add_argument("jsonl", nargs="?")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-trace", action="store_true")
    args = parser.parse_args()
    baseline = json.loads(Path(args.baseline).read_text())

    if args.mode in ("columns", "chunks"):
        columns = D.current(args.rows)
        run = _columns_runner(baseline, columns, args.mode == "chunks")
    else:
        run = _jsonl_runner(baseline, Path(args.jsonl), parse_only=args.mode == "parse")
    evaluate(baseline, DriftAggregate(baseline))  # warm-up: scipy's import is a cold-start cost, not per-row work
    gc.collect()
    rss_before = status_mib("VmRSS")
    peak_so_far = process_peak_mib()
    windowed = reset_peak()

    times = []
    result: dict[str, Any] = {}
    for _ in range(args.repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    window_peak = status_mib("VmHWM") if windowed else None
    process_peak = max(peak_so_far, process_peak_mib())

    traced = None
    if not args.no_trace:
        gc.collect()
        tracemalloc.start()
        run()
        traced = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    report = {
        "mode": args.mode,
        "rows": args.rows,
        "seconds": times,
        "rss_before_mib": rss_before,
        "rss_peak_mib": window_peak if window_peak is not None else process_peak,
        "process_peak_mib": process_peak,
        "traced_peak_mib": traced,
        **result,
    }
    print(json.dumps(report))


def _columns_runner(baseline: dict[str, Any], columns: dict[str, Any], chunked: bool) -> Callable[[], dict]:
    n = len(columns["age"])

    def run() -> dict[str, Any]:
        aggregate = DriftAggregate(baseline)
        if chunked:
            for start in range(0, n, CHUNK_ROWS):
                aggregate.add_columns({k: v[start : start + CHUNK_ROWS] for k, v in columns.items()})
        else:
            aggregate.add_columns(columns)
        return _summary(baseline, aggregate)

    return run


def _jsonl_runner(baseline: dict[str, Any], path: Path, parse_only: bool) -> Callable[[], dict]:
    def run() -> dict[str, Any]:
        with open(path, "rb") as lines:
            records = (json.loads(line)["features"] for line in lines)
            if parse_only:  # json.loads alone: how much of the path is parsing
                return {"parsed": sum(1 for _ in records)}
            aggregate = DriftAggregate(baseline).add_records(records)
        return _summary(baseline, aggregate)

    return run


def _summary(baseline: dict[str, Any], aggregate: DriftAggregate) -> dict[str, Any]:
    result = evaluate(baseline, aggregate)
    return {
        "aggregate_bytes": len(json.dumps(aggregate.to_dict(), separators=(",", ":"))),
        "counted_rows": aggregate.rows,
        "drift_score": result.drift_score,
        "verdicts": {f.name: f.verdict for f in result.features},
        "stats": {
            f.name: {"psi": f.psi, "distance": f.distance, "kind": f.distance_name, "wasserstein": f.wasserstein}
            for f in result.features
        },
    }


if __name__ == "__main__":
    main()
