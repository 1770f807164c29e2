"""Live model quality: predictions joined with the labels posted for them.

Reads the labels of a window (``feedback/``, small) first, then streams the captures of the same
window once and keeps only labelled rows, so memory grows with the labels, not with the traffic.
Classifiers get accuracy, regressors RMSE, per model version.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from .capture_store import CaptureStore, hour_prefix

FEEDBACK_PREFIX = "feedback/"


def _feedback_keys(store: CaptureStore, start: datetime, end: datetime) -> list[str]:
    keys: list[str] = []
    hour = start.replace(minute=0, second=0, microsecond=0)
    paginator = store.s3.get_paginator("list_objects_v2")
    while hour <= end:
        prefix = FEEDBACK_PREFIX + hour_prefix(hour)[len("captures/") :]
        for page in paginator.paginate(Bucket=store.bucket, Prefix=prefix):
            keys.extend(o["Key"] for o in page.get("Contents", []))
        hour += timedelta(hours=1)
    return keys


def _json_lines(store: CaptureStore, key: str):  # noqa: ANN202 - a generator of dicts
    for line in store.read_lines(key):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            yield doc


def live_quality(
    store: CaptureStore, start: datetime, end: datetime, task_of: Callable[[str, str], str | None]
) -> list[dict[str, Any]]:
    """Per (model, version): labelled rows and accuracy (classification) or RMSE (regression)."""
    labels: dict[str, Any] = {}
    for key in _feedback_keys(store, start, end):
        for doc in _json_lines(store, key):
            if isinstance(doc.get("prediction_id"), str) and "label" in doc:
                labels[doc["prediction_id"]] = doc["label"]  # the last label posted wins
    if not labels:
        return []
    pairs: dict[tuple[str, str], list[tuple[Any, Any]]] = defaultdict(list)
    # captures of a labelled prediction are at most a delivery buffer older than the label window
    for key in store.list_capture_keys(start - timedelta(hours=1), end):
        for doc in _json_lines(store, key):
            pid = doc.get("prediction_id")
            if pid in labels and isinstance(doc.get("model"), str) and isinstance(doc.get("version"), str):
                pairs[(doc["model"], doc["version"])].append((doc.get("prediction"), labels[pid]))
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
