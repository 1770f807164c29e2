"""Batch predictions S3 → S3 on the local stack (issue 12), and what the same job costs on AWS on paper.

    .venv/bin/python benchmarks/bench_batch.py               # 1,000,000 demo rows, 1 then 4 parallel children
    .venv/bin/python benchmarks/bench_batch.py --rows 200000 --part-rows 25000
    .venv/bin/python benchmarks/bench_batch.py --quick       # 40,000 rows; writes benchmarks/.work/RESULTS-quick.md

The local stack from template.yaml runs statemachine/batch.asl.json in moto's Step Functions
interpreter (a Distributed Map with a JSON ItemReader); its Lambda tasks run in local worker
processes with their template environments, S3 is moto (in this process). The demo model is the
serving benchmark's (RandomForest, 100 trees, max_depth 12, 20,000 training rows, lean runtime).
One CSV of N rows (an id column and the 12 features) is scored twice, with MaxConcurrency 1 and 4,
each run a fresh job (new workers: cold starts included). Every run is checked: rows in = scored +
rejected = N. Measured per run: wall time (the execution's start to stop), rows/s, each part's
scoring time and the peak RSS of the worker that scored it. Baselines in the same process: the
API's scoring path in-process (validator + lean model, 1,000-row requests' worth of dict rows) and
bare scikit-learn ``predict_proba`` on the same rows, one core.

The cost on paper uses the measured scoring seconds per row as Lambda's (the score function has
1,769 MB, one vCPU) and list prices stated in the section; SageMaker Batch Transform is estimated
for the same rows with the assumptions written next to it.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import resource
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

# List prices (USD, us-east-1, on-demand) used on paper: check the pricing pages before relying on them.
LAMBDA_GB_SECOND = 0.0000166667  # x86
LAMBDA_REQUEST = 0.20 / 1_000_000
SFN_TRANSITION = 0.025 / 1_000  # Standard workflows
S3_PUT = 0.005 / 1_000  # PUT, COPY, POST, LIST
S3_GET = 0.0004 / 1_000  # GET, HEAD
SAGEMAKER_M5_LARGE_HOUR = 0.115  # ml.m5.large (2 vCPU, 8 GiB), batch transform
SAGEMAKER_FIXED_MINUTES = 6.0  # billed instance start, container start and model load, per job (assumed)
SAGEMAKER_OVERHEAD = 2.0  # CSV parsing + HTTP mini-batches around predict_proba (assumed factor)

SCORE_MB, PLAN_MB, FINALIZE_MB = 1769, 1024, 512  # template.yaml
# Step Functions transitions (Standard): parent Plan, ScoreParts, Finalize, the Choice, Done; per part
# one for the child execution the Distributed Map starts plus its ScorePart task (entered, exited).
PARENT_TRANSITIONS, TRANSITIONS_PER_PART = 5, 3


def _log(message: str) -> None:
    print(f"[bench_batch] {message}", file=sys.stderr, flush=True)


def _csv(columns: dict[str, Any], names: list[str], integers: set[str]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["customer_id", *names])
    n = len(columns[names[0]])
    values = [columns[c].astype(int).tolist() if c in integers else columns[c].tolist() for c in names]
    writer.writerows(zip([f"c{i:07d}" for i in range(n)], *values, strict=True))
    return out.getvalue().encode()


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _baselines(model: Any, estimator: Any, instances: list[dict[str, Any]], matrix: Any) -> dict[str, float]:
    """rows/s in this process, one core: the API's scoring path (validator + lean model), and bare
    scikit-learn ``predict_proba`` on the fitted pipeline."""
    started = time.perf_counter()
    for i in range(0, len(instances), 1_000):
        model.predict(model.validator.to_matrix(instances[i : i + 1_000]))
    api = len(instances) / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(0, len(matrix), 10_000):
        estimator.predict_proba(matrix[i : i + 10_000])
    bare = len(matrix) / (time.perf_counter() - started)
    return {"api_path_rows_per_s": api, "sklearn_rows_per_s": bare}


def run_job(stack: Any, jobs: Any, uri: str, *, job: str, part_rows: int, concurrency: int) -> dict[str, Any]:
    cold_before = stack.function_stats("BatchScoreFunction")["cold_starts"]
    arn = jobs.start(
        {"model": "demo", "job": job, "input": uri, "id_column": "customer_id", "part_rows": part_rows,
         "max_concurrency": concurrency},
        name=f"{job}-run",
    )  # fmt: skip
    samples: list[float] = []

    def sample(progress: Any) -> None:
        samples.append(time.time())
        if progress.planned:
            _log(f"  {job}: {progress.parts_done}/{progress.parts} parts, {progress.rows_done:,} rows")

    described = jobs.wait(arn, f"output/{job}/", on_progress=sample, poll=0.5, timeout=6 * 3600)
    if described["status"] != "SUCCEEDED":
        raise SystemExit(f"{job}: {described['status']}: {jobs.failure(described)}")
    manifest = jobs.manifest(f"output/{job}/")
    assert manifest is not None
    assert manifest.rows.input == manifest.rows.scored + manifest.rows.rejected, manifest.rows
    s3 = jobs.s3
    listed = s3.list_objects_v2(Bucket=jobs.bucket, Prefix=f"output/{job}/parts/")["Contents"]
    records = [json.loads(s3.get_object(Bucket=jobs.bucket, Key=o["Key"])["Body"].read()) for o in listed]
    plan = jobs.plan(f"output/{job}/")
    assert plan is not None
    start, stop = _epoch(described["startDate"]), _epoch(described["stopDate"])
    part_ends = [_epoch(r["started_at"]) + r["seconds"] for r in records]
    seconds = [r["seconds"] for r in records]
    return {
        "job": job,
        "concurrency": concurrency,
        "rows": manifest.rows.input,
        "scored": manifest.rows.scored,
        "rejected": manifest.rows.rejected,
        "parts": len(records),
        "wall": stop - start,
        "plan": plan.planned_epoch - start,
        "finalize": max(0.0, stop - max(part_ends)),
        "part_seconds": seconds,
        "score_seconds": sum(seconds),
        "peak_rss_mb": [r["peak_rss_mb"] for r in records],
        "cold_starts": stack.function_stats("BatchScoreFunction")["cold_starts"] - cold_before,
        "retried": manifest.parts.retried,
    }


def cost_on_paper(run: dict[str, Any], rows: int) -> dict[str, float]:
    """USD for one job of ``rows`` rows scored like ``run`` (its seconds per row, its part size)."""
    scale = rows / run["rows"]
    parts = max(1, round(run["parts"] * scale))
    score_gb_s = run["score_seconds"] * scale * SCORE_MB / 1024
    other_gb_s = run["plan"] * scale * PLAN_MB / 1024 + run["finalize"] * FINALIZE_MB / 1024
    lambda_usd = (score_gb_s + other_gb_s) * LAMBDA_GB_SECOND + (parts + 2) * LAMBDA_REQUEST
    sfn_usd = (PARENT_TRANSITIONS + TRANSITIONS_PER_PART * parts) * SFN_TRANSITION
    # per part: its record looked up, its range read, predictions + rejects + record written, the record read
    # back by finalize; per job: the plan's reads and writes, one finalize listing per 1,000 keys, model loads
    gets = 3 * parts + 6 + 2 * run["cold_starts"]
    puts = 3 * parts + 3 + max(1, (3 * parts) // 1_000)
    s3_usd = gets * S3_GET + puts * S3_PUT
    return {"lambda": lambda_usd, "sfn": sfn_usd, "s3": s3_usd, "total": lambda_usd + sfn_usd + s3_usd,
            "gb_s": score_gb_s + other_gb_s, "parts": parts}  # fmt: skip


def sagemaker_on_paper(rows: int, sklearn_rows_per_s: float) -> dict[str, float]:
    scoring_hours = rows / (2 * sklearn_rows_per_s) * SAGEMAKER_OVERHEAD / 3600
    hours = SAGEMAKER_FIXED_MINUTES / 60 + scoring_hours
    return {"hours": hours, "scoring_hours": scoring_hours, "total": hours * SAGEMAKER_M5_LARGE_HOUR}


def report(runs: list[dict[str, Any]], base: dict[str, float], meta: dict[str, Any]) -> str:
    usd = lambda v: f"${v:.4f}" if v < 1 else f"${v:,.2f}"  # noqa: E731
    lines = [
        "## Batch scoring: S3 to S3 on a Distributed Map (`benchmarks/bench_batch.py`)",
        "",
        f"- **Date:** {meta['date']} (benchmark wall time {meta['bench_minutes']:.1f} min)",
        f"- **Machine:** {meta['machine']}; shared and noisy (1-minute load average {meta['load_start']:.1f} at the "
        f"start, {meta['load_end']:.1f} at the end)",
        f"- **Job:** {meta['rows']:,} rows of the demo churn data as one CSV ({meta['mb']:.1f} MB: an id column and "
        f"the 12 features), `demo` v1 (RandomForest, 100 trees, max_depth 12, lean runtime), parts of "
        f"{meta['part_rows']:,} rows, CSV output with probabilities and the id passed through; each run a new job "
        "(fresh workers: their cold starts and model loads are in the times)",
        "- **Where:** the local stack from template.yaml: the batch ASL in moto's Step Functions interpreter, each "
        "task a local worker process (one request at a time, up to 4 per function), S3 in moto in the benchmark's "
        "process. Timed from the execution's start to its stop (moto's dates)",
        f"- **Reproduce:** `.venv/bin/python benchmarks/bench_batch.py{meta['args']}`",
        "",
        "| parallel children | parts | wall | rows/s | plan | part scoring p50 / max | per row in a part | "
        "finalize | peak RSS per worker | cold starts | rows in = scored + rejected |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        per_row = r["score_seconds"] / r["rows"] * 1e6
        lines.append(
            f"| {r['concurrency']} | {r['parts']} | {r['wall']:.1f} s | {r['rows'] / r['wall']:,.0f} "
            f"| {r['plan']:.1f} s "
            f"| {statistics.median(r['part_seconds']):.2f} / {max(r['part_seconds']):.2f} s | {per_row:.0f} µs "
            f"| {r['finalize']:.1f} s | {max(r['peak_rss_mb']):.0f} MB | {r['cold_starts']} "
            f"| {r['rows']:,} = {r['scored']:,} + {r['rejected']:,} |"
        )
    one, four = runs[0], runs[-1]
    lines += [
        "",
        f"4 children against 1: {one['wall'] / four['wall']:.2f}× faster on {meta['cores']} cores (the workers, moto "
        "and the interpreter share them; on Lambda each child has its own vCPU). Baselines, same process, one core: "
        f"the API's scoring path (validation + lean model on dict rows, 1,000 per call) "
        f"{base['api_path_rows_per_s']:,.0f} rows/s; bare scikit-learn `predict_proba` "
        f"{base['sklearn_rows_per_s']:,.0f} rows/s. A part's time per row "
        f"({one['score_seconds'] / one['rows'] * 1e6:.0f} µs) "
        "adds what the API's path does not: reading the range, splitting rows, CSV cells to values, writing the CSV; "
        f"the benchmark process (moto holding every object) peaked at {meta['bench_rss_mb']:,.0f} MB.",
        "",
        "### Cost per million rows on AWS, on paper",
        "",
        "Prices (us-east-1, on-demand, list; check before relying on them): Lambda $0.0000166667 per GB-s and $0.20 "
        "per million requests; Step Functions Standard $0.025 per 1,000 state transitions; S3 $0.005 per 1,000 "
        f"PUT/LIST and $0.0004 per 1,000 GET; SageMaker ml.m5.large ${SAGEMAKER_M5_LARGE_HOUR}/hour.",
        "",
        "Lambda: the measured scoring seconds per row (1-child run) taken as the score function's duration at "
        f"{SCORE_MB:,} MB (one vCPU; this machine's core stands in for it), plan at {PLAN_MB:,} MB and finalize at "
        f"{FINALIZE_MB} MB for their measured times; {TRANSITIONS_PER_PART} transitions per part (the child execution "
        f"the Distributed Map starts, its task) plus {PARENT_TRANSITIONS} for the parent; per part 3 GETs and 3 PUTs.",
        f"SageMaker Batch Transform, the same rows on one ml.m5.large: {SAGEMAKER_FIXED_MINUTES:.0f} billed minutes "
        "per job for the instance, the scikit-learn container and the model load (assumed; jobs typically take "
        "several minutes before the first record), plus scoring at 2 vCPUs × the bare scikit-learn rows/s "
        f"measured above, × {SAGEMAKER_OVERHEAD:.0f} for CSV parsing and HTTP mini-batches (assumed).",
        "",
        "| job size | Lambda GB-s | Lambda | Step Functions | S3 requests | **sklambda batch** | per million rows "
        "| SageMaker instance-hours | **SageMaker Batch Transform** | per million rows |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in (1_000_000, 10_000_000, 100_000_000):
        c = cost_on_paper(one, size)
        s = sagemaker_on_paper(size, base["sklearn_rows_per_s"])
        lines.append(
            f"| {size:,} rows ({c['parts']:,} parts) | {c['gb_s']:,.0f} | {usd(c['lambda'])} | {usd(c['sfn'])} "
            f"| {usd(c['s3'])} | **{usd(c['total'])}** | {usd(c['total'] / size * 1e6)} | {s['hours']:.2f} "
            f"| **{usd(s['total'])}** | {usd(s['total'] / size * 1e6)} |"
        )
    c1, s1 = cost_on_paper(one, 1_000_000)["total"], sagemaker_on_paper(1_000_000, base["sklearn_rows_per_s"])["total"]
    lambda_per_row = cost_on_paper(one, 100_000_000)["total"] / 100_000_000
    fixed = SAGEMAKER_FIXED_MINUTES / 60 * SAGEMAKER_M5_LARGE_HOUR
    sagemaker_per_row = (sagemaker_on_paper(100_000_000, base["sklearn_rows_per_s"])["total"] - fixed) / 100_000_000
    if lambda_per_row > sagemaker_per_row:
        even = fixed / (lambda_per_row - sagemaker_per_row)
        crossover = (
            f"SageMaker's fixed {usd(fixed)} per job is paid back above about {even:,.0f} rows per job, where its "
            "per-row price (from an assumed container throughput) undercuts Lambda's"
        )
    else:
        crossover = "Lambda's per-row price is the lower one at every size here"
    lines += [
        "",
        f"For one million rows the batch job costs {usd(c1)} on paper against {usd(s1)} for Batch Transform "
        f"({c1 / s1:.1f}×); {crossover}. Both are cents per million rows; Lambda bills the seconds scored and "
        "nothing while idle, and its wall time shrinks with MaxConcurrency at the same cost, where more instances "
        "each pay the fixed minutes again.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from _support import WORK, isolate_from_real_aws, machine, write_section

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--part-rows", type=int, default=50_000)
    p.add_argument("--template", type=Path, default=ROOT / "template.yaml")
    args = p.parse_args(argv)
    rows = 40_000 if args.quick else args.rows
    part_rows = 10_000 if args.quick else args.part_rows
    isolate_from_real_aws()
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    started = time.time()
    load_start = os.getloadavg()[0]

    import boto3

    from sklambda.lifecycle import demo, training
    from sklambda.lifecycle.batch.jobs import BatchJobs
    from sklambda.registry.store import ModelRegistry
    from sklambda.serving.loader import load_version
    from sklambda_dev.local.stack import EmbeddedStack

    with EmbeddedStack(
        args.template,
        port=0,
        stack_name="sklambda-bench-batch",
        parameter_overrides={"BatchMaxConcurrency": "4"},
        schedule_interval=0,
        alarm_interval=0,
        max_concurrency=4,
    ) as stack:
        s3 = boto3.client("s3", endpoint_url=stack.endpoint_url, region_name="us-east-1")
        registry = ModelRegistry(s3, stack.bucket("ModelBucket"))
        _log("training the demo model (20,000 rows, 100 trees, depth 12)")
        columns, y = demo.generate(20_000, seed=0)
        trained = training.train(
            demo.to_matrix(columns), y, demo.DEMO_SCHEMA, task="classification", target=demo.TARGET,
            params={"n_estimators": 100, "max_depth": 12, "random_state": 0},
        )  # fmt: skip
        manifest = training.publish(registry, "demo", trained, description="batch benchmark")
        registry.promote("demo", manifest.version)
        _log(f"generating {rows:,} rows")
        columns, _ = demo.generate(rows, seed=123)
        integers = {f.name for f in demo.DEMO_SCHEMA.features if f.type == "integer"}
        body = _csv(columns, demo.DEMO_SCHEMA.names, integers)
        bucket = stack.bucket("BatchBucket")
        s3.put_object(Bucket=bucket, Key="input/bench/customers.csv", Body=body)
        uri = f"s3://{bucket}/input/bench/customers.csv"
        jobs = BatchJobs(s3, stack.client("stepfunctions"), bucket, stack.state_machine_arn("BatchStateMachine"))

        runs = []
        for concurrency in (1, 4):
            _log(f"job with {concurrency} parallel child(ren)")
            runs.append(
                run_job(stack, jobs, uri, job=f"bench-c{concurrency}", part_rows=part_rows, concurrency=concurrency)
            )
            _log(f"  {runs[-1]['wall']:.1f} s")

        _log("baselines in this process")
        sample = min(rows, 100_000)
        sample_columns = {k: v[:sample] for k, v in columns.items()}
        loaded = load_version(registry, registry.get_manifest("demo", manifest.version))
        instances, matrix = demo.to_instances(sample_columns), demo.to_matrix(sample_columns)
        base = _baselines(loaded, trained.estimator, instances, matrix)

    info = machine()
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "bench_minutes": (time.time() - started) / 60,
        "machine": f"{info['cpu'].split()[0]} {info['cpu'].split()[1] if len(info['cpu'].split()) > 1 else ''}, "
        f"{info['cores']} cores ({info['usable_cores']} usable), {info['ram_gib']:.1f} GiB RAM, {info['os']}",
        "cores": info["usable_cores"],
        "load_start": load_start,
        "load_end": os.getloadavg()[0],
        "rows": rows,
        "mb": len(body) / 1e6,
        "part_rows": part_rows,
        "bench_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "args": " --quick" if args.quick else (f" --rows {rows}" if rows != 1_000_000 else ""),
    }
    text = report(runs, base, meta)
    print(text)
    target = WORK / "RESULTS-quick.md" if args.quick else None
    if target is not None:
        WORK.mkdir(parents=True, exist_ok=True)
        write_section("batch", text, target)
    else:
        write_section("batch", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
