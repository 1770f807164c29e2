"""Running a batch job from outside the stack (the CLI, tests, benchmarks): upload, start, follow, fetch.

Progress is read from S3, not from the Distributed Map: the plan says how many parts there are and
each part's record appears when it is committed, on AWS and on the local stack alike.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sklambda.lifecycle.batch import layout
from sklambda.lifecycle.batch.models import BatchManifest, JobPlan, PartRecord


@dataclass(frozen=True)
class Progress:
    status: str  # the execution's
    planned: bool
    parts: int
    rows: int
    parts_done: int
    rows_done: int


class BatchJobs:
    """One stack's batch jobs: its batch bucket and batch state machine. Clients are injected."""

    def __init__(self, s3: Any, sfn: Any, bucket: str, state_machine_arn: str) -> None:
        self.s3 = s3
        self.sfn = sfn
        self.bucket = bucket
        self.state_machine_arn = state_machine_arn
        self._records: dict[str, dict[int, PartRecord]] = {}

    def upload(self, path: Path, job: str) -> str:
        """Put a local file under ``input/<job>/`` and return its S3 URI."""
        key = f"{layout.INPUT_ROOT}{job}/{path.name}"
        self.s3.upload_file(str(path), self.bucket, key)
        return f"s3://{self.bucket}/{key}"

    def output_uri(self, job: str) -> str:
        return f"s3://{self.bucket}/{layout.OUTPUT_ROOT}{job}/"

    def start(self, request: dict[str, Any], name: str) -> str:
        """Start an execution named ``name``; its ARN."""
        answer = self.sfn.start_execution(stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(request))
        return str(answer["executionArn"])

    def _json(self, key: str) -> Any:
        try:
            return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except self.s3.exceptions.NoSuchKey:
            return None

    def _keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(o["Key"] for o in page.get("Contents", []))
        return keys

    def plan(self, prefix: str) -> JobPlan | None:
        found = self._json(layout.plan_key(prefix))
        return None if found is None else JobPlan.model_validate(found)

    def progress(self, execution_arn: str, prefix: str) -> Progress:
        status = str(self.sfn.describe_execution(executionArn=execution_arn)["status"])
        plan = self.plan(prefix)
        if plan is None:
            return Progress(status, False, 0, 0, 0, 0)
        seen = self._records.setdefault(prefix, {})
        for key in self._keys(layout.records_prefix(prefix)):
            number = int(key.rsplit("-", 1)[-1].split(".")[0])
            if number not in seen:
                document = self._json(key)
                if document is not None:
                    seen[number] = PartRecord.model_validate(document)
        return Progress(status, True, plan.part_count, plan.rows, len(seen), sum(r.rows_in for r in seen.values()))

    def wait(
        self,
        execution_arn: str,
        prefix: str,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        poll: float = 1.0,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Follow the execution until it ends (reporting progress when it changes); its description."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: Progress | None = None
        while True:
            progress = self.progress(execution_arn, prefix)
            if on_progress is not None and progress != last:
                on_progress(progress)
            last = progress
            if progress.status != "RUNNING":
                described = self.sfn.describe_execution(executionArn=execution_arn)
                described.pop("ResponseMetadata", None)
                return dict(described)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{execution_arn} still running after {timeout} s")
            time.sleep(poll)

    def manifest(self, prefix: str) -> BatchManifest | None:
        found = self._json(layout.manifest_key(prefix))
        return None if found is None else BatchManifest.model_validate(found)

    @staticmethod
    def failure(described: dict[str, Any]) -> str:
        """Why an execution failed, in one readable line (a Lambda error's JSON cause unwrapped)."""
        error, cause = described.get("error") or "failed", described.get("cause") or ""
        try:
            parsed = json.loads(cause)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and "errorMessage" in parsed:
            error, cause = parsed.get("errorType") or error, parsed["errorMessage"]
        return f"{error}: {cause}" if cause else str(error)

    def download(self, manifest: BatchManifest, directory: Path) -> list[Path]:
        """The job's predictions as one file (parts in order, one CSV header), its rejects and manifest."""
        directory.mkdir(parents=True, exist_ok=True)
        predictions = directory / f"predictions.{manifest.output_format}"
        with predictions.open("wb") as out:
            for i, key in enumerate(manifest.predictions):
                body: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                if manifest.output_format == "csv" and i > 0:
                    body = body.split(b"\n", 1)[1] if b"\n" in body else b""
                out.write(body)
        written = [predictions]
        if manifest.rejects:
            rejects = directory / "rejects.jsonl"
            with rejects.open("wb") as out:
                for key in manifest.rejects:
                    out.write(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
            written.append(rejects)
        target = directory / "manifest.json"
        target.write_text(manifest.model_dump_json(indent=2) + "\n")
        written.append(target)
        return written
