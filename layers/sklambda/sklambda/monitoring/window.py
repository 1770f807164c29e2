"""One window of one model version's served rows: every mergeable aggregate the drift job keeps.

* ``drift`` — per-feature bin counts against ``baseline.json`` (:mod:`sklambda.monitoring.drift`);
* ``performance`` — served scores in the calibration's bins, for the label-free estimate of
  accuracy / F1 / ROC AUC (:mod:`sklambda.monitoring.performance`), when the version has a
  ``calibration.json``;
* ``multivariate`` — reconstruction errors in the reference error bins
  (:mod:`sklambda.monitoring.multivariate`), when the version has a ``multivariate.json``.

Each part merges exactly (integer counts, exact sums), so :class:`WindowAggregate` does too: N
partial windows from N workers merge to the same ``to_dict()`` as one pass. A version published
before an artifact existed simply lacks that part, and the result says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from sklambda.core.errors import SklambdaError
from sklambda.monitoring.drift import AGGREGATE_KIND, DriftAggregate, DriftConfig, DriftResult, evaluate
from sklambda.monitoring.multivariate import MultivariateDrift, ReconstructionAggregate, evaluate_multivariate
from sklambda.monitoring.performance import PerformanceEstimate, ScoreAggregate, estimate

WINDOW_FORMAT = 1
WINDOW_KIND = "sklambda.monitoring.window"
CALIBRATION = "calibration.json"
MULTIVARIATE = "multivariate.json"

NO_CALIBRATION = (
    "no calibration.json: the version was published before label-free estimation existed, or its held-out rows "
    "could not calibrate it (no predict_proba, fewer than 100 held-out rows, or one outcome only); republish or "
    "retrain it to get one"
)
NO_MULTIVARIATE = (
    "no multivariate.json: the version was published before multivariate drift existed, or without training rows"
)
NO_ESTIMATE_FOR_REGRESSION = "a regression model: the label-free estimate needs class probabilities"
BASELINE = "baseline.json"


@dataclass(frozen=True)
class VersionReferences:
    """What a version's served rows are compared with: its artifacts (verified by the registry)."""

    baseline: Mapping[str, Any]
    calibration: Mapping[str, Any] | None = None
    multivariate: Mapping[str, Any] | None = None
    # Why a part is missing, in plain words (shown in the report): {"performance": ..., "multivariate": ...}
    missing: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, baseline: Mapping[str, Any]) -> VersionReferences:
        """A version known only by its baseline (no estimate, no multivariate drift)."""
        return cls(
            baseline=baseline,
            missing={"performance": "no calibration was looked up", "multivariate": "no PCA was looked up"},
        )


Warn = Callable[[str, dict[str, Any]], None]


def _quiet(_message: str, _fields: dict[str, Any]) -> None:
    return None


class RegistryReferences:
    """A version's baseline, calibration and PCA read from the registry (each verified against the
    manifest's sha256 by ``get_json_artifact``), one manifest read per version.

    Call it for the ``VersionReferences`` (None: no usable baseline, the version's rows are skipped);
    ``baseline`` alone is what the capture reader needs. A version without one of the newer
    artifacts, or with one that does not verify, gets the reason instead (never a wrong estimate).
    """

    def __init__(self, registry: Any, *, warn: Warn = _quiet) -> None:
        self.registry = registry
        self.warn = warn
        self._cache: dict[tuple[str, str], VersionReferences | None] = {}

    def baseline(self, model: str, version: str) -> Mapping[str, Any] | None:
        found = self(model, version)
        return found.baseline if found is not None else None

    def __call__(self, model: str, version: str) -> VersionReferences | None:
        key = (model, version)
        if key not in self._cache:
            self._cache[key] = self._read(model, version)
        return self._cache[key]

    def _read(self, model: str, version: str) -> VersionReferences | None:
        try:
            manifest = self.registry.get_manifest(model, version)
            if BASELINE not in manifest.artifacts:
                self.warn("version has no drift baseline", {"model": model, "version": version})
                return None
            baseline = self.registry.get_json_artifact(manifest, BASELINE)
        except SklambdaError as err:  # an unknown model/version in a capture line, or an unreadable baseline
            self.warn("no usable baseline", {"model": model[:64], "version": version[:16], "reason": err.message})
            return None
        parts: dict[str, Any] = {}
        missing: dict[str, str] = {}
        for part, file, absent in (
            (
                "performance",
                CALIBRATION,
                NO_ESTIMATE_FOR_REGRESSION if manifest.task == "regression" else NO_CALIBRATION,
            ),
            ("multivariate", MULTIVARIATE, NO_MULTIVARIATE),
        ):
            if file not in manifest.artifacts:
                missing[part] = absent
                continue
            try:
                parts[part] = self.registry.get_json_artifact(manifest, file)
            except SklambdaError as err:  # a tampered artifact: no estimate, never a wrong one
                self.warn("unusable artifact", {"model": model[:64], "version": version, "file": file})
                missing[part] = f"{file} could not be used: {err.message}"
        return VersionReferences(
            baseline=baseline,
            calibration=parts.get("performance"),
            multivariate=parts.get("multivariate"),
            missing=missing,
        )


class WindowResult(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    drift: DriftResult
    performance: PerformanceEstimate
    multivariate: MultivariateDrift

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _field(record: Any, name: str) -> Any:
    return record.get(name) if isinstance(record, Mapping) else getattr(record, name, None)


class WindowAggregate:
    """The mergeable aggregates of one window of one version's captures."""

    def __init__(self, references: VersionReferences) -> None:
        self.references = references
        self.drift = DriftAggregate(references.baseline)
        self.performance = ScoreAggregate(references.calibration) if references.calibration else None
        self.multivariate = ReconstructionAggregate(references.multivariate) if references.multivariate else None

    @property
    def rows(self) -> int:
        return self.drift.rows

    def add_captures(self, records: Iterable[Any]) -> WindowAggregate:
        """Add captured rows: ``CaptureRecord``s (or dicts) with ``features``, ``prediction`` and
        ``probabilities``."""
        records = list(records)
        return self.add_records(
            [_field(r, "features") for r in records],
            predictions=[_field(r, "prediction") for r in records],
            probabilities=[_field(r, "probabilities") for r in records],
        )

    def add_records(
        self,
        features: list[Any],
        *,
        predictions: list[Any] | None = None,
        probabilities: list[Any] | None = None,
    ) -> WindowAggregate:
        """Add rows as feature dicts, with the served predictions and probabilities of the same rows."""
        self.drift.add_records(features)
        if self.multivariate is not None:
            self.multivariate.add_records(f for f in features if isinstance(f, Mapping))
        self._add_scores(len(features), predictions, probabilities)
        return self

    def add_columns(
        self,
        columns: Mapping[str, Any],
        *,
        predictions: list[Any] | None = None,
        probabilities: list[Any] | None = None,
    ) -> WindowAggregate:
        """Add rows as columns keyed by feature name, with the served predictions and probabilities."""
        before = self.drift.rows
        self.drift.add_columns(columns)
        rows = self.drift.rows - before
        if self.multivariate is not None and rows:
            self.multivariate.add_columns(columns, rows)
        self._add_scores(rows, predictions, probabilities)
        return self

    def add_chunk(self, chunk: Any) -> WindowAggregate:
        """Add a ``reader.CaptureChunk``: its columns or its records, with its predictions and probabilities."""
        if getattr(chunk, "columns", None) is not None:
            self.add_columns(chunk.columns, predictions=chunk.predictions, probabilities=chunk.probabilities)
        if getattr(chunk, "records", None) is not None:
            self.add_records(chunk.records, predictions=chunk.predictions, probabilities=chunk.probabilities)
        return self

    def _add_scores(self, rows: int, predictions: list[Any] | None, probabilities: list[Any] | None) -> None:
        if self.performance is None or not rows:
            return
        if probabilities is None or predictions is None or len(probabilities) != rows:
            self.performance.unscored += rows
            return
        self.performance.add(predictions, probabilities)

    def merge(self, other: WindowAggregate) -> WindowAggregate:
        self.drift.merge(other.drift)
        if self.performance is not None and other.performance is not None:
            self.performance.merge(other.performance)
        if self.multivariate is not None and other.multivariate is not None:
            self.multivariate.merge(other.multivariate)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": WINDOW_FORMAT,
            "kind": WINDOW_KIND,
            "drift": self.drift.to_dict(),
            "performance": self.performance.to_dict() if self.performance is not None else None,
            "multivariate": self.multivariate.to_dict() if self.multivariate is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], references: VersionReferences) -> WindowAggregate:
        """Restore a stored window. A plain drift aggregate (what the job stored before windows
        existed) restores as the drift part; the other parts start from that point."""
        out = cls(references)
        if data.get("kind") == AGGREGATE_KIND:
            out.drift = DriftAggregate.from_dict(data, references.baseline)
            return out
        if data.get("kind") != WINDOW_KIND or data.get("format") != WINDOW_FORMAT:
            raise ValueError("not a sklambda monitoring window of a supported format")
        out.drift = DriftAggregate.from_dict(data["drift"], references.baseline)
        if out.performance is not None and data.get("performance") is not None:
            assert references.calibration is not None
            out.performance = ScoreAggregate.from_dict(data["performance"], references.calibration)
        if out.multivariate is not None and data.get("multivariate") is not None:
            assert references.multivariate is not None
            out.multivariate = ReconstructionAggregate.from_dict(data["multivariate"], references.multivariate)
        return out

    def evaluate(self, config: DriftConfig | None = None) -> WindowResult:
        config = config or DriftConfig()
        refs = self.references
        drift = evaluate(refs.baseline, self.drift, config)
        if self.performance is not None and refs.calibration is not None:
            performance = estimate(refs.calibration, self.performance, min_rows=config.min_rows)
        else:
            performance = PerformanceEstimate.unavailable(refs.missing.get("performance", NO_CALIBRATION))
        if self.multivariate is not None:
            multivariate = evaluate_multivariate(self.multivariate, config)
        else:
            multivariate = MultivariateDrift.unavailable(refs.missing.get("multivariate", NO_MULTIVARIATE))
        return WindowResult(drift=drift, performance=performance, multivariate=multivariate)
