"""What the batch steps hand each other, and the documents a job leaves in S3.

The JSON shapes are the ones ``statemachine/batch.asl.json`` moves around: the execution's input
is a :class:`BatchRequest`; the plan task returns a :class:`PlanResult` (stored at ``$.plan``);
the Distributed Map reads the :class:`PartItem` list the planner wrote and hands each child
``{"job": JobContext, "part": PartItem, "attempt": n}`` (:class:`ScoreInput`); each child writes a
:class:`PartRecord`; the finalize task returns a :class:`FinalizeResult`. Handlers parse their
event into these models; the planner, scorer and finalizer only ever see them.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sklambda.core.errors import SklambdaError
from sklambda.core.names import ALIAS_PATTERN
from sklambda.core.settings import EnvSettings
from sklambda.registry.manifest import ModelName, VersionId

Format = Literal["csv", "jsonl"]
# Job names become S3 key segments and Step Functions execution names (80 characters).
JOB_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$"
JobName = Annotated[str, Field(pattern=JOB_PATTERN)]
MAX_PART_ROWS = 1_000_000
MIN_PART_BYTES = 1024
MAX_PARTS = 100_000
PLAN_FORMAT = 1


class BatchInputError(SklambdaError):
    """The job cannot run as asked (a bad request, input or output location): nothing is scored."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    code = "invalid_batch_input"


class BatchConflict(SklambdaError):
    """A part's output exists with other content than this job produces: never overwritten."""

    status = HTTPStatus.CONFLICT
    code = "batch_conflict"


class BatchSettings(EnvSettings):
    """Settings of the batch functions (names match template.yaml's environment variables)."""

    batch_bucket: Annotated[str, Field(min_length=3)]
    model_bucket: Annotated[str, Field(min_length=3)]
    model_alias: Annotated[str, Field(pattern=ALIAS_PATTERN)] = "production"
    batch_part_rows: Annotated[int, Field(ge=1, le=MAX_PART_ROWS)] = 50_000
    batch_part_bytes: Annotated[int, Field(ge=MIN_PART_BYTES)] = 64_000_000
    batch_max_concurrency: Annotated[int, Field(ge=1, le=10_000)] = 40


class _Model(BaseModel):
    # Unknown fields are refused: a step reading a shape another step no longer writes fails loudly.
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class BatchRequest(_Model):
    """The execution's input (``sklambda batch`` builds it; so can anyone starting the state machine)."""

    input: Annotated[str, Field(min_length=6, max_length=1100)]
    model: ModelName
    version: VersionId | None = None  # default: the alias's version, pinned when the job is planned
    output: Annotated[str, Field(max_length=1100)] | None = None  # default s3://<batch bucket>/output/<job>/
    job: JobName | None = None  # default: the execution's name
    input_format: Format | None = None  # default: from the file extension
    output_format: Format | None = None  # default: the input's
    id_column: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    part_rows: Annotated[int, Field(ge=1, le=MAX_PART_ROWS)] | None = None
    part_bytes: Annotated[int, Field(ge=MIN_PART_BYTES)] | None = None
    max_concurrency: Annotated[int, Field(ge=1, le=10_000)] | None = None


def parse_request(raw: Any) -> BatchRequest:
    """The request, or a BatchInputError naming every bad field (never a bare validation trace)."""
    try:
        return BatchRequest.model_validate(raw)
    except ValidationError as err:
        details = [
            {"field": ".".join(str(p) for p in e["loc"]) or "request", "message": e["msg"]} for e in err.errors()
        ]
        listed = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        raise BatchInputError(f"invalid batch request: {listed}", details=details) from None


class JobContext(_Model):
    """Everything a part needs to know about its job; the same for every part (``$.plan.job``)."""

    job: JobName
    bucket: str  # the batch bucket: input and output
    output_prefix: str  # "output/<job>/"
    model: ModelName
    version: VersionId
    task: Literal["classification", "regression"]
    classes: list[str | int | float | bool] | None = None
    input_format: Format
    output_format: Format
    id_column: str | None = None
    multi_file: bool = False  # outputs then carry a `file` column


class PartItem(_Model):
    """One part: a byte range of one input file that starts and ends on a row boundary."""

    part: Annotated[int, Field(ge=0)]
    key: str
    etag: str  # the input object's ETag when planned: a part is only ever read from that object
    start: Annotated[int, Field(ge=0)]
    end: Annotated[int, Field(ge=0)]
    first_row: Annotated[int, Field(ge=1)]  # data row number (1-based, header excluded) of its first row
    first_line: Annotated[int, Field(ge=1)]  # physical line number (1-based) where the part starts
    rows: Annotated[int, Field(ge=0)]
    blank_lines: Annotated[int, Field(ge=0)] = 0
    header: list[str] | None = None  # CSV: the file's header row


class ObjectLocation(_Model):
    bucket: str
    key: str


class PlanInput(_Model):
    request: dict[str, Any]  # parsed by the planner, so a malformed request is a clear BatchInputError
    execution: Annotated[str, Field(min_length=1, max_length=80)] | None = None
    execution_started_at: str | None = None


class PlanResult(_Model):
    job: JobContext
    parts: ObjectLocation  # the JSON array of PartItem the Distributed Map's ItemReader reads
    part_count: int
    rows: int
    max_concurrency: int
    resumed: bool  # the plan already existed: a rerun of the same job


class InputFile(_Model):
    key: str
    etag: str
    bytes: int
    rows: int
    blank_lines: int
    header: list[str] | None = None
    parts: list[int] = Field(default_factory=list)


class JobPlan(_Model):
    """``<output>/_job/plan.json``: written once (``If-None-Match``); a rerun of the job reuses it."""

    format: int = PLAN_FORMAT
    job: JobContext
    request: BatchRequest
    input: str  # the input URI as given
    pinned: Literal["requested", "alias"]
    alias: str
    files: list[InputFile]
    skipped: list[dict[str, str]] = Field(default_factory=list)  # objects under the prefix that are not input
    parts_key: str
    part_count: int
    rows: int
    blank_lines: int
    part_rows: int
    part_bytes: int
    planned_at: str
    planned_epoch: float
    planned_by: str | None = None


class ScoreInput(_Model):
    job: JobContext
    part: PartItem
    attempt: Annotated[int, Field(ge=0)] = 0  # $$.State.RetryCount
    execution: str | None = None  # the parent execution's name


class FileRef(_Model):
    key: str
    bytes: int
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class PartRecord(_Model):
    """``<output>/parts/part-NNNNN.json``: the part's commit, written last (``If-None-Match``)."""

    part: int
    key: str
    start: int
    end: int
    version: VersionId
    rows: int  # planned
    rows_in: int  # parsed from the byte range
    scored: int
    rejected: int
    blank_lines: int
    predictions: FileRef
    rejects: FileRef | None = None
    attempt: int
    started_at: str
    seconds: float
    peak_rss_mb: float | None = None
    execution: str | None = None  # the execution that wrote it


class ScoreResult(_Model):
    """What a child returns (kept small: a Distributed Map's results are bounded)."""

    part: int
    rows_in: int
    scored: int
    rejected: int
    skipped: bool  # already written by an earlier run: nothing scored


class FinalizeInput(_Model):
    job: JobContext
    execution: str | None = None
    execution_started_at: str | None = None
    map: dict[str, Any] | None = None  # the Map's ResultWriter details, or its error when it failed


class PartProblem(_Model):
    part: int
    key: str
    first_row: int
    rows: int
    problem: str


class RowCounts(_Model):
    input: int  # rows in = scored + rejected
    scored: int
    rejected: int
    blank_lines: int


class PartCounts(_Model):
    total: int
    written_this_run: int
    already_written: int  # by an earlier run of the same job: skipped, nothing scored twice
    retried: int  # parts whose final attempt was not the first


class BatchManifest(_Model):
    """``<output>/manifest.json``: the job's account. Written once, when every part is verified."""

    job: JobName
    status: Literal["complete"] = "complete"
    input: str
    files: list[dict[str, Any]]
    model: ModelName
    version: VersionId
    pinned: Literal["requested", "alias"]
    task: Literal["classification", "regression"]
    classes: list[str | int | float | bool] | None = None
    input_format: Format
    output_format: Format
    id_column: str | None = None
    output: str
    predictions: list[str]
    rejects: list[str]
    rows: RowCounts
    parts: PartCounts
    started_at: str
    finished_at: str
    duration_seconds: float
    executions: list[str]


class FinalizeResult(_Model):
    complete: bool
    problem: str | None = None  # names the parts (a Fail state's cause)
    missing: list[PartProblem] = Field(default_factory=list)
    manifest: str | None = None  # s3:// URI of manifest.json
    rows: RowCounts | None = None
    parts: PartCounts | None = None
    version: VersionId | None = None
    duration_seconds: float | None = None
