"""Serving logic: the per-execution-environment model cache and the predict path.

One ``ModelService`` lives for the life of a Lambda execution environment. A model is loaded once;
afterwards its alias is re-checked at most every ``check_seconds`` with a conditional GET (a 304
costs one small request), and a promoted version is swapped in without a redeploy. If the new
version cannot be fetched, verified or loaded, the current one keeps serving; if S3 is unreachable,
the cached model keeps serving. Only when nothing was ever loaded does a request get a 503.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import (
    BatchTooLarge,
    IncompatibleModel,
    IntegrityError,
    InvalidInput,
    ModelNotFound,
    ModelUnavailable,
    RegistryError,
    SklambdaError,
)
from .loader import LoadedModel, ModelLoadError, load_version
from .registry import NOT_MODIFIED, ModelRegistry, check_model_name

# Failures that will not fix themselves by retrying the same alias state.
PERMANENT_LOAD_FAILURES = (IntegrityError, IncompatibleModel, ModelLoadError)
MAX_CACHED_NAMES = 256

EventSink = Callable[[str, dict[str, Any]], None]


def _ignore(_event: str, _fields: dict[str, Any]) -> None:
    return None


@dataclass
class _Entry:
    model: LoadedModel | None = None
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
    ) -> None:
        self.registry = registry
        self.alias = alias
        self.check_seconds = check_seconds
        self.max_batch_rows = max_batch_rows
        self._clock = clock
        self._on_event = on_event
        self._entries: dict[str, _Entry] = {}
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
        if found is NOT_MODIFIED:
            return
        if found is None:
            if entry.model is None:
                entry.error = ModelNotFound(f"model {name!r} not found (no {self.alias!r} alias in the registry)")
            else:
                self._on_event("AliasMissing", {"model": name, "version": entry.model.version})
            return
        if entry.model is not None and found.record.version == entry.model.version:
            entry.etag = found.etag
            return
        target = found.record.version
        try:
            manifest = self.registry.get_manifest(name, target)
            loaded = load_version(self.registry, manifest)
        except SklambdaError as err:
            permanent = isinstance(err, PERMANENT_LOAD_FAILURES)
            self._on_event(
                "ModelLoadFailure",
                {"model": name, "version": target, "error": err.message, "error_type": type(err).__name__,
                 "permanent": permanent, "serving": entry.model.version if entry.model else None},
            )
            if permanent:
                # Do not retry a bad artifact every request; a new promotion changes the etag.
                entry.etag = found.etag
            if entry.model is None:
                entry.error = ModelUnavailable(f"model {name!r} v{target} cannot be served: {err.message}")
            return
        previous = entry.model.version if entry.model else None
        entry.model, entry.etag, entry.error = loaded, found.etag, None
        self._on_event(
            "ModelLoaded",
            {"model": name, "version": target, "previous_version": previous, "warnings": loaded.load_warnings},
        )

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
        model = self.model(name)
        matrix = model.validator.to_matrix(instances)
        predictions, probabilities = model.predict(matrix)
        base = uuid.uuid4().hex
        ids = [f"{base}-{i}" for i in range(len(predictions))]
        return Prediction(model, predictions, probabilities, ids, matrix)

    # ------------------------------------------------------------ describe
    def describe(self, name: str) -> dict[str, Any]:
        model = self.model(name)
        return {**model.manifest.public(), "alias": self.alias}

    def list_models(self) -> list[dict[str, Any]]:
        return self.registry.describe_models()
