"""Batch predictions end to end on the local stack: statemachine/batch.asl.json in moto's Step Functions
interpreter (a Distributed Map with a JSON ItemReader), its Lambda tasks reaching the real handlers in
worker processes, S3 in moto. Compared with the API over HTTP; a worker killed mid-part; a part that
keeps failing; the alias moving mid-job; the CLI."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from sklambda.lifecycle import training
from sklambda.lifecycle.batch.jobs import BatchJobs
from sklambda.lifecycle.demo import DEMO_SCHEMA
from sklambda.registry.store import ModelRegistry
from sklambda_dev.local.stack import EmbeddedStack
from tests.support.helpers import ROOT, demo_rows, trained_demo
from tests.support.wait import wait_for

pytestmark = pytest.mark.e2e

NAMES = DEMO_SCHEMA.names
CLI = [sys.executable, "-m", "sklambda_dev.cli"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[EmbeddedStack]:
    state = tmp_path_factory.mktemp("batch") / "local.json"
    with EmbeddedStack(
        ROOT / "template.yaml",
        port=0,
        stack_name="sklambda-batch-e2e",
        parameter_overrides={"BatchMaxConcurrency": "4"},
        state_file=state,
        schedule_interval=0,
        alarm_interval=0,
    ) as running:
        s3 = boto3.client("s3", endpoint_url=running.endpoint_url, region_name="us-east-1")
        registry = ModelRegistry(s3, running.bucket("ModelBucket"))
        training.publish(registry, "demo", trained_demo(seed=0))
        training.publish(registry, "demo", trained_demo(seed=5))
        registry.promote("demo", "1")
        yield running


@pytest.fixture(scope="module")
def jobs(stack: EmbeddedStack) -> BatchJobs:
    return BatchJobs(
        stack.client("s3"),
        stack.client("stepfunctions"),
        stack.bucket("BatchBucket"),
        stack.state_machine_arn("BatchStateMachine"),
    )


@pytest.fixture
def registry(stack: EmbeddedStack) -> Iterator[ModelRegistry]:
    registry = ModelRegistry(stack.client("s3"), stack.bucket("ModelBucket"))
    yield registry
    if registry.get_alias("demo").record.version != "1":
        registry.promote("demo", "1")


def csv_bytes(rows: list[dict[str, Any]], *, ids: bool = True, bad: dict[int, tuple[str, Any]] | None = None) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow((["id"] if ids else []) + NAMES)
    for i, row in enumerate(rows):
        values = dict(row)
        if bad and i in bad:
            values[bad[i][0]] = bad[i][1]
        writer.writerow(([f"id-{i}"] if ids else []) + [values[n] for n in NAMES])
    return out.getvalue().encode()


def run_job(stack: EmbeddedStack, jobs: BatchJobs, job: str, request: dict[str, Any], timeout: float = 600) -> dict:
    arn = jobs.start({"model": "demo", "job": job, **request}, name=f"{job}-{time.time_ns() % 10**9}")
    return stack.wait_execution(arn, timeout=timeout, poll=0.2)


def outputs(jobs: BatchJobs, prefix: str) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    manifest = jobs.manifest(prefix)
    assert manifest is not None
    get = jobs.s3.get_object
    scored = [
        row
        for key in manifest.predictions
        for row in csv.DictReader(io.StringIO(get(Bucket=jobs.bucket, Key=key)["Body"].read().decode()))
    ]
    rejects = [
        json.loads(line)
        for key in manifest.rejects
        for line in get(Bucket=jobs.bucket, Key=key)["Body"].read().decode().splitlines()
    ]
    return scored, rejects


def records(jobs: BatchJobs, prefix: str) -> list[dict[str, Any]]:
    listed = jobs.s3.list_objects_v2(Bucket=jobs.bucket, Prefix=f"{prefix}parts/").get("Contents", [])
    return [json.loads(jobs.s3.get_object(Bucket=jobs.bucket, Key=o["Key"])["Body"].read()) for o in listed]


def captured_objects(stack: EmbeddedStack) -> int:
    listed = stack.client("s3").list_objects_v2(Bucket=stack.bucket("CaptureBucket"), Prefix="captures/")
    return len(listed.get("Contents", []))


# ----------------------------------------------------------------------------- the happy path
def test_a_job_with_bad_rows_adds_up_and_answers_exactly_like_the_api(stack, jobs):
    rows = demo_rows(3_000, seed=21)
    bad = {4: ("age", "old"), 500: ("plan", "gold"), 1_999: ("income", "")}
    uri = f"s3://{jobs.bucket}/input/e2e/customers.csv"
    jobs.s3.put_object(Bucket=jobs.bucket, Key="input/e2e/customers.csv", Body=csv_bytes(rows, bad=bad))
    captures_before = captured_objects(stack)

    described = run_job(stack, jobs, "happy", {"input": uri, "id_column": "id", "part_rows": 700})

    assert described["status"] == "SUCCEEDED", described
    result = json.loads(described["output"])
    assert result["rows"] == {"input": 3_000, "scored": 2_997, "rejected": 3, "blank_lines": 0}
    assert result["parts"] == {"total": 5, "written_this_run": 5, "already_written": 0, "retried": 0}
    scored, rejects = outputs(jobs, "output/happy/")
    assert sorted(r["row"] for r in rejects) == [5, 501, 2_000]
    assert {r["errors"][0]["field"] for r in rejects} == {"age", "plan", "income"}
    assert [int(r["row"]) for r in scored] == [i + 1 for i in range(3_000) if i not in bad]
    assert captured_objects(stack) == captures_before, "batch rows are not live traffic: nothing captured"

    # the same rows through POST /models/demo/predict: the same labels and probabilities, bit for bit
    good = [rows[i] for i in range(3_000) if i not in bad]
    api_labels, api_probabilities = [], []
    for i in range(0, len(good), 1_000):
        answer = requests.post(
            f"{stack.api_url}/models/demo/predict", json={"instances": good[i : i + 1_000]}, timeout=60
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"]["version"] == "1"
        api_labels += answer.json()["predictions"]
        api_probabilities += answer.json()["probabilities"]
    assert [int(r["prediction"]) for r in scored] == api_labels
    assert [[float(r["probability_0"]), float(r["probability_1"])] for r in scored] == api_probabilities
    assert [r["id"] for r in scored][:3] == ["id-0", "id-1", "id-2"]

    manifest = jobs.manifest("output/happy/")
    assert manifest is not None and manifest.version == "1" and manifest.pinned == "alias"
    assert manifest.rows.input == manifest.rows.scored + manifest.rows.rejected == 3_000


def test_a_bad_request_fails_at_once_with_a_clear_error(stack, jobs):
    described = run_job(stack, jobs, "nothing", {"input": f"s3://{jobs.bucket}/input/none/x.csv"}, timeout=120)
    assert described["status"] == "FAILED"
    assert jobs.failure(described).startswith("BatchInputError: nothing to score")


# ----------------------------------------------------------------------------- failures
def test_a_part_whose_worker_is_killed_midway_is_retried_and_every_row_is_accounted_for(stack, jobs):
    rows = demo_rows(24_000, seed=22)
    jobs.s3.put_object(Bucket=jobs.bucket, Key="input/crash/x.csv", Body=csv_bytes(rows, ids=False))
    kills: list[int] = []
    done = threading.Event()

    def killer() -> None:
        # Kill the scoring worker while it is busy with a part, as an out-of-memory kill would.
        while not done.is_set() and len(kills) < 2:
            stats = stack.function_stats("BatchScoreFunction")
            if stats["busy"]:
                time.sleep(0.3)
                for pid in stack.function_stats("BatchScoreFunction")["worker_pids"]:
                    try:
                        os.kill(pid, signal.SIGKILL)
                        kills.append(pid)
                    except ProcessLookupError:
                        pass
                time.sleep(2.0)
            time.sleep(0.02)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        described = run_job(
            stack,
            jobs,
            "crash",
            {"input": f"s3://{jobs.bucket}/input/crash/x.csv", "part_rows": 4_000, "max_concurrency": 1},
        )
    finally:
        done.set()
        thread.join(timeout=10)
    assert kills, "the test never saw the scoring worker busy"
    assert described["status"] == "SUCCEEDED", described
    result = json.loads(described["output"])
    assert result["rows"]["input"] == result["rows"]["scored"] == 24_000
    assert result["parts"]["retried"] >= 1, result  # a killed attempt was retried by the ASL Retry
    attempts = {r["part"]: r["attempt"] for r in records(jobs, "output/crash/")}
    assert sorted(attempts) == list(range(6)) and max(attempts.values()) >= 1
    scored, rejects = outputs(jobs, "output/crash/")
    assert [int(r["row"]) for r in scored] == list(range(1, 24_001)) and not rejects


def test_a_part_that_keeps_failing_fails_the_job_naming_it_and_a_rerun_scores_only_it(stack, jobs):
    rows = demo_rows(4_000, seed=23)
    jobs.s3.put_object(Bucket=jobs.bucket, Key="input/stray/x.csv", Body=csv_bytes(rows, ids=False))
    stray = "output/stray/predictions/part-00002.csv"
    jobs.s3.put_object(Bucket=jobs.bucket, Key=stray, Body=b"not this job's\n")
    request = {"input": f"s3://{jobs.bucket}/input/stray/x.csv", "part_rows": 1_000}

    failed = run_job(stack, jobs, "stray", request)

    assert failed["status"] == "FAILED", failed
    assert failed["error"] == "BatchIncomplete"
    assert failed["cause"].startswith("1 of 4 part(s) of job stray have no verified output: part 2 (rows 2,001-3,000")
    assert "BatchConflict" in failed["cause"] and "Rerun the same job" in failed["cause"]
    assert jobs.manifest("output/stray/") is None
    assert sorted(r["part"] for r in records(jobs, "output/stray/")) == [0, 1, 3]

    jobs.s3.delete_object(Bucket=jobs.bucket, Key=stray)
    finished = run_job(stack, jobs, "stray", request)

    assert finished["status"] == "SUCCEEDED", finished
    result = json.loads(finished["output"])
    assert result["parts"] == {"total": 4, "written_this_run": 1, "already_written": 3, "retried": 0}
    assert result["rows"]["input"] == result["rows"]["scored"] == 4_000
    versions = jobs.s3.list_object_versions(Bucket=jobs.bucket, Prefix="output/stray/parts/")["Versions"]
    assert sorted(v["Key"] for v in versions) == [f"output/stray/parts/part-0000{i}.json" for i in range(4)]
    manifest = jobs.manifest("output/stray/")
    assert manifest is not None and len(manifest.executions) == 2


def test_the_alias_moving_mid_job_does_not_change_the_version_that_scores(stack, jobs, registry):
    rows = demo_rows(8_000, seed=24)
    jobs.s3.put_object(Bucket=jobs.bucket, Key="input/pin/x.csv", Body=csv_bytes(rows, ids=False))
    arn = jobs.start(
        {"model": "demo", "job": "pin", "input": f"s3://{jobs.bucket}/input/pin/x.csv", "part_rows": 1_000,
         "max_concurrency": 1},
        name="pin-run",
    )  # fmt: skip
    wait_for(lambda: jobs.plan("output/pin/"), timeout=120, interval=0.05, message="the job's plan")
    moved = time.time()
    registry.promote("demo", "2", reason="promoted while a batch job runs")
    described = stack.wait_execution(arn, timeout=600, poll=0.2)

    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"])["version"] == "1"
    found = records(jobs, "output/pin/")
    assert {r["version"] for r in found} == {"1"} and len(found) == 8
    started = sorted(
        time.mktime(time.strptime(r["started_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone for r in found
    )
    assert started[-1] >= moved - 1, "some part was scored after the alias moved"


# ----------------------------------------------------------------------------- the CLI
def test_sklambda_batch_uploads_a_local_file_follows_the_job_and_downloads_the_outputs(stack, tmp_path):
    rows = demo_rows(1_500, seed=25)
    source = tmp_path / "customers.csv"
    source.write_bytes(csv_bytes(rows, bad={7: ("satisfaction", "n/a")}))
    env = {**os.environ, "SKLAMBDA_STATE_FILE": str(stack.state_file), "PYTHONUNBUFFERED": "1"}
    target = tmp_path / "scored"
    result = subprocess.run(
        [*CLI, "batch", str(source), "--model", "demo", "--id-column", "id", "--part-rows", "400", "--output",
         str(target), "--job", "cli-job"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rows in 1,500 = scored 1,499 + rejected 1" in result.stdout
    assert "demo v1 (the alias's, pinned at the start); 4 part(s)" in result.stdout
    assert "4/4 parts, 1,500/1,500 rows" in result.stderr  # progress while it ran
    with (target / "predictions.csv").open() as fh:
        scored = list(csv.DictReader(fh))
    assert len(scored) == 1_499 and scored[7]["row"] == "9" and scored[0]["id"] == "id-0"
    reject = json.loads((target / "rejects.jsonl").read_text())
    assert reject["row"] == 8 and reject["id"] == "id-7" and reject["errors"][0]["field"] == "satisfaction"
    assert json.loads((target / "manifest.json").read_text())["rows"]["input"] == 1_500

    missing = subprocess.run(
        [*CLI, "batch", f"s3://{stack.bucket('BatchBucket')}/input/none.csv", "--model", "demo", "--wait"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert missing.returncode == 1 and "FAILED: BatchInputError: nothing to score" in missing.stdout


def test_the_batch_functions_answer_on_the_local_invoke_api_with_their_template_environment(stack):
    env = stack.function_env("BatchScoreFunction")
    assert env["BATCH_BUCKET"] == stack.bucket("BatchBucket") and "CAPTURE_STREAM" not in env
    assert Path(stack.template.function("BatchScoreFunction").code_uri).name == "batch_score"
