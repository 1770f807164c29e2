"""The batch steps (plan → score each part → finalize) against moto's real S3 over HTTP.

The state machine that runs them is tested end to end on the local stack (tests/e2e/test_batch_job.py);
here each step is driven directly, so every failure mode can be set up exactly: bad rows of every
kind, a part that never ran, input changed after planning, a stray output file, the alias moving.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from sklambda.core.errors import ModelNotFound, VersionNotFound
from sklambda.lifecycle import training
from sklambda.lifecycle.batch.finalizer import Finalizer
from sklambda.lifecycle.batch.models import (
    BatchConflict,
    BatchInputError,
    BatchSettings,
    FinalizeInput,
    FinalizeResult,
    PartItem,
    PlanInput,
    PlanResult,
    ScoreInput,
)
from sklambda.lifecycle.batch.planner import Planner
from sklambda.lifecycle.batch.scorer import ModelCache, PartScorer
from sklambda.lifecycle.batch.store import BatchStore
from sklambda.lifecycle.demo import DEMO_SCHEMA
from sklambda.registry.store import ModelRegistry
from sklambda.serving.service import ModelService
from tests.support.helpers import demo_rows, trained_demo

NAMES = DEMO_SCHEMA.names


class Batch:
    """A batch bucket of its own, the module's registry (demo v1 in production, v2 beside it), the three steps."""

    def __init__(self, s3: Any, registry: ModelRegistry) -> None:
        self.s3 = s3
        self.models, self.bucket = registry.bucket, f"batch-{uuid.uuid4().hex[:10]}"
        s3.create_bucket(Bucket=self.bucket)
        s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        self.registry = registry
        self.settings = BatchSettings(batch_bucket=self.bucket, model_bucket=self.models)
        self.store = BatchStore(s3, self.bucket)
        self.planner = Planner(self.store, self.registry, self.settings)
        self.scorer = PartScorer(self.store, ModelCache(self.registry))
        self.finalizer = Finalizer(self.store)

    def put(self, key: str, body: bytes) -> str:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        return f"s3://{self.bucket}/{key}"

    def plan(self, execution: str = "run-1", **request: Any) -> PlanResult:
        return self.planner.plan(PlanInput(request={"model": "demo", **request}, execution=execution))

    def parts(self, plan: PlanResult) -> list[PartItem]:
        return [PartItem.model_validate(p) for p in json.loads(self.store.get(plan.parts.key) or b"[]")]

    def score(self, plan: PlanResult, part: PartItem, execution: str = "run-1", attempt: int = 0) -> Any:
        return self.scorer.score(ScoreInput(job=plan.job, part=part, execution=execution, attempt=attempt))

    def finalize(self, plan: PlanResult, execution: str = "run-1") -> FinalizeResult:
        return self.finalizer.finalize(FinalizeInput(job=plan.job, execution=execution))

    def run(self, execution: str = "run-1", **request: Any) -> tuple[PlanResult, FinalizeResult]:
        plan = self.plan(execution, **request)
        for part in self.parts(plan):
            self.score(plan, part, execution)
        return plan, self.finalize(plan, execution)

    def text(self, key: str) -> str:
        return (self.store.get(key) or b"").decode()

    def jsonl(self, key: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text(key).splitlines() if line]

    def outputs(self, plan: PlanResult) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=plan.job.output_prefix).get("Contents", [])
        return sorted(o["Key"] for o in listed)


@pytest.fixture(scope="module")
def demo_registry(moto_server) -> ModelRegistry:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    bucket = f"models-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    registry = ModelRegistry(s3, bucket, sleep=lambda _s: None)
    training.publish(registry, "demo", trained_demo(seed=0))
    training.publish(registry, "demo", trained_demo(seed=5))
    registry.promote("demo", "1")
    return registry


@pytest.fixture
def batch(s3, demo_registry) -> Iterator[Batch]:
    yield Batch(s3, demo_registry)
    if demo_registry.get_alias("demo").record.version != "1":  # a test moved the alias
        demo_registry.promote("demo", "1")


def csv_text(rows: list[list[Any]], header: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def api_answers(registry: ModelRegistry, instances: list[dict[str, Any]]) -> tuple[str, list[Any], list[Any]]:
    """What POST /models/demo/predict answers for these rows: the predict function's scoring call."""
    answer = ModelService(registry, alias="production", check_seconds=0, max_batch_rows=100_000).predict(
        "demo", instances
    )
    return answer.model.version, answer.predictions, answer.probabilities or []


# ----------------------------------------------------------------------------- every row accounted for
def test_csv_with_bad_rows_of_every_kind_adds_up_and_matches_the_api(batch):
    rows = demo_rows(1_200, seed=7)
    body = io.StringIO()
    writer = csv.writer(body, lineterminator="\n")
    writer.writerow(["customer id", *NAMES])
    bad: dict[int, str] = {}  # data row number -> the field the reject must name ("" = the row)
    for i, row in enumerate(rows):
        cells: list[Any] = [f"c-{i}", *[row[n] for n in NAMES]]
        number = i + 1
        if i == 3:
            cells[1], bad[number] = "forty", "age"  # not a number
        elif i == 10:
            cells[9], bad[number] = "platinum", "plan"  # unknown category
        elif i == 11:
            cells[2], bad[number] = "", "income"  # empty = null, income is not nullable
        elif i == 12:
            cells[1], bad[number] = "41.5", "age"  # an integer with a fraction
        elif i == 13:
            cells[4], bad[number] = "NaN", "monthly_spend"  # not finite
        elif i == 14:
            cells, bad[number] = cells[:-1], ""  # a cell short
        elif i == 15:
            cells[0] = "c-15\nwith a newline"  # quoted newline in the id: still one valid row
        writer.writerow(cells)
    text = body.getvalue().replace("c-20,", "\n\nc-20,", 1)  # two blank lines: counted, never rows
    text = text.replace("\nc-28,", '\n"c-28"x,', 1)  # not CSV: that one record is rejected
    text = text.replace("\nc-48,", "\nc-48 5'11\",", 1)  # a quote inside a field is just a character
    data = text.encode()
    data = data.replace(b"c-40,", b"c-40\xff,", 1)  # not UTF-8
    uri = batch.put("input/t/customers.csv", data)

    plan, result = batch.run(input=uri, id_column="customer id", part_rows=250)

    assert result.complete, result.problem
    assert result.rows is not None
    assert result.rows.input == plan.rows == result.rows.scored + result.rows.rejected
    assert result.rows.blank_lines == 2
    prefix = plan.job.output_prefix
    manifest = json.loads(batch.text(f"{prefix}manifest.json"))
    rejects = [r for key in manifest["rejects"] for r in batch.jsonl(key)]
    scored = [r for key in manifest["predictions"] for r in csv.DictReader(io.StringIO(batch.text(key)))]
    assert len(rejects) == result.rows.rejected and len(scored) == result.rows.scored
    assert {r["row"] for r in rejects} | {int(r["row"]) for r in scored} == set(range(1, plan.rows + 1))
    by_row = {r["row"]: r for r in rejects}
    for number, field in bad.items():
        assert [e["field"] for e in by_row[number]["errors"]] == [field], by_row[number]
        assert by_row[number]["customer id"] == f"c-{number - 1}"
    assert by_row[4]["errors"][0] == {"field": "age", "message": "expected a number, got string", "value": "forty"}
    assert [e["message"][:14] for r in rejects if r["raw"].startswith("c-40") for e in r["errors"]] == [
        "not UTF-8 text"
    ]
    assert any("CSV" in e["message"] for r in rejects for e in r["errors"])  # the stray quote
    assert len(rejects) == len(bad) + 2
    assert by_row[4]["line"] == 5  # physical line numbers count the header

    # the scored rows answer exactly what the API answers for the same rows, in input order per part
    good = [i for i in range(1_200) if (i + 1) in {int(r["row"]) for r in scored}]
    version, predictions, probabilities = api_answers(batch.registry, [rows[i] for i in good])
    assert version == plan.job.version == "1"
    assert [int(r["prediction"]) for r in scored] == predictions
    assert [[float(r["probability_0"]), float(r["probability_1"])] for r in scored] == probabilities
    ids = {r["row"]: r["customer id"] for r in scored}
    assert ids["16"] == "c-15\nwith a newline" and ids["49"] == "c-48 5'11\""


def test_json_lines_with_an_id_key_and_bad_lines(batch):
    rows = demo_rows(300, seed=3)
    lines = [json.dumps({"id": i, **row}) for i, row in enumerate(rows)]
    lines[5] = "{not json"
    lines[6] = json.dumps({"id": 6, **rows[6], "surprise": 1})  # an unknown feature, as the API refuses it
    lines[7] = json.dumps([1, 2, 3])  # a list of the wrong length
    uri = batch.put("input/j/rows.jsonl", ("\n".join(lines) + "\n\n").encode())

    plan, result = batch.run(input=uri, id_column="id", part_rows=128)

    assert result.complete and result.rows is not None
    assert (result.rows.input, result.rows.scored, result.rows.rejected, result.rows.blank_lines) == (300, 297, 3, 1)
    manifest = json.loads(batch.text(f"{plan.job.output_prefix}manifest.json"))
    scored = [r for key in manifest["predictions"] for r in batch.jsonl(key)]
    rejects = {r["row"]: r for key in manifest["rejects"] for r in batch.jsonl(key)}
    assert rejects[6]["errors"][0]["message"].startswith("not valid JSON")
    assert rejects[7]["errors"][0]["field"] == "surprise" and rejects[7]["id"] == 6
    assert "expected 12 values" in rejects[8]["errors"][0]["message"]
    keep = [r["id"] for r in scored]
    _version, predictions, probabilities = api_answers(batch.registry, [rows[i] for i in keep])
    assert [r["prediction"] for r in scored] == predictions
    assert [r["probabilities"] for r in scored] == probabilities
    assert manifest["classes"] == [0, 1]


def test_parts_split_by_bytes_end_on_row_boundaries(batch):
    rows = demo_rows(500, seed=1)
    uri = batch.put("input/b/x.csv", csv_text([[r[n] for n in NAMES] for r in rows], NAMES).encode())
    plan = batch.plan(input=uri, part_bytes=4096, part_rows=1_000_000)
    parts = batch.parts(plan)
    assert len(parts) > 5
    assert sum(p.rows for p in parts) == 500
    data = batch.store.get("input/b/x.csv") or b""
    for part in parts:
        assert data[part.end - 1 : part.end] == b"\n"  # a part ends right after a line end
        assert part.end - part.start < 4096 + 200
    assert [p.first_row for p in parts] == [1] + [sum(q.rows for q in parts[:i]) + 1 for i in range(1, len(parts))]


def test_a_prefix_of_files_skips_hidden_and_empty_objects_and_names_the_file(batch):
    rows = demo_rows(90, seed=2)
    for i, chunk in enumerate((rows[:40], rows[40:])):
        batch.put(f"input/p/day-{i}.csv", csv_text([[r[n] for n in NAMES] for r in chunk], NAMES).encode())
    batch.put("input/p/_SUCCESS", b"")
    batch.put("input/p/empty.csv", b"")

    plan, result = batch.run(input=f"s3://{batch.bucket}/input/p/", output_format="jsonl")

    assert result.complete and result.rows is not None and result.rows.input == 90
    plan_doc = json.loads(batch.text(f"{plan.job.output_prefix}_job/plan.json"))
    assert [f["key"] for f in plan_doc["files"]] == ["input/p/day-0.csv", "input/p/day-1.csv"]
    assert {s["key"] for s in plan_doc["skipped"]} == {"input/p/_SUCCESS", "input/p/empty.csv"}
    manifest = json.loads(batch.text(f"{plan.job.output_prefix}manifest.json"))
    lines = [r for key in manifest["predictions"] for r in batch.jsonl(key)]
    assert [(r["file"], r["row"]) for r in lines][39:41] == [("input/p/day-0.csv", 40), ("input/p/day-1.csv", 1)]


# ----------------------------------------------------------------------------- reruns and failures
def test_a_rerun_finishes_a_half_done_job_without_scoring_anything_twice(batch):
    rows = demo_rows(1_000, seed=4)
    uri = batch.put("input/r/x.csv", csv_text([[r[n] for n in NAMES] for r in rows], NAMES).encode())
    plan = batch.plan("first", input=uri, output=f"s3://{batch.bucket}/output/resume-me/", part_rows=200)
    parts = batch.parts(plan)
    for part in parts[:2]:  # the first run dies after two parts
        batch.score(plan, part, "first")

    half = batch.finalize(plan, "first")
    assert not half.complete
    assert [m.part for m in half.missing] == [2, 3, 4]
    assert "3 of 5 part(s)" in (half.problem or "") and "part 2 (rows 401-600 of input/r/x.csv)" in (half.problem or "")
    assert "no output and no error recorded" in (half.problem or "")

    again = batch.plan("second", input=uri, output=f"s3://{batch.bucket}/output/resume-me/")
    assert again.resumed and again.parts == plan.parts and again.job == plan.job
    results = [batch.score(again, part, "second") for part in parts]
    assert [r.skipped for r in results] == [True, True, False, False, False]
    done = batch.finalize(again, "second")
    assert done.complete and done.parts is not None and done.rows is not None
    assert (done.parts.already_written, done.parts.written_this_run, done.rows.input) == (2, 3, 1_000)
    manifest = json.loads(batch.text(f"{plan.job.output_prefix}manifest.json"))
    assert manifest["executions"] == ["first", "second"]

    # one version of every output object: nothing was written twice
    versions = batch.s3.list_object_versions(Bucket=batch.bucket, Prefix=plan.job.output_prefix)["Versions"]
    keys = [v["Key"] for v in versions if "/_job/" not in v["Key"]]
    assert len(keys) == len(set(keys)) == 5 * 2 + 1  # predictions + records, and the manifest

    # finalizing again (a retried task, a third run) keeps the same account
    assert batch.finalize(again, "third") == done


def test_the_version_is_pinned_when_the_job_is_planned_even_if_the_alias_moves(batch):
    rows = demo_rows(600, seed=8)
    uri = batch.put("input/v/x.csv", csv_text([[r[n] for n in NAMES] for r in rows], NAMES).encode())
    plan = batch.plan(input=uri, part_rows=200, output=f"s3://{batch.bucket}/output/pinned/")
    assert plan.job.version == "1"
    parts = batch.parts(plan)
    batch.score(plan, parts[0])
    batch.registry.promote("demo", "2")  # mid-job
    rerun = batch.plan("run-2", input=uri, output=f"s3://{batch.bucket}/output/pinned/")
    assert rerun.job.version == "1" and rerun.resumed
    for part in parts[1:]:
        batch.score(rerun, part, "run-2")
    result = batch.finalize(rerun, "run-2")
    assert result.complete and result.version == "1"
    manifest = json.loads(batch.text(f"{plan.job.output_prefix}manifest.json"))
    scored = [r for key in manifest["predictions"] for r in csv.DictReader(io.StringIO(batch.text(key)))]
    batch.registry.promote("demo", "1")
    _v, _p, v1 = api_answers(batch.registry, rows)
    batch.registry.promote("demo", "2")
    _v, _p, v2 = api_answers(batch.registry, rows)
    assert [float(r["probability_1"]) for r in scored] == [p[1] for p in v1] != [p[1] for p in v2]
    with pytest.raises(BatchInputError, match="planned with version=None; this run asks for '2'"):
        batch.plan("run-3", input=uri, version="2", output=f"s3://{batch.bucket}/output/pinned/")


def test_input_changed_after_planning_is_never_scored_and_the_part_is_named(batch):
    rows = demo_rows(400, seed=9)
    uri = batch.put("input/c/x.csv", csv_text([[r[n] for n in NAMES] for r in rows], NAMES).encode())
    output = f"s3://{batch.bucket}/output/changing/"
    plan = batch.plan(input=uri, part_rows=200, output=output)
    parts = batch.parts(plan)
    batch.score(plan, parts[0])
    batch.put("input/c/x.csv", csv_text([[r[n] for n in NAMES] for r in rows[::-1]], NAMES).encode())
    with pytest.raises(BatchInputError, match="changed or disappeared after the job was planned"):
        batch.score(plan, parts[1], attempt=0)
    result = batch.finalize(plan)
    assert not result.complete and [m.part for m in result.missing] == [1]
    assert "BatchInputError" in result.missing[0].problem and "1 failed attempt" in result.missing[0].problem
    with pytest.raises(BatchInputError, match="changed since it was planned"):
        batch.plan("run-2", input=uri, output=output)


def test_an_output_file_with_other_content_is_never_overwritten(batch):
    rows = demo_rows(400, seed=10)
    uri = batch.put("input/o/x.csv", csv_text([[r[n] for n in NAMES] for r in rows], NAMES).encode())
    plan = batch.plan(input=uri, part_rows=200)
    stray = f"{plan.job.output_prefix}predictions/part-00001.csv"
    batch.put(stray, b"someone else's file\n")
    parts = batch.parts(plan)
    batch.score(plan, parts[0])
    with pytest.raises(BatchConflict, match="already exists with other content"):
        batch.score(plan, parts[1])
    assert batch.text(stray) == "someone else's file\n"
    result = batch.finalize(plan)
    assert [m.part for m in result.missing] == [1] and "BatchConflict" in (result.problem or "")
    batch.s3.delete_object(Bucket=batch.bucket, Key=stray)  # the user removes it; the rerun finishes the job
    batch.score(plan, parts[1], "run-2")
    assert batch.finalize(plan, "run-2").complete


# ----------------------------------------------------------------------------- refused before scoring
@pytest.mark.parametrize(
    ("request_", "error", "message"),
    [
        ({"input": "s3://elsewhere/input/x.csv"}, BatchInputError, "not under s3://"),
        ({"input": "{bucket}/input/none.csv"}, BatchInputError, "nothing to score"),
        ({"input": "{bucket}/input/h/x.csv", "model": "nope"}, ModelNotFound, "no 'production' alias"),
        ({"input": "{bucket}/input/h/x.csv", "version": "9"}, VersionNotFound, "no version '9'"),
        ({"input": "{bucket}/input/h/wrong.csv"}, BatchInputError, "'colour' are not features"),
        ({"input": "{bucket}/input/h/x.txt"}, BatchInputError, "cannot tell the format"),
        ({"input": "{bucket}/input/h/x.csv", "output": "s3://elsewhere/out/"}, BatchInputError, "not a prefix under"),
        ({"input": "{bucket}/input/h/x.csv", "id_column": "row"}, BatchInputError, "name of an output column"),
    ],
)
def test_a_job_that_cannot_run_is_refused_with_a_clear_4xx_error_and_writes_nothing(batch, request_, error, message):
    header = ",".join(NAMES)
    batch.put("input/h/x.csv", f"{header}\n".encode())
    batch.put("input/h/x.txt", b"hello\n")
    batch.put("input/h/wrong.csv", f"{header},colour\n".encode())
    request_ = {k: v.replace("{bucket}", f"s3://{batch.bucket}") for k, v in request_.items()}
    with pytest.raises(error, match=message) as caught:
        batch.plan(**{"model": "demo", **request_})
    assert 400 <= caught.value.status < 500
    assert not batch.s3.list_objects_v2(Bucket=batch.bucket, Prefix="output/").get("Contents")
