"""Serving logic: the per-execution-environment model cache and the predict path.

One ``ModelService`` lives for the life of a Lambda execution environment. A model is loaded once;
afterwards its alias is re-checked at most every ``check_seconds`` with a conditional GET (a 304
costs one small request), and a promoted version is swapped in without a redeploy. If the new
version cannot be fetched, verified or loaded, the current one keeps serving; if S3 is unreachable,
the cached model keeps serving. Only when nothing was ever loaded does a request get a 503.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sklambda.core.errors import (
    BatchTooLarge,
    IncompatibleModel,
    IntegrityError,
    InvalidInput,
    ModelNotFound,
    ModelUnavailable,
    RegistryError,
    SklambdaError,
)
from sklambda.registry.store import ModelRegistry, NotModified, check_model_name
from sklambda.serving.ids import PredictionIds
from sklambda.serving.loader import LoadedModel, ModelLoadError, load_version

# Failures that will not fix themselves by retrying the same alias state.
PERMANENT_LOAD_FAILURES = (IntegrityError, IncompatibleModel, ModelLoadError)
MAX_CACHED_NAMES = 256

EventSink = Callable[[str, dict[str, Any]], None]


def _ignore(_event: str, _fields: dict[str, Any]) -> None:
    return None


@dataclass
class _Entry:
    model: LoadedModel | None = None  # the alias's version
    canary: LoadedModel | None = None  # the alias's canary version, when it names one and it loaded
    canary_weight: float = 0.0
    etag: str | None = None
    checked_at: float = -math.inf
    error: SklambdaError | None = None


@dataclass(frozen=True)
class Prediction:
    model: LoadedModel
    predictions: list[Any]
    probabilities: list[list[float]] | None
    prediction_ids: list[str]
    matrix: Any = None  # the validated input rows, in schema order (for capture)

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": {"name": self.model.name, "version": self.model.version},
            "predictions": self.predictions,
        }
        if self.probabilities is not None:
            body["probabilities"] = self.probabilities
            body["classes"] = self.model.manifest.classes
        body["prediction_ids"] = self.prediction_ids
        return body


class ModelService:
    """Resolves model aliases, keeps loaded versions warm, and scores batches."""

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        alias: str,
        check_seconds: float,
        max_batch_rows: int,
        clock: Callable[[], float] = time.monotonic,
        on_event: EventSink = _ignore,
        ids: PredictionIds | None = None,
    ) -> None:
        self.ids = ids
        self.registry = registry
        self.alias = alias
        self.check_seconds = check_seconds
        self.max_batch_rows = max_batch_rows
        self._clock = clock
        self._on_event = on_event
        self._entries: dict[str, _Entry] = {}
        self._manifests: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------- models
    def loaded(self, name: str) -> LoadedModel | None:
        entry = self._entries.get(name)
        return entry.model if entry else None

    def model(self, name: str) -> LoadedModel:
        """The version currently served for ``name``, refreshing the alias when it is due."""
        check_model_name(name)
        with self._lock:
            entry = self._entries.get(name)
            now = self._clock()
            if entry is not None:
                due = entry.checked_at + (self.check_seconds if entry.model else min(1.0, self.check_seconds))
                if now < due:
                    if entry.model is not None:
                        return entry.model
                    assert entry.error is not None
                    raise entry.error
            else:
                if len(self._entries) >= MAX_CACHED_NAMES:
                    self._evict_unloaded()
                entry = self._entries.setdefault(name, _Entry())
            self._refresh(name, entry, now)
            if entry.model is not None:
                return entry.model
            assert entry.error is not None
            raise entry.error

    def recheck_aliases(self) -> None:
        """Make every alias due for a re-check on its next use (after a SnapStart restore)."""
        with self._lock:
            for entry in self._entries.values():
                entry.checked_at = -math.inf

    def _evict_unloaded(self) -> None:
        for key in [k for k, e in self._entries.items() if e.model is None]:
            del self._entries[key]

    def _refresh(self, name: str, entry: _Entry, now: float) -> None:
        entry.checked_at = now
        try:
            found = self.registry.get_alias_if_changed(name, self.alias, entry.etag)
        except RegistryError as err:
            self._on_event("RegistryUnavailable", {"model": name, "error": err.message})
            if entry.model is None:
                entry.error = ModelUnavailable(f"model {name!r} cannot be loaded right now: {err.message}")
            return
        if isinstance(found, NotModified):
            return
        if found is None:
            if entry.model is None:
                entry.error = ModelNotFound(f"model {name!r} not found (no {self.alias!r} alias in the registry)")
            else:
                self._on_event("AliasMissing", {"model": name, "version": entry.model.version})
            return
        record = found.record
        settled = True  # False when a transient failure means the alias must be read again
        primary, ok = self._load(name, record.version, entry, role="primary")
        settled &= ok
        if primary is not None:
            previous = entry.model.version if entry.model else None
            if previous != primary.version:
                self._on_event(
                    "ModelLoaded",
                    {
                        "model": name,
                        "version": primary.version,
                        "previous_version": previous,
                        "warnings": primary.load_warnings,
                    },
                )
            entry.model, entry.error = primary, None
        elif entry.model is None:
            assert entry.error is not None
        canary = None
        if record.canary is not None:
            canary, ok = self._load(name, record.canary.version, entry, role="canary")
            settled &= ok
        entry.canary = canary
        entry.canary_weight = record.canary.weight if (record.canary and canary) else 0.0
        if settled:
            entry.etag = found.etag

    def _load(self, name: str, version: str, entry: _Entry, *, role: str) -> tuple[LoadedModel | None, bool]:
        """Load ``version`` (reusing what is already loaded). Returns (model or None, settled)."""
        for candidate in (entry.model, entry.canary):
            if candidate is not None and candidate.version == version:
                return candidate, True
        try:
            manifest = self.registry.get_manifest(name, version)
            return load_version(self.registry, manifest), True
        except SklambdaError as err:
            permanent = isinstance(err, PERMANENT_LOAD_FAILURES)
            self._on_event(
                "ModelLoadFailure",
                {
                    "model": name,
                    "version": version,
                    "role": role,
                    "error": err.message,
                    "error_type": type(err).__name__,
                    "permanent": permanent,
                    "serving": entry.model.version if entry.model else None,
                },
            )
            if role == "primary" and entry.model is None:
                entry.error = ModelUnavailable(f"model {name!r} v{version} cannot be served: {err.message}")
            # A bad artifact is not retried every request; a new promotion changes the alias etag.
            return None, permanent

    def route(self, name: str, key: str) -> LoadedModel:
        """The version that answers the request identified by ``key`` (hex): the canary for its share."""
        model = self.model(name)
        entry = self._entries[name]
        canary, weight = entry.canary, entry.canary_weight
        if canary is not None and weight > 0 and int(key[:8], 16) / 0x1_0000_0000 < weight:
            return canary
        return model

    # ------------------------------------------------------------ predict
    def predict(self, name: str, instances: list[Any]) -> Prediction:
        if not instances:
            raise InvalidInput(
                "instances: must contain at least one instance",
                details=[{"field": "instances", "message": "must contain at least one instance"}],
            )
        if len(instances) > self.max_batch_rows:
            raise BatchTooLarge(
                f"instances: {len(instances)} rows exceed the limit of {self.max_batch_rows} per request; "
                "split the batch",
                details=[{"field": "instances", "message": f"at most {self.max_batch_rows} rows per request"}],
            )
        base = os.urandom(16).hex()  # 32 random hex digits (uuid4's randomness without its formatting cost)
        model = self.route(name, base)
        matrix = model.validator.to_matrix(instances)
        try:
            predictions, probabilities = model.predict(matrix)
        except Exception as err:  # validated input the model cannot score: a model fault, counted per version
            self._on_event("PredictErrors", {"model": model.name, "version": model.version, "error": repr(err)[:300]})
            raise ModelUnavailable(f"model {name!r} v{model.version} failed to score the request") from err
        if self.ids is not None:
            ids = self.ids.issue(model.name, model.version, base, len(predictions))
        else:
            ids = [f"{base}-{i}" for i in range(len(predictions))]
        return Prediction(model, predictions, probabilities, ids, matrix)

    def manifest(self, name: str, version: str) -> Any:
        """A version's manifest (immutable, so cached for the life of the environment)."""
        key = (name, version)
        found = self._manifests.get(key)
        if found is None:
            found = self.registry.get_manifest(name, version)
            if len(self._manifests) >= MAX_CACHED_NAMES:
                self._manifests.clear()
            self._manifests[key] = found
        return found

    # ------------------------------------------------------------ describe
    def describe(self, name: str) -> dict[str, Any]:
        model = self.model(name)
        return {**model.manifest.public(), "alias": self.alias, "runtime": model.runtime}

    def list_models(self) -> list[dict[str, Any]]:
        return self.registry.describe_models()
