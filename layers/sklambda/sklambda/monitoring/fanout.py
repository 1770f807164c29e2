"""A drift run too big for one invocation, as a Step Functions Distributed Map (statemachine/drift.asl.json).

When a run's window holds more unread capture objects than ``DriftMaxObjectsPerRun``, the scheduled
drift function does not read them itself; it *plans*:

1. **Plan** (the drift function, ``DriftJob.run``): the unread keys, sorted, cut into batches of at
   most ``max_objects`` keys, written as one JSON array object
   (``state/fanout/<run>/batches.json``, the Map's ItemReader: no JSONL reader, no ItemBatcher
   needed); a **lease** is written into ``state/drift.json`` with the same conditional write as
   every commit (a concurrent run loses, and runs that see a live lease do nothing), then the
   execution is started, named after the run.
2. **Read** (a Distributed Map of ``functions/drift_batch``): each child reads its batch with the
   same reader as a single run and writes its **partial** (per-version ``DriftAggregate.to_dict``,
   line/row/bad-line counters, the keys it read) to ``state/fanout/<run>/partials/<index>.json``.
   A child is deterministic, so a retried or duplicated child writes the same partial.
3. **Reduce** (the drift function again, ``DriftJob.run(resume=...)``): every partial must be
   there and name exactly its batch's keys: the Map's status is never trusted (moto's interpreter
   reports a map whose children failed as succeeded). The partials are merged exactly (integer
   counts, exact sums) into the pending aggregates, then the run ends as any run: evaluate, reports,
   the conditional commit (If-Match on the lease's ETag; it also drops the lease), metrics.
   A missing partial fails the run and releases the lease: nothing is committed, the next scheduled
   run plans again. A reduce retried after its commit finds ``last_run`` is its own and does nothing.

A lease is live while its execution is RUNNING (and younger than ``LEASE_HOURS``); a scheduled run
that finds a dead one (failed, aborted, timed out, or unknown past the age) takes over.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field

from sklambda.core.errors import RegistryError, SklambdaError
from sklambda.core.s3 import error_code
from sklambda.core.settings import EnvSettings

FANOUT_PREFIX = "state/fanout/"
PARTIAL_FORMAT = 1
LEASE_HOURS = 6
RUN_ID_PATTERN = r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$"


class MissingPartials(SklambdaError):
    """A fan-out run's reduce found batches without a (matching) partial: nothing was committed."""

    code = "missing_partials"


class FanoutSettings(EnvSettings):
    """The drift functions' fan-out settings (template.yaml: DriftMaxObjectsPerRun, DriftStateMachine)."""

    capture_bucket: Annotated[str, Field(min_length=3)]
    drift_max_objects_per_run: Annotated[int, Field(ge=1)] = 500
    drift_fanout_concurrency: Annotated[int, Field(ge=1, le=10_000)] = 20
    drift_state_machine_arn: str | None = None


class FanoutBatch(BaseModel):
    """One item of ``batches.json``: the keys one child reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: Annotated[int, Field(ge=0)]
    keys: list[str]


class FanoutRun(BaseModel):
    """The execution's input: which run, when it was planned, where its batches are."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    run_id: Annotated[str, Field(pattern=RUN_ID_PATTERN)]
    planned_at: datetime  # the run's "now": window and reports as if one invocation did it all
    bucket: str
    batches_key: str
    batches: Annotated[int, Field(ge=1)]
    objects: Annotated[int, Field(ge=1)]
    max_concurrency: Annotated[int, Field(ge=1)] = 20  # children at once (the Map's MaxConcurrencyPath)


class BatchRequest(BaseModel):
    """What the Map hands a child (the ASL's ItemSelector)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    run_id: Annotated[str, Field(pattern=RUN_ID_PATTERN)]
    batch: FanoutBatch


class PartialAggregate(BaseModel):
    model: str
    version: str
    aggregate: dict[str, Any]


class Partial(BaseModel):
    """A child's result: what it read and counted. Merging partials is exact (aggregates merge exactly)."""

    model_config = ConfigDict(extra="forbid")

    format: int = PARTIAL_FORMAT
    run_id: str
    index: int
    keys: list[str]
    objects_read: int
    lines_read: int
    rows_counted: int
    bad_lines: dict[str, int]
    skipped_rows: dict[str, int]
    aggregates: list[PartialAggregate]


def run_prefix(run_id: str) -> str:
    return f"{FANOUT_PREFIX}{run_id}/"


def partial_key(run_id: str, index: int) -> str:
    return f"{run_prefix(run_id)}partials/{index:05d}.json"


def batches(keys: list[str], size: int) -> list[FanoutBatch]:
    """``keys`` (already sorted) in consecutive batches of at most ``size``."""
    return [FanoutBatch(index=i, keys=keys[start : start + size]) for i, start in enumerate(range(0, len(keys), size))]


class FanoutStore:
    """The fan-out's objects in the capture bucket (under ``state/fanout/``)."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def _put(self, key: str, document: Any) -> None:
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=json.dumps(document, separators=(",", ":")).encode(),
                ContentType="application/json",
            )
        except (ClientError, BotoCoreError) as err:
            raise RegistryError(f"could not write s3://{self.bucket}/{key}: {err}") from err

    def _get(self, key: str) -> Any | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as err:
            if error_code(err) in {"NoSuchKey", "404", "NotFound"}:
                return None
            raise RegistryError(f"could not read s3://{self.bucket}/{key}: {err}") from err
        except BotoCoreError as err:
            raise RegistryError(f"could not read s3://{self.bucket}/{key}: {err}") from err
        return json.loads(body)

    def write_batches(self, run_id: str, items: list[FanoutBatch]) -> str:
        key = f"{run_prefix(run_id)}batches.json"
        self._put(key, [item.model_dump() for item in items])
        return key

    def read_batches(self, key: str) -> list[FanoutBatch]:
        found = self._get(key)
        if not isinstance(found, list):
            raise MissingPartials(f"the fan-out's batch list s3://{self.bucket}/{key} is missing")
        return [FanoutBatch.model_validate(item) for item in found]

    def write_partial(self, partial: Partial) -> str:
        key = partial_key(partial.run_id, partial.index)
        self._put(key, partial.model_dump(mode="json"))
        return key

    def read_partial(self, run_id: str, index: int) -> Partial | None:
        found = self._get(partial_key(run_id, index))
        return None if found is None else Partial.model_validate(found)


# ----------------------------------------------------------------------------------- the lease
@dataclass(frozen=True)
class Lease:
    run_id: str
    execution: str
    since: datetime

    @classmethod
    def of(cls, state: Mapping[str, Any]) -> Lease | None:
        found = state.get("fanout")
        if not isinstance(found, Mapping):
            return None
        try:
            return cls(str(found["run_id"]), str(found["execution"]), datetime.fromisoformat(str(found["since"])))
        except (KeyError, ValueError):
            return None

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "execution": self.execution, "since": self.since.isoformat()}


ExecutionStatus = Callable[[str], str | None]  # execution name → RUNNING | SUCCEEDED | FAILED | ... | None


def lease_is_live(lease: Lease, now: datetime, status: ExecutionStatus | None) -> bool:
    """A live lease: its execution still runs (unknown counts as running) and it is not too old."""
    if now - lease.since > timedelta(hours=LEASE_HOURS):
        return False
    if status is None:
        return True
    try:
        found = status(lease.execution)
    except Exception:  # cannot tell: do not step on a run that may be alive
        return True
    return found in (None, "RUNNING")


class Fanout:
    """What ``DriftJob`` needs to fan a run out: the threshold, the store and the state machine."""

    def __init__(
        self,
        store: FanoutStore,
        *,
        max_objects: int,
        start: Callable[[str, FanoutRun], str] | None,
        status: ExecutionStatus | None = None,
        concurrency: int = 20,
    ) -> None:
        self.store = store
        self.max_objects = max_objects
        self.concurrency = concurrency
        self.start = start  # (execution name, input) → execution ARN; None: never fan out
        self.status = status

    def wants(self, objects: int) -> bool:
        return self.start is not None and objects > self.max_objects


def sfn_starter(client: Any, state_machine_arn: str) -> Callable[[str, FanoutRun], str]:
    def start(name: str, run: FanoutRun) -> str:
        response = client.start_execution(stateMachineArn=state_machine_arn, name=name, input=run.model_dump_json())
        return str(response["executionArn"])

    return start


def sfn_status(client: Any, state_machine_arn: str) -> ExecutionStatus:
    """Execution name → its status (DescribeExecution); ``ABSENT`` when Step Functions has no such execution."""
    prefix = state_machine_arn.replace(":stateMachine:", ":execution:", 1) + ":"

    def status(name: str) -> str | None:
        try:
            return str(client.describe_execution(executionArn=prefix + name)["status"])
        except ClientError as err:
            if error_code(err) == "ExecutionDoesNotExist":
                return "ABSENT"
            raise

    return status


def merge_partials(
    run: FanoutRun,
    store: FanoutStore,
    add: Callable[[Partial], None],
) -> list[str]:
    """Check every batch of ``run`` has its partial, naming exactly its keys, then ``add`` each in
    batch order. Returns every key read. MissingPartials (naming the batches) before adding any."""
    items = store.read_batches(run.batches_key)
    if len(items) != run.batches or [b.index for b in items] != list(range(run.batches)):
        raise MissingPartials(f"run {run.run_id}: the batch list does not match the plan ({len(items)} batches)")
    found: list[Partial] = []
    missing: list[int] = []
    for item in items:
        partial = store.read_partial(run.run_id, item.index)
        if partial is None or partial.run_id != run.run_id or partial.index != item.index or partial.keys != item.keys:
            missing.append(item.index)
        else:
            found.append(partial)
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        raise MissingPartials(
            f"run {run.run_id}: {len(missing)} of {run.batches} batches have no partial (batch {shown}); "
            "nothing committed, the next run reads these objects again"
        )
    keys: list[str] = []
    for partial in found:
        add(partial)
        keys.extend(partial.keys)
    if len(keys) != run.objects or len(set(keys)) != len(keys):
        raise MissingPartials(f"run {run.run_id}: the partials name {len(keys)} keys, the plan {run.objects}")
    return keys
