"""Bounded load on loopback: 2,000 rows in 400 requests, 8 concurrent clients, against the local stack.

Zero errors, and every served prediction id is in the captures (every capture object in the capture
bucket read back): nothing lost. No timing is asserted (a noisy 2-core machine); the figures are
printed, and benchmarks/bench_load.py records them in RESULTS.md.
"""

from __future__ import annotations

from benchmarks.bench_load import report, run_load, wait_for_captures
from tests.support.helpers import demo_rows


def test_400_concurrent_requests_no_error_nothing_lost(stack, api):
    rows = demo_rows(2000, seed=21)
    result = run_load(api, rows, rows_per_request=5, concurrency=8, time_limit=300)
    wait_for_captures(result, stack.client("s3"), stack.bucket("CaptureBucket"), timeout=60)
    print("\n" + report(result))
    assert result.requests == 400 and result.rows == 2000
    assert result.statuses == {200: 400}
    assert len(result.served_ids) == 2000
    assert not result.lost, f"{len(result.lost)} served prediction ids missing from the captures"
