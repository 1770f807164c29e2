"""One measured capture read in a fresh process (spawned by bench_capture_read.py).

    python benchmarks/_capture_read_child.py MODE DIR BASELINE_JSON --repeat R

Reads every gzipped capture object in DIR (in name order) into a ``DriftAggregate`` and prints one
JSON line: wall and CPU seconds per repeat, RSS before and the peak during the timed runs (VmHWM
after a reset), the tracemalloc peak of one extra untimed run, and a sha256 of the aggregate's
``to_dict()`` so the parent can check that every mode computed the same aggregate.

MODE:
- ``before``: the reader as it was before reader.py, verbatim: ``gzip.decompress`` of the whole
  object, ``split``, ``CaptureRecord.parse_line`` per line, ``add_records`` per 5,000 rows;
- ``after``: ``DriftJob.read_keys`` as it runs off Lambda (one process, ``CaptureReader.read`` with
  its prefetch thread inflating ahead);
- ``after-2``: ``read_keys`` with two forked workers, each aggregating its share into a partial
  (what a 3,538 MB Lambda does);
- ``after-serial``: one process, no thread (inflate, then decode, in turn);
- ``parse-before`` / ``parse-after``: only the decoding of the lines (pydantic vs the fast path).
"""

from __future__ import annotations

import argparse
import gc
import gzip
import hashlib
import io
import json
import resource
import sys
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sklambda.monitoring.capture import CaptureRecord
from sklambda.monitoring.drift import DriftAggregate, DriftConfig
from sklambda.monitoring.drift_job import DriftJob, RunSummary
from sklambda.monitoring.reader import Prefetch, object_pieces, split_lines, usable_processes
from sklambda.monitoring.records import BadRecord

RECORDS_PER_CHUNK = 5000  # the old drift_job constant


def status_mib(name: str) -> float | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) / 1024
    return None


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the reader's worker processes, once joined
    return usage.ru_utime + usage.ru_stime


def reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def before(objects: list[bytes], baseline: dict[str, Any]) -> tuple[DriftAggregate, int]:
    """DriftJob._read_object and CaptureStore.read_lines before reader.py (one model version here)."""
    aggregates: dict[tuple[str, str], DriftAggregate] = {}
    bad = 0
    for body in objects:
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        chunks: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for line in body.split(b"\n"):
            if not line.strip():
                continue
            try:
                record = CaptureRecord.parse_line(line)
            except BadRecord:
                bad += 1
                continue
            pair = (record.model, record.version)
            chunk = chunks[pair]
            chunk.append(record.features)
            if len(chunk) >= RECORDS_PER_CHUNK:
                aggregates.setdefault(pair, DriftAggregate(baseline)).add_records(chunk)
                chunks[pair] = []
        for pair, chunk in chunks.items():
            if chunk:
                aggregates.setdefault(pair, DriftAggregate(baseline)).add_records(chunk)
    (aggregate,) = aggregates.values()
    return aggregate, bad


class FileSource:
    """The capture objects of a folder, read like ``CaptureStore.read_objects`` reads S3 objects."""

    def __init__(self, folder: Path, prefetch: bool) -> None:
        self.folder, self.prefetch = folder, prefetch

    def read_objects(self, keys: Any) -> Any:
        for key in keys:
            with open(self.folder / key, "rb") as body:
                pieces = object_pieces(io.BufferedReader(body))
                yield key, split_lines(Prefetch(pieces) if self.prefetch else pieces)

    def fresh(self) -> FileSource:
        return self


def after(folder: Path, baseline: dict[str, Any], processes: int | None, prefetch: bool) -> tuple[DriftAggregate, int]:
    """What the drift run does: ``DriftJob.read_keys`` (worker processes when there are CPUs, each
    aggregating its share; ``CaptureReader.read`` in each)."""
    job = DriftJob(FileSource(folder, prefetch), lambda _m, _v: baseline, DriftConfig())  # type: ignore[arg-type]
    aggregates: dict[Any, Any] = {}
    summary = RunSummary(run_id="bench", started_at="", window_start="", window_end="")
    keys = sorted(p.name for p in folder.glob("*.gz"))
    job.read_keys(keys, aggregates, summary, processes=processes)
    (window,) = aggregates.values()
    return window.drift, sum(summary.bad_lines.values())


def parse_before(objects: list[bytes]) -> int:
    count = 0
    for body in objects:
        for line in gzip.decompress(body).split(b"\n"):
            if line.strip():
                CaptureRecord.parse_line(line)
                count += 1
    return count


def parse_after(objects: list[bytes], baseline: dict[str, Any]) -> int:
    from sklambda.monitoring.reader import _Layout

    layout = _Layout.of(tuple((f["name"], f["type"]) for f in baseline["features"]))
    decode = layout.decoder.decode
    count = 0
    for body in objects:
        for line in gzip.decompress(body).split(b"\n"):
            if line.strip():
                decode(line)
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["before", "after", "after-2", "after-serial", "parse-before", "parse-after"])
    parser.add_argument("directory")
    parser.add_argument("baseline")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-trace", action="store_true")
    args = parser.parse_args()
    baseline = json.loads(Path(args.baseline).read_text())
    objects = [p.read_bytes() for p in sorted(Path(args.directory).glob("*.gz"))]

    run: Callable[[], Any]
    if args.mode == "before":
        run = lambda: before(objects, baseline)  # noqa: E731
    elif args.mode in ("after", "after-2"):
        processes = 2 if args.mode == "after-2" else None
        run = lambda: after(Path(args.directory), baseline, processes, prefetch=True)  # noqa: E731
    elif args.mode == "after-serial":
        run = lambda: after(Path(args.directory), baseline, 1, prefetch=False)  # noqa: E731
    elif args.mode == "parse-before":
        run = lambda: parse_before(objects)  # noqa: E731
    else:
        run = lambda: parse_after(objects, baseline)  # noqa: E731

    gc.collect()
    rss_before = status_mib("VmRSS")
    windowed = reset_peak()
    wall, cpu = [], []
    result: Any = None
    for _ in range(args.repeat):
        result = None
        gc.collect()
        started, started_cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
        result = run()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu + _children_cpu() - children)
    peak = status_mib("VmHWM") if windowed else None
    workers_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if peak is not None and workers_peak:
        peak += workers_peak
    traced = None
    if not args.no_trace:
        result = None
        gc.collect()
        tracemalloc.start()
        result = run()
        traced = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    report: dict[str, Any] = {
        "mode": args.mode,
        "wall": wall,
        "cpu": cpu,
        "rss_before_mib": rss_before,
        "rss_peak_mib": peak,
        "traced_peak_mib": traced,
        "objects": len(objects),
        "processes": usable_processes(),
        "compressed_bytes": sum(map(len, objects)),
    }
    if isinstance(result, tuple):
        aggregate, bad = result
        canonical = json.dumps(aggregate.to_dict(), sort_keys=True, separators=(",", ":"))
        report.update(
            rows=aggregate.rows, bad_lines=bad, aggregate_sha256=hashlib.sha256(canonical.encode()).hexdigest()
        )
    else:
        report.update(rows=result)
    print(json.dumps(report))


if __name__ == "__main__":
    sys.exit(main())
