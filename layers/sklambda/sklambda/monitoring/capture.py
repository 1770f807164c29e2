"""Capture: every served row goes to a Firehose delivery stream, which writes it to S3.

Each row is one ``CaptureRecord`` (this module), as a JSON line; the drift job and live quality
read the same class back. One invocation's rows are packed into as few Firehose records as
possible (each under the 1,000 KiB record limit) and sent with one ``PutRecordBatch`` (at most 500
records / 4 MiB per call) when the invocation ends. Throttling, network errors and partially
failed batches are retried with backoff inside a small time budget; rows that still cannot be
delivered are written to the function's log as structured ``capture_undelivered`` records (from
which they can be replayed) and counted as ``CaptureFailures`` — never silently dropped, and never
failing the prediction they belong to.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from sklambda.monitoring.records import JsonLineRecord

MAX_RECORD_BYTES = 1_000 * 1024 - 1024  # Firehose's per-record limit, with room to spare
MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 4 * 1024 * 1024 - 64 * 1024
RETRYABLE_CODES = {
    "ServiceUnavailableException",
    "ThrottlingException",
    "InternalFailure",
    "ServiceUnavailable",
    "LimitExceededException",
    "RequestTimeout",
}

EventSink = Callable[[str, dict[str, Any]], None]


def _ignore(_event: str, _fields: dict[str, Any]) -> None:
    return None


@dataclass
class FlushResult:
    rows: int = 0
    delivered_rows: int = 0
    failed_rows: int = 0
    attempts: int = 0
    records: int = 0


class CaptureRecord(JsonLineRecord):
    """One served row, as captured: written by ``CaptureSink``, read by the drift job and live quality.

    ``features`` holds the validated inputs by name (missing values as null); their types are not
    checked here, so a row with a wrongly typed feature still counts, and the drift statistics
    report the value as invalid.
    """

    captured_at: str = ""
    prediction_id: str | None = None
    model: str
    version: str
    features: dict[str, Any]
    prediction: Any = None
    probabilities: list[float] | None = None

    reject_reasons: ClassVar[dict[str, str]] = {
        "model": "missing_model_or_version",
        "version": "missing_model_or_version",
        "features": "missing_features",
    }


class JsonLine(Protocol):
    def to_json_line(self) -> bytes: ...


@dataclass
class CaptureSink:
    """Buffers one invocation's captured rows and delivers them to Firehose."""

    client_factory: Callable[[], Any]
    stream_name: str
    sample_rate: float = 1.0
    max_attempts: int = 4
    time_budget_seconds: float = 2.0
    on_event: EventSink = _ignore
    sleep: Callable[[float], None] = time.sleep
    rng: Callable[[], float] = random.random
    _lines: list[bytes] = field(default_factory=list)

    def record(
        self,
        *,
        model: str,
        version: str,
        feature_names: Sequence[str],
        rows: Sequence[Sequence[Any]],
        prediction_ids: Sequence[str],
        predictions: Sequence[Any],
        probabilities: Sequence[Sequence[float]] | None = None,
    ) -> int:
        """Buffer the sampled rows of one prediction request. Returns how many were kept."""
        captured_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        kept = 0
        for i, row in enumerate(rows):
            if self.sample_rate < 1.0 and self.rng() >= self.sample_rate:
                continue
            record = CaptureRecord(
                captured_at=captured_at,
                prediction_id=prediction_ids[i],
                model=model,
                version=version,
                features=dict(zip(feature_names, row, strict=True)),
                prediction=predictions[i],
                probabilities=list(probabilities[i]) if probabilities is not None else None,
            )
            self._lines.append(record.to_json_line())
            kept += 1
        return kept

    def record_documents(self, records: Sequence[JsonLine]) -> None:
        """Buffer other records (e.g. ``FeedbackRecord`` labels), one line each, unsampled."""
        for record in records:
            self._lines.append(record.to_json_line())

    @property
    def pending_rows(self) -> int:
        return len(self._lines)

    def _pack(self, lines: list[bytes]) -> list[tuple[bytes, int]]:
        """Pack lines into Firehose records under the size limit: (data, row count)."""
        records: list[tuple[bytes, int]] = []
        current: list[bytes] = []
        size = 0
        for line in lines:
            if current and size + len(line) > MAX_RECORD_BYTES:
                records.append((b"".join(current), len(current)))
                current, size = [], 0
            current.append(line)
            size += len(line)
        if current:
            records.append((b"".join(current), len(current)))
        return records

    @staticmethod
    def _batches(records: list[tuple[bytes, int]]) -> list[list[tuple[bytes, int]]]:
        batches: list[list[tuple[bytes, int]]] = []
        current: list[tuple[bytes, int]] = []
        size = 0
        for record in records:
            if current and (len(current) >= MAX_BATCH_RECORDS or size + len(record[0]) > MAX_BATCH_BYTES):
                batches.append(current)
                current, size = [], 0
            current.append(record)
            size += len(record[0])
        if current:
            batches.append(current)
        return batches

    def flush(self) -> FlushResult:
        """Deliver everything buffered. Never raises: failures are logged with the rows and counted."""
        lines, self._lines = self._lines, []
        result = FlushResult(rows=len(lines))
        if not lines:
            return result
        deadline = time.monotonic() + self.time_budget_seconds
        pending = self._pack(lines)
        result.records = len(pending)
        try:
            client = self.client_factory()
        except Exception as err:
            self._give_up(pending, result, f"no Firehose client: {err}")
            return result
        for batch in self._batches(pending):
            self._deliver(client, batch, result, deadline)
        if result.failed_rows:
            self.on_event("CaptureFailures", {"rows": result.failed_rows, "stream": self.stream_name})
        return result

    def _deliver(self, client: Any, batch: list[tuple[bytes, int]], result: FlushResult, deadline: float) -> None:
        attempt = 0
        error = ""
        while batch:
            attempt += 1
            result.attempts += 1
            try:
                response = client.put_record_batch(
                    DeliveryStreamName=self.stream_name, Records=[{"Data": data} for data, _ in batch]
                )
            except ClientError as err:
                code = err.response.get("Error", {}).get("Code", "")
                error = f"{code}: {err}"
                if code not in RETRYABLE_CODES and code != "":
                    break
            except (BotoCoreError, OSError) as err:
                error = repr(err)
            else:
                failed = []
                for record, answer in zip(batch, response.get("RequestResponses", []), strict=False):
                    if answer.get("ErrorCode"):
                        failed.append(record)
                        error = f"{answer.get('ErrorCode')}: {answer.get('ErrorMessage', '')}"
                    else:
                        result.delivered_rows += record[1]
                if len(response.get("RequestResponses", [])) < len(batch):  # defensive: unanswered = failed
                    failed.extend(batch[len(response.get("RequestResponses", [])) :])
                batch = failed
                if not batch:
                    return
            if attempt >= self.max_attempts:
                break
            backoff = min(0.05 * 2 ** (attempt - 1), 0.5) * (0.5 + self.rng())
            if time.monotonic() + backoff > deadline:
                break
            self.sleep(backoff)
        self._give_up(batch, result, error)

    def _give_up(self, records: list[tuple[bytes, int]], result: FlushResult, error: str) -> None:
        rows = sum(n for _, n in records)
        result.failed_rows += rows
        # The rows go to the log in full: CloudWatch Logs keeps them for replay.
        payload = b"".join(data for data, _ in records).decode()
        self.on_event(
            "capture_undelivered",
            {"stream": self.stream_name, "rows": rows, "error": error[:500], "records": payload},
        )
