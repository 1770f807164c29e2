"""Batch step 3: verify every planned part from S3 itself, then write the manifest.

The Distributed Map's own status is not evidence: a child can fail and the map still succeed (moto
reports failed children as successes with null results; on AWS the map tolerates every failure
here so that this step always runs and names what is missing). So each planned part must have its
record, the record must count exactly the plan's rows (rows in = scored + rejected), name the
pinned version, and its predictions (and rejects) files must exist with the recorded sizes. Only
then is ``manifest.json`` written; otherwise the result names each missing part, its rows and the
last recorded error, and the state machine fails with that as its cause. Rerunning the same job
scores only those parts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sklambda.lifecycle.batch import layout
from sklambda.lifecycle.batch.models import (
    BatchInputError,
    BatchManifest,
    FinalizeInput,
    FinalizeResult,
    JobPlan,
    PartCounts,
    PartItem,
    PartProblem,
    PartRecord,
    RowCounts,
)
from sklambda.lifecycle.batch.store import BatchStore
from sklambda.registry.manifest import utcnow

READ_THREADS = 16
SHOWN_PROBLEMS = 10


class Finalizer:
    def __init__(self, store: BatchStore, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock

    def finalize(self, step: FinalizeInput) -> FinalizeResult:
        job = step.job
        prefix = job.output_prefix
        raw_plan = self.store.get_json(layout.plan_key(prefix))
        if raw_plan is None:
            raise BatchInputError(f"s3://{job.bucket}/{prefix} has no plan: nothing to finalize")
        plan = JobPlan.model_validate(raw_plan)
        done = self.store.get_json(layout.manifest_key(prefix))
        if done is not None:  # a rerun of a finished job: its account stands
            return _result(BatchManifest.model_validate(done), job.bucket, prefix)
        parts_body = self.store.get(plan.parts_key)
        if parts_body is None:
            raise BatchInputError(f"s3://{job.bucket}/{plan.parts_key} (the job's part list) is missing")
        parts = [PartItem.model_validate(p) for p in json.loads(parts_body)]
        listed = {o.key: o.size for o in self.store.list(prefix)}
        records = self._records(prefix, parts, listed)

        problems: list[PartProblem] = []
        for part in parts:
            record = records.get(part.part)
            reason = self._check(plan, part, record, listed) if record is not None else self._why_missing(prefix, part)
            if reason is not None:
                problems.append(
                    PartProblem(part=part.part, key=part.key, first_row=part.first_row, rows=part.rows, problem=reason)
                )
        if problems:
            return FinalizeResult(complete=False, problem=_describe(problems, len(parts), job.job), missing=problems)

        verified = [records[p.part] for p in parts]
        rows = RowCounts(
            input=sum(r.rows_in for r in verified),
            scored=sum(r.scored for r in verified),
            rejected=sum(r.rejected for r in verified),
            blank_lines=plan.blank_lines,
        )
        if rows.input != plan.rows or rows.scored + rows.rejected != rows.input:
            raise RuntimeError(f"job {job.job}: rows do not add up ({rows}) for a plan of {plan.rows} rows")
        this_run = sum(1 for r in verified if step.execution is not None and r.execution == step.execution)
        counts = PartCounts(
            total=len(parts),
            written_this_run=this_run,
            already_written=len(parts) - this_run,
            retried=sum(1 for r in verified if r.attempt > 0),
        )
        now = self._clock()
        executions = {r.execution for r in verified if r.execution} | ({step.execution} if step.execution else set())
        manifest = BatchManifest(
            job=job.job,
            input=plan.input,
            files=[f.model_dump(exclude={"header"}) for f in plan.files],
            model=job.model,
            version=job.version,
            pinned=plan.pinned,
            task=job.task,
            classes=job.classes,
            input_format=job.input_format,
            output_format=job.output_format,
            id_column=job.id_column,
            output=f"s3://{job.bucket}/{prefix}",
            predictions=[r.predictions.key for r in verified],
            rejects=[r.rejects.key for r in verified if r.rejects is not None],
            rows=rows,
            parts=counts,
            started_at=plan.planned_at,
            finished_at=utcnow(),
            duration_seconds=round(now - plan.planned_epoch, 3),
            executions=sorted(executions),
        )
        body = manifest.model_dump_json(indent=1).encode()
        if not self.store.create(layout.manifest_key(prefix), body, "application/json"):
            manifest = BatchManifest.model_validate(self.store.get_json(layout.manifest_key(prefix)))
        return _result(manifest, job.bucket, prefix)

    # ------------------------------------------------------------------------------ pieces
    def _records(self, prefix: str, parts: list[PartItem], listed: dict[str, int]) -> dict[int, PartRecord]:
        keys = {p.part: layout.record_key(prefix, p.part) for p in parts}
        present = {n: k for n, k in keys.items() if k in listed}

        def read(key: str) -> Any:
            return self.store.get_json(key)

        with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
            documents = dict(zip(present, pool.map(read, present.values()), strict=True))
        return {n: PartRecord.model_validate(d) for n, d in documents.items() if d is not None}

    @staticmethod
    def _check(plan: JobPlan, part: PartItem, record: PartRecord, listed: dict[str, int]) -> str | None:
        if (record.key, record.start, record.end) != (part.key, part.start, part.end):
            return f"its record describes another range ({record.key} {record.start}-{record.end})"
        if record.version != plan.job.version:
            return f"scored with v{record.version}, not the pinned v{plan.job.version}"
        if record.rows_in != part.rows or record.scored + record.rejected != record.rows_in:
            return (
                f"its record counts {record.rows_in} rows in, {record.scored} scored and {record.rejected} rejected "
                f"for {part.rows} planned rows"
            )
        if listed.get(record.predictions.key) != record.predictions.bytes:
            return f"its predictions file {record.predictions.key} is missing or has another size"
        if record.rejected and (record.rejects is None or listed.get(record.rejects.key) != record.rejects.bytes):
            return "its rejects file is missing or has another size"
        return None

    def _why_missing(self, prefix: str, part: PartItem) -> str:
        errors = [o.key for o in self.store.list(layout.errors_prefix(prefix, part.part))]
        if not errors:
            return "no output and no error recorded (the attempt crashed, timed out or never ran)"
        documents = [d for d in (self.store.get_json(k) for k in errors[-20:]) if isinstance(d, dict)]
        if not documents:
            return "no output"
        last = max(documents, key=lambda d: float(d.get("epoch") or 0))
        attempts = len(errors)
        return f"{last.get('error')}: {last.get('message')} ({attempts} failed attempt{'s' if attempts != 1 else ''})"


def _describe(problems: list[PartProblem], total: int, job: str) -> str:
    shown = "; ".join(
        f"part {p.part} (rows {p.first_row:,}-{p.first_row + max(p.rows, 1) - 1:,} of {p.key}): {p.problem}"
        for p in problems[:SHOWN_PROBLEMS]
    )
    more = f"; and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
    return (
        f"{len(problems)} of {total} part(s) of job {job} have no verified output: {shown}{more}. "
        "Rerun the same job (same output prefix) to score only those parts"
    )[:32_000]


def _result(manifest: BatchManifest, bucket: str, prefix: str) -> FinalizeResult:
    return FinalizeResult(
        complete=True,
        manifest=f"s3://{bucket}/{layout.manifest_key(prefix)}",
        rows=manifest.rows,
        parts=manifest.parts,
        version=manifest.version,
        duration_seconds=manifest.duration_seconds,
    )
