"""Ground truth: validate labels posted for earlier predictions and shape them for storage.

A label must name a prediction this API issued (signed id, see ``ids``) and be a valid answer
for the model version that made it: one of its classes for a classifier, a finite number for a
regressor. A batch is all-or-nothing, so a client never has to work out which half was stored.
Accepted labels are stored as ``FeedbackRecord`` lines (``feedback/`` in the capture bucket), read
back by live quality (``quality``), which judges a prediction right with the same rule
(``same_label``) that validated its label here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from sklambda.core.errors import InvalidInput, SklambdaError, UnknownPrediction
from sklambda.monitoring.records import JsonLineRecord
from sklambda.registry.manifest import Manifest
from sklambda.serving.ids import PredictionIds

# What a label (and a class) can be: the manifest's class types.
Label = str | int | float | bool


class FeedbackRecord(JsonLineRecord):
    """One ground-truth label for a prediction: written by /feedback, read by live quality."""

    received_at: str = ""
    prediction_id: str
    model: str
    version: str | None = None
    label: Label

    reject_reasons: ClassVar[dict[str, str]] = {
        "prediction_id": "missing_prediction_id",
        "model": "missing_model",
        "label": "missing_label",
    }


def is_number(value: Any) -> bool:
    """A real number (bool is an int in Python, never a number label here)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def same_label(a: Any, b: Any) -> bool:
    """Whether two labels name the same class: equal values of one type, or equal numbers
    (``1`` and ``1.0``), but never ``True`` and ``1``."""
    if type(a) is type(b):
        return bool(a == b)
    return is_number(a) and is_number(b) and float(a) == float(b)


def _label_problem(label: Any, manifest: Manifest) -> str | None:
    if manifest.task == "regression":
        if not is_number(label):
            return f"expected a number for {manifest.name} v{manifest.version} (regression)"
        if not math.isfinite(label):
            return "must be a finite number"
        return None
    classes = manifest.classes or []
    if any(same_label(cls, label) for cls in classes):
        return None
    shown = ", ".join(repr(c) for c in classes[:20])
    return f"{label!r} is not a class of {manifest.name} v{manifest.version}; expected one of: {shown}"


def validate_feedback(
    items: list[dict[str, Any]],
    ids: PredictionIds,
    manifest_for: Callable[[str, str], Manifest],
    *,
    field: str = "feedback",
) -> list[FeedbackRecord]:
    """Records ready to store, or one InvalidInput / UnknownPrediction naming every bad item."""
    received_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    errors: list[dict[str, str]] = []
    unknown = 0
    documents: list[FeedbackRecord] = []
    for i, item in enumerate(items):
        where = f"{field}[{i}]" if field else ""
        id_field = f"{where}.prediction_id" if where else "prediction_id"
        label_field = f"{where}.label" if where else "label"
        try:
            ref = ids.verify(item.get("prediction_id"), id_field)
        except UnknownPrediction as err:
            unknown += 1
            errors.extend(err.details)
            continue
        except InvalidInput as err:
            errors.extend(err.details)
            continue
        if "label" not in item or item["label"] is None:
            errors.append({"field": label_field, "message": "is required"})
            continue
        try:
            manifest = manifest_for(ref.model, ref.version)
        except SklambdaError as err:
            errors.append({"field": id_field, "message": f"its model version is not available: {err.message}"})
            continue
        problem = _label_problem(item["label"], manifest)
        if problem:
            errors.append({"field": label_field, "message": problem})
            continue
        documents.append(
            FeedbackRecord(
                received_at=received_at,
                prediction_id=item["prediction_id"],
                model=ref.model,
                version=ref.version,
                label=item["label"],
            )
        )
    if errors:
        first = errors[0]
        message = f"{first['field']}: {first['message']}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more)"
        if unknown == len(errors):
            raise UnknownPrediction(message, details=errors[:20])
        raise InvalidInput(message, details=errors[:20])
    return documents
