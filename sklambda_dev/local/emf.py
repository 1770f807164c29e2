"""CloudWatch Embedded Metric Format → PutMetricData, what CloudWatch Logs does for a Lambda in AWS.

Handlers (Powertools ``Metrics``) print one JSON document per line with an ``_aws`` key; in AWS
the log service extracts metrics from it. Locally the worker relay hands every such line to
:class:`EmfPublisher`, which writes the metrics into moto's CloudWatch so alarms can later be
evaluated against them. Invalid documents are dropped with a warning, as CloudWatch drops them.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from datetime import UTC, datetime
from typing import Any

__all__ = ["EmfPublisher", "emf_metric_data", "parse_emf_line"]

log = logging.getLogger(__name__)

_MAX_DATUMS_PER_CALL = 500


def parse_emf_line(line: str) -> dict[str, Any] | None:
    """The EMF document on ``line``, or None when the line is not one (plain log text, other JSON)."""
    text = line.strip()
    if not (text.startswith("{") and '"_aws"' in text):
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("_aws"), dict) else None


def _numbers(value: Any) -> list[float] | None:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    return [float(v) for v in values]


def emf_metric_data(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Translate one EMF document into ``{namespace: [MetricDatum, ...]}`` for PutMetricData.

    Each metric is emitted once per dimension set, with dimension values read from the document's
    root, as CloudWatch does. A metric whose value is missing or not numeric is skipped.
    """
    meta = doc["_aws"]
    timestamp_ms = meta.get("Timestamp")
    timestamp = (
        datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
        if isinstance(timestamp_ms, (int, float))
        else datetime.now(tz=UTC)
    )
    result: dict[str, list[dict[str, Any]]] = {}
    for directive in meta.get("CloudWatchMetrics") or []:
        namespace = directive.get("Namespace")
        if not isinstance(namespace, str) or not namespace:
            continue
        dimension_sets = directive.get("Dimensions") or [[]]
        for metric in directive.get("Metrics") or []:
            name = metric.get("Name")
            values = _numbers(doc.get(name)) if isinstance(name, str) else None
            if values is None:
                continue
            for dimension_keys in dimension_sets:
                if not all(key in doc for key in dimension_keys):
                    continue  # CloudWatch rejects a dimension with no value in the document
                datum: dict[str, Any] = {
                    "MetricName": name,
                    "Dimensions": [{"Name": k, "Value": str(doc[k])} for k in dimension_keys],
                    "Timestamp": timestamp,
                    "Unit": metric.get("Unit") or "None",
                    "StorageResolution": int(metric.get("StorageResolution") or 60),
                }
                if len(values) == 1:
                    datum["Value"] = values[0]
                else:
                    datum["Values"] = values
                result.setdefault(namespace, []).append(datum)
    return result


class EmfPublisher:
    """Publishes EMF log lines to a CloudWatch client (moto's) from a background thread.

    Like CloudWatch Logs, extraction is asynchronous: a request never waits for its metrics.
    Call :meth:`flush` to wait until everything seen so far is in CloudWatch (tests, alarms).
    """

    def __init__(self, cloudwatch: Any) -> None:
        self._cloudwatch = cloudwatch
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="sklambda-emf", daemon=True)
        self._thread.start()

    def warm_up(self) -> None:
        """Make the client's first (slow, lazily loaded) request now rather than on a cold start."""
        try:
            self._cloudwatch.list_metrics(Namespace="sklambda-local/warm-up")
        except Exception as exc:
            log.debug("CloudWatch warm-up failed: %s", exc)

    def publish_line(self, line: str) -> bool:
        """Queue the metrics in ``line`` if it is an EMF document; True when it was one."""
        doc = parse_emf_line(line)
        if doc is None:
            return False
        self._queue.put(doc)
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued document is published; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def close(self) -> None:
        """Publish what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            docs = [self._queue.get()]
            while True:  # drain what is already there: one call per namespace for a burst
                try:
                    docs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._publish([d for d in docs if d is not None])
            finally:
                for _ in docs:
                    self._queue.task_done()
            if None in docs:
                return

    def _publish(self, docs: list[dict[str, Any]]) -> None:
        by_namespace: dict[str, list[dict[str, Any]]] = {}
        for doc in docs:
            try:
                for namespace, data in emf_metric_data(doc).items():
                    by_namespace.setdefault(namespace, []).extend(data)
            except Exception as exc:
                log.warning("dropped an invalid EMF document: %s", exc)
        for namespace, data in by_namespace.items():
            for i in range(0, len(data), _MAX_DATUMS_PER_CALL):
                try:
                    self._cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[i : i + _MAX_DATUMS_PER_CALL])
                except Exception as exc:  # a bad metric must never stop the publisher
                    log.warning("dropped EMF metrics for namespace %s: %s", namespace, exc)
