"""Live model quality: predictions joined with the labels posted for them.

Reads the labels of a window (``feedback/``, small) first, then streams the captures of the same
window once and keeps only labelled rows, so memory grows with the labels, not with the traffic.

The one definition of live quality (``score_predictions``): classifiers get accuracy (a prediction
is right when it names the label's class, ``feedback.same_label``), regressors RMSE. The drift job
publishes it per model version (ModelAccuracy / ModelRMSE) and the retrain canary compares the
candidate's with production's (``QualityScore.worse_than``, which knows RMSE is lower-is-better).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from sklambda.monitoring.capture import CaptureRecord
from sklambda.monitoring.feedback import FeedbackRecord, is_number, same_label
from sklambda.monitoring.records import BadRecord, JsonLineRecord
from sklambda.monitoring.store import CaptureStore

FEEDBACK_PREFIX = "feedback/"

R = TypeVar("R", bound=JsonLineRecord)


def read_records(store: CaptureStore, key: str, kind: type[R]) -> Iterator[R]:
    """The valid records of one object; unusable lines are skipped (the drift job counts them)."""
    for line in store.read_lines(key):
        try:
            yield kind.parse_line(line)
        except BadRecord:
            continue


@dataclass(frozen=True)
class LabelledRow:
    """A captured row joined with the label posted for its prediction."""

    model: str
    version: str
    features: dict[str, Any]
    prediction: Any
    label: Any
    captured_at: str


def labelled_rows(
    store: CaptureStore, start: datetime, end: datetime, *, model: str | None = None, version: str | None = None
) -> list[LabelledRow]:
    """Captured rows that received a label in the window, joined by prediction id (the last label
    posted wins), oldest first."""
    labels: dict[str, Any] = {}
    for key in store.list_hourly_keys(FEEDBACK_PREFIX, start, end):
        for feedback in read_records(store, key, FeedbackRecord):
            if model is None or feedback.model == model:
                labels[feedback.prediction_id] = feedback.label
    if not labels:
        return []
    rows = []
    # a labelled prediction was captured at most a delivery buffer before its label's window
    for key in store.list_capture_keys(start - timedelta(hours=1), end):
        for capture in read_records(store, key, CaptureRecord):
            if capture.prediction_id not in labels:
                continue
            if (model is None or capture.model == model) and (version is None or capture.version == version):
                rows.append(
                    LabelledRow(
                        model=capture.model,
                        version=capture.version,
                        features=capture.features,
                        prediction=capture.prediction,
                        label=labels[capture.prediction_id],
                        captured_at=capture.captured_at,
                    )
                )
    rows.sort(key=lambda r: r.captured_at)
    return rows


class QualityScore(BaseModel):
    """Live quality of one set of labelled predictions."""

    model_config = ConfigDict(frozen=True)

    metric: Literal["accuracy", "rmse"]
    value: float
    rows: int

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "accuracy"

    def worse_than(self, other: QualityScore, margin: float) -> bool:
        """Whether this score is worse than ``other`` by more than ``margin``: absolute for accuracy,
        relative for RMSE (it is in the target's units, so an absolute margin would mean nothing)."""
        if self.metric != other.metric:
            raise ValueError(f"cannot compare {self.metric} with {other.metric}")
        if self.higher_is_better:
            return self.value < other.value - margin
        return self.value > other.value * (1 + margin)


def score_predictions(task: str, pairs: Iterable[tuple[Any, Any]]) -> QualityScore | None:
    """(prediction, label) pairs → accuracy (classification) or RMSE (regression); None: no usable pair."""
    if task == "classification":
        judged = [same_label(predicted, label) for predicted, label in pairs]
        return QualityScore(metric="accuracy", value=sum(judged) / len(judged), rows=len(judged)) if judged else None
    if task == "regression":
        errors = [
            (float(p) - float(y)) ** 2
            for p, y in pairs
            if is_number(p) and is_number(y) and math.isfinite(p) and math.isfinite(y)
        ]
        if not errors:
            return None
        return QualityScore(metric="rmse", value=math.sqrt(sum(errors) / len(errors)), rows=len(errors))
    return None


class VersionQuality(QualityScore):
    """Live quality of one model version (what the drift job publishes)."""

    model: str
    version: str


def live_quality(
    store: CaptureStore, start: datetime, end: datetime, task_of: Callable[[str, str], str | None]
) -> list[VersionQuality]:
    """Per (model, version) with labelled rows in the window: its live quality."""
    pairs: dict[tuple[str, str], list[tuple[Any, Any]]] = defaultdict(list)
    for row in labelled_rows(store, start, end):
        pairs[(row.model, row.version)].append((row.prediction, row.label))
    out = []
    for (model, version), rows in sorted(pairs.items()):
        task = task_of(model, version)
        score = score_predictions(task, rows) if task else None
        if score is not None:
            out.append(VersionQuality(model=model, version=version, **score.model_dump()))
    return out


def quality_by_version(rows: Sequence[LabelledRow], task: str, versions: dict[str, str]) -> dict[str, QualityScore]:
    """Live quality of named versions (``{role: version}``) among ``rows``: ``{role: score}``."""
    out = {}
    for role, version in versions.items():
        score = score_predictions(task, [(r.prediction, r.label) for r in rows if r.version == version])
        if score is not None:
            out[role] = score
    return out
