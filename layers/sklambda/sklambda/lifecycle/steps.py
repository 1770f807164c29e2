"""What the retrain steps hand each other: one typed input and output per Lambda task.

The JSON shapes are the ones ``statemachine/retrain.asl.json`` moves around: each task's
``Parameters`` build its input from the execution state (``$.guard.model``, ``$.assembled``, ...)
and its ``ResultPath`` stores its output under one key of that state (``guard``, ``assembled``,
``trained``, ``evaluation``, ``published``, ``canary``, ``outcome``). Handlers parse their event into
the input model and return the output model dumped ``by_alias``; the pipeline (``retrain``) only
ever sees these objects.

The trigger is the execution's input: EventBridge's "CloudWatch Alarm State Change" event
(``AlarmStateChange``), or ``{"model": ..., "reason": ...}`` when started by hand
(``ManualTrigger``). Which model it is about is the alarm's ``model`` dimension.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sklambda.monitoring.quality import QualityScore
from sklambda.registry.manifest import ModelName, VersionId


class StepModel(BaseModel):
    # Unknown fields are refused: a step reading a shape another step no longer writes fails loudly.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, protected_namespaces=())


class StepTarget(StepModel):
    """The model being retrained and the execution doing it: part of every step's input."""

    model: ModelName
    execution: Annotated[str, Field(min_length=1, max_length=80)]


# ----------------------------------------------------------------------------- the trigger
class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, protected_namespaces=())


class _Metric(_Event):
    dimensions: dict[str, str] = Field(default_factory=dict)


class _MetricStat(_Event):
    metric: _Metric


class _AlarmQuery(_Event):
    metric_stat: _MetricStat | None = Field(None, alias="metricStat")  # absent for metric-math queries


class _AlarmConfiguration(_Event):
    metrics: list[_AlarmQuery] = Field(default_factory=list)


class _AlarmDetail(_Event):
    alarm_name: str | None = Field(None, alias="alarmName")
    configuration: _AlarmConfiguration = Field(default_factory=_AlarmConfiguration)


class AlarmStateChange(_Event):
    """EventBridge's "CloudWatch Alarm State Change" event (DriftAlarm entering ALARM)."""

    source: Literal["aws.cloudwatch"]
    detail_type: str = Field(alias="detail-type")
    detail: _AlarmDetail

    @property
    def model(self) -> str | None:
        """The alarm's ``model`` dimension (DriftAlarm watches one model's DriftScore)."""
        for query in self.detail.configuration.metrics:
            if query.metric_stat is not None and "model" in query.metric_stat.metric.dimensions:
                return query.metric_stat.metric.dimensions["model"]
        return None


class ManualTrigger(_Event):
    """``sklambda retrain`` or a hand-started execution: ``{"model": ..., "source": ..., "reason": ...}``."""

    model: ModelName | None = None
    source: str = "manual"
    detail_type: str | None = Field(None, alias="detail-type")
    reason: str | None = None


Trigger = Annotated[AlarmStateChange | ManualTrigger, Field(union_mode="left_to_right")]


class TriggerSummary(StepModel):
    """What the guard records about its trigger (in its output and a skipped run's record)."""

    source: str = "manual"
    detail_type: str | None = Field(None, alias="detail-type")
    alarm: str | None = None
    reason: str | None = None

    @classmethod
    def of(cls, trigger: AlarmStateChange | ManualTrigger) -> TriggerSummary:
        if isinstance(trigger, AlarmStateChange):
            return cls(source=trigger.source, detail_type=trigger.detail_type, alarm=trigger.detail.alarm_name)
        return cls(source=trigger.source, detail_type=trigger.detail_type, reason=trigger.reason)


# ----------------------------------------------------------------------------- 1 guard
class AcquireInput(StepModel):
    action: Literal["acquire"]
    # ``$$.Execution.Name``: always set by Step Functions, but moto's interpreter leaves it null for
    # an execution started without a name; the guard then names the run (``GuardResult.execution``),
    # and every later step reads the name from there.
    execution: Annotated[str, Field(min_length=1, max_length=80)] | None = None
    trigger: Trigger


class GuardResult(StepTarget):
    proceed: bool
    reason: str
    trigger: TriggerSummary
    canary_wait_seconds: int


class ReleaseInput(StepTarget):
    action: Literal["release"]


class ReleaseResult(StepModel):
    released: bool


class ObjectRef(StepModel):
    """A working file the pipeline wrote (``retrain/<model>/<execution>/``), with its sha256."""

    bucket: str
    key: str
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    bytes: int


# ----------------------------------------------------------------------------- 2 assemble
class AssembleResult(StepModel):
    production_version: VersionId
    train: ObjectRef
    holdout: ObjectRef
    reference_rows: int
    labelled_rows: int
    train_labelled_rows: int
    holdout_rows: int
    holdout_source: str


# ----------------------------------------------------------------------------- 3 train
class TrainInput(StepTarget):
    assembled: AssembleResult


class TrainResult(StepModel):
    candidate: ObjectRef
    train_rows: int
    fit_seconds: float
    params: dict[str, Any]


# ----------------------------------------------------------------------------- 4 evaluate
class EvaluateInput(StepTarget):
    assembled: AssembleResult
    trained: TrainResult


class Evaluation(StepModel):
    """Candidate and production on the same holdout. The gate (a Choice state) passes the candidate
    when ``candidate_score`` reaches both ``required_score`` and ``floor``."""

    metric: str
    candidate_score: float
    production_score: float
    required_score: float
    floor: float
    margin: float
    candidate_metrics: dict[str, float]
    production_metrics: dict[str, float]
    holdout_rows: int

    def shortfall(self) -> str:
        """Why the gate rejected the candidate."""
        if self.candidate_score < self.floor:
            return f"{self.metric} {self.candidate_score:.4f} is below the floor {self.floor}"
        return (
            f"{self.metric} {self.candidate_score:.4f} is worse than production's {self.production_score:.4f} "
            f"by more than the margin {self.margin}"
        )


# ----------------------------------------------------------------------------- 6 publish
class PublishInput(StepTarget):
    assembled: AssembleResult
    trained: TrainResult
    evaluation: Evaluation
    accepted: bool


class PublishResult(StepModel):
    version: VersionId
    status: Literal["candidate", "rejected"]
    reason: str | None = None


# ----------------------------------------------------------------------------- 7 canary
class CanaryStartInput(StepTarget):
    action: Literal["start"]
    version: VersionId


class CanaryStarted(StepModel):
    version: VersionId
    weight: float
    production: VersionId
    started_at: str
    started_epoch: float


class CanaryCheckInput(StepTarget):
    action: Literal["check"]
    canary: CanaryStarted


class CanaryOutcome(StepModel):
    outcome: Literal["promoted", "rolled_back"]
    version: VersionId
    serving: VersionId
    problems: list[str]
    observed: dict[str, float]
    live_quality: dict[str, QualityScore]


CanaryInput = Annotated[CanaryStartInput | CanaryCheckInput, Field(discriminator="action")]


# ----------------------------------------------------------------------------- failure path
class StepFailure(StepModel):
    """What a Catch stores at ``$.error``."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    error: str = Field(alias="Error")
    cause: str | None = Field(None, alias="Cause")


class ExecutionState(BaseModel):
    """The whole execution state the Abort task receives: the failure may have come before any
    step's output, and the trigger's own fields sit beside the steps' (ignored here)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    guard: GuardResult
    published: PublishResult | None = None
    error: StepFailure | None = None


class AbortInput(StepModel):
    action: Literal["abort"]
    state: ExecutionState


class AbortResult(StepModel):
    serving: VersionId | None
    released: bool
    error: StepFailure | None = None


GuardInput = Annotated[AcquireInput | ReleaseInput | AbortInput, Field(discriminator="action")]
