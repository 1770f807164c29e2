"""Bounded load on loopback: the local stack from template.yaml, N predict requests with concurrency.

    .venv/bin/python benchmarks/bench_load.py            # 400 requests x 5 rows, 8 clients
    .venv/bin/python benchmarks/bench_load.py --quick    # 40 requests

Reports throughput, latency percentiles, errors, and checks that every served prediction id is in
the captures (every capture object in the capture bucket read back). Writes the "load" section of
RESULTS.md. tests/e2e/test_load.py runs the same ``run_load`` and asserts zero errors, zero lost.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class LoadResult:
    requests: int
    rows: int
    concurrency: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    served_ids: set[str] = field(default_factory=set)
    captured_ids: set[str] = field(default_factory=set)

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)

    @property
    def lost(self) -> set[str]:
        return self.served_ids - self.captured_ids

    def percentile(self, q: float) -> float:
        values = sorted(self.latencies)
        return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))] if values else float("nan")


def run_load(
    api: str, rows: list[dict[str, Any]], *, rows_per_request: int = 5, concurrency: int = 8, time_limit: float = 300
) -> LoadResult:
    """POST ``rows`` in batches of ``rows_per_request`` with ``concurrency`` clients (stops at ``time_limit``)."""
    batches = [rows[i : i + rows_per_request] for i in range(0, len(rows), rows_per_request)]
    result = LoadResult(requests=0, rows=0, concurrency=concurrency, seconds=0.0)
    lock, local = threading.Lock(), threading.local()
    deadline = time.monotonic() + time_limit

    def send(batch: list[dict[str, Any]]) -> None:
        if time.monotonic() > deadline:
            return
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        started = time.perf_counter()
        try:
            r = session.post(f"{api}/predict", json={"instances": batch}, timeout=120)
            status, ids = r.status_code, (r.json().get("prediction_ids") or []) if r.status_code == 200 else []
        except (requests.RequestException, ValueError):
            status, ids = 0, []
        elapsed = time.perf_counter() - started
        with lock:
            result.requests += 1
            result.rows += len(batch)
            result.latencies.append(elapsed)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            result.served_ids.update(ids)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(send, batches))
    result.seconds = time.perf_counter() - started
    return result


def captured_ids(s3: Any, bucket: str, prefix: str = "captures/") -> set[str]:
    """Every prediction id in every capture object (gzipped or not) under ``prefix``."""
    ids: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            data = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            ids.update(json.loads(line)["prediction_id"] for line in data.splitlines() if line.strip())
    return ids


def wait_for_captures(result: LoadResult, s3: Any, bucket: str, timeout: float = 60.0) -> None:
    """Read the captures until every served id is there (Firehose delivery is asynchronous) or timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result.captured_ids = captured_ids(s3, bucket)
        if not result.lost or time.monotonic() > deadline:
            return
        time.sleep(1.0)


def report(result: LoadResult) -> str:
    ms = lambda s: f"{s * 1000:.1f} ms"  # noqa: E731
    return "\n".join(
        [
            "| requests | rows | clients | errors | throughput | p50 | p90 | p99 | max | served | captured | lost |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            f"| {result.requests} | {result.rows} | {result.concurrency} | {result.errors} "
            f"| {result.requests / result.seconds:.1f} req/s ({result.rows / result.seconds:.0f} rows/s) "
            f"| {ms(result.percentile(50))} | {ms(result.percentile(90))} | {ms(result.percentile(99))} "
            f"| {ms(max(result.latencies))} | {len(result.served_ids)} "
            f"| {len(result.served_ids & result.captured_ids)} "
            f"| {len(result.lost)} |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _support import isolate_from_real_aws, machine, write_section

    from sklambda.lifecycle import training
    from sklambda.registry.store import ModelRegistry
    from sklambda_dev.local.stack import EmbeddedStack
    from tests.support.helpers import demo_rows, trained_demo

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--rows-per-request", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args(argv)
    n = 40 if args.quick else args.requests
    isolate_from_real_aws()
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedStack(
            ROOT / "template.yaml",
            port=0,
            stack_name="sklambda-bench-load",
            schedule_interval=None,
            alarm_interval=None,
            max_concurrency=args.concurrency,
            state_file=Path(tmp) / "local.json",
        ) as stack,
    ):
        registry = ModelRegistry(stack.client("s3"), stack.bucket("ModelBucket"))
        training.publish(registry, "demo", trained_demo(seed=0))
        registry.promote("demo", "1")
        rows = demo_rows(n * args.rows_per_request, seed=3)
        run_load(
            stack.api_url,
            rows[: args.concurrency * args.rows_per_request],
            rows_per_request=args.rows_per_request,
            concurrency=args.concurrency,
        )  # warm the workers
        result = run_load(stack.api_url, rows, rows_per_request=args.rows_per_request, concurrency=args.concurrency)
        wait_for_captures(result, stack.client("s3"), stack.bucket("CaptureBucket"))
    table = report(result)
    print(table)
    facts = machine()
    text = (
        "## Load: concurrent clients against the local stack over loopback (`benchmarks/bench_load.py`)\n\n"
        f"The local stack from template.yaml (gateway → up to {args.concurrency} predict worker processes → moto, "
        "capture to Firehose → capture bucket), demo model, warm workers, "
        f"{args.concurrency} clients with keep-alive on {facts.get('usable_cores', '?')} CPUs "
        f"({facts.get('cpu', '?')}). Latency is the client's, gateway and emulator included: the local runtime, "
        "not Lambda. Captured: every capture object in the capture bucket read back and its prediction ids "
        "compared with the ids served.\n\n" + table + "\n"
    )
    if not args.quick:
        write_section("load", text)
    return 0 if result.errors == 0 and not result.lost else 1


if __name__ == "__main__":
    raise SystemExit(main())
