"""Live model quality: predictions joined with the labels posted for them.

Reads the labels of a window (``feedback/``, small) first, then streams the captures of the same
window once and keeps only labelled rows, so memory grows with the labels, not with the traffic.
Classifiers get accuracy, regressors RMSE, per model version.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from sklambda.monitoring.store import CaptureStore

FEEDBACK_PREFIX = "feedback/"


def _json_lines(store: CaptureStore, key: str) -> Iterator[dict[str, Any]]:
    for line in store.read_lines(key):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            yield doc


def labelled_rows(
    store: CaptureStore, start: datetime, end: datetime, *, model: str | None = None, version: str | None = None
) -> list[dict[str, Any]]:
    """Captured rows that received a label in the window, joined by prediction id (the last label
    posted wins), oldest first: ``{model, version, features, prediction, label, captured_at}``."""
    labels: dict[str, Any] = {}
    for key in store.list_hourly_keys(FEEDBACK_PREFIX, start, end):
        for doc in _json_lines(store, key):
            if (
                isinstance(doc.get("prediction_id"), str)
                and "label" in doc
                and (model is None or doc.get("model") == model)
            ):
                labels[doc["prediction_id"]] = doc["label"]
    if not labels:
        return []
    rows = []
    # a labelled prediction was captured at most a delivery buffer before its label's window
    for key in store.list_capture_keys(start - timedelta(hours=1), end):
        for doc in _json_lines(store, key):
            pid = doc.get("prediction_id")
            if pid not in labels or not isinstance(doc.get("model"), str) or not isinstance(doc.get("version"), str):
                continue
            if (model is None or doc["model"] == model) and (version is None or doc["version"] == version):
                rows.append(
                    {
                        "model": doc["model"],
                        "version": doc["version"],
                        "features": doc.get("features"),
                        "prediction": doc.get("prediction"),
                        "label": labels[pid],
                        "captured_at": str(doc.get("captured_at", "")),
                    }
                )
    rows.sort(key=lambda r: r["captured_at"])
    return rows


def live_quality(
    store: CaptureStore, start: datetime, end: datetime, task_of: Callable[[str, str], str | None]
) -> list[dict[str, Any]]:
    """Per (model, version): labelled rows and accuracy (classification) or RMSE (regression)."""
    pairs: dict[tuple[str, str], list[tuple[Any, Any]]] = defaultdict(list)
    for row in labelled_rows(store, start, end):
        pairs[(row["model"], row["version"])].append((row["prediction"], row["label"]))
    out = []
    for (model, version), rows in sorted(pairs.items()):
        task = task_of(model, version)
        if task == "classification":
            correct = sum(1 for predicted, label in rows if predicted == label and type(predicted) is type(label))
            out.append(
                {
                    "model": model,
                    "version": version,
                    "rows": len(rows),
                    "metric": "accuracy",
                    "value": correct / len(rows),
                }
            )
        elif task == "regression":
            errors = [
                (float(p) - float(y)) ** 2
                for p, y in rows
                if isinstance(p, (int, float)) and isinstance(y, (int, float))
            ]
            if errors:
                out.append(
                    {
                        "model": model,
                        "version": version,
                        "rows": len(errors),
                        "metric": "rmse",
                        "value": math.sqrt(sum(errors) / len(errors)),
                    }
                )
    return out
