"""Capture to Firehose: delivered to S3 through moto's real Firehose, retried, never lost silently."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from sklambda.monitoring.capture import MAX_RECORD_BYTES, CaptureRecord, CaptureSink
from sklambda.monitoring.feedback import FeedbackRecord


@pytest.fixture
def stream(moto_server, delivery_stream, bucket) -> tuple[str, Any]:
    firehose = boto3.client("firehose", endpoint_url=moto_server, region_name="us-east-1")
    name = delivery_stream(f"captures-{uuid.uuid4().hex[:8]}", bucket, "captures/")
    return name, firehose


def _record(sink: CaptureSink, n: int, model: str = "demo") -> None:
    sink.record(
        model=model,
        version="3",
        feature_names=["age", "plan"],
        rows=[[30.0 + i, "basic"] for i in range(n)],
        prediction_ids=[f"p-{i}" for i in range(n)],
        predictions=[i % 2 for i in range(n)],
        probabilities=[[0.4, 0.6]] * n,
    )


def _captured_lines(s3, bucket) -> list[dict]:
    lines = []
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix="captures/").get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode()
        lines += [json.loads(line) for line in body.splitlines() if line]
    return lines


def test_rows_reach_s3_through_firehose_as_json_lines(stream, s3, bucket):
    name, firehose = stream
    sink = CaptureSink(lambda: firehose, name)
    _record(sink, 3)
    result = sink.flush()
    assert (result.rows, result.delivered_rows, result.failed_rows) == (3, 3, 0)

    lines = _captured_lines(s3, bucket)
    assert [r["prediction_id"] for r in lines] == ["p-0", "p-1", "p-2"]
    assert lines[0]["features"] == {"age": 30.0, "plan": "basic"} and lines[0]["model"] == "demo"
    assert lines[0]["version"] == "3" and lines[0]["probabilities"] == [0.4, 0.6]
    key = s3.list_objects_v2(Bucket=bucket, Prefix="captures/")["Contents"][0]["Key"]
    assert key.count("/") == 5, "captures/YYYY/MM/DD/HH/<object>, as Firehose writes without expressions"


def _raw_lines(s3, bucket) -> list[bytes]:
    lines = []
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix="captures/").get("Contents", []):
        lines += [line for line in s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().splitlines() if line]
    return lines


def test_what_the_sink_writes_is_what_the_readers_parse(stream, s3, bucket):
    """One record type per line format: the drift job and live quality read exactly what was written."""
    name, firehose = stream
    sink = CaptureSink(lambda: firehose, name)
    sink.record(
        model="demo",
        version="3",
        feature_names=["age", "plan"],
        rows=[[float("nan"), "basic"], [41.0, None]],
        prediction_ids=["p-0", "p-1"],
        predictions=[1.5, 2.5],
    )
    label = FeedbackRecord(received_at="t", prediction_id="p-0", model="demo", version="3", label=1)
    sink.record_documents([label])
    assert sink.flush().delivered_rows == 3

    first, second, stored = _raw_lines(s3, bucket)
    captured = CaptureRecord.parse_line(first)
    assert captured.features == {"age": None, "plan": "basic"}, "NaN is stored as null"
    assert (captured.prediction_id, captured.prediction, captured.probabilities) == ("p-0", 1.5, None)
    assert CaptureRecord.parse_line(second).features == {"age": 41.0, "plan": None}
    assert FeedbackRecord.parse_line(stored) == label


def test_large_batches_are_packed_under_the_record_limit(stream, s3, bucket):
    name, firehose = stream
    sink = CaptureSink(lambda: firehose, name)
    big = "x" * 4000
    sink.record(
        model="demo",
        version="1",
        feature_names=["text"],
        rows=[[big]] * 600,
        prediction_ids=[str(i) for i in range(600)],
        predictions=[0] * 600,
    )
    result = sink.flush()
    assert result.records >= 3 and result.delivered_rows == 600
    assert len(_captured_lines(s3, bucket)) == 600
    assert all(len(data) <= MAX_RECORD_BYTES for data, _ in sink._pack([b"y" * 5000 + b"\n"] * 600))


def test_sampling_keeps_about_the_configured_share(stream):
    name, firehose = stream
    sink = CaptureSink(lambda: firehose, name, sample_rate=0.25)
    _record(sink, 4000)
    assert 800 < sink.pending_rows < 1200
    sink.flush()


class FaultyFirehose:
    """A Firehose stand-in that throttles, fails some records, then recovers (moto cannot fail)."""

    def __init__(self, real: Any, script: list[str]) -> None:
        self.real, self.script, self.calls = real, list(script), 0

    def put_record_batch(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        step = self.script.pop(0) if self.script else "ok"
        if step == "throttle":
            raise ClientError(
                {"Error": {"Code": "ServiceUnavailableException", "Message": "Slow down"}}, "PutRecordBatch"
            )
        if step == "network":
            raise EndpointConnectionError(endpoint_url="https://firehose.us-east-1.amazonaws.com")
        if step == "partial":
            records = kwargs["Records"]
            first = self.real.put_record_batch(DeliveryStreamName=kwargs["DeliveryStreamName"], Records=records[:1])
            return {
                "FailedPutCount": len(records) - 1,
                "RequestResponses": first["RequestResponses"]
                + [{"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "busy"}] * (len(records) - 1),
            }
        return self.real.put_record_batch(**kwargs)


def test_throttling_and_partial_failures_are_retried_until_delivered(stream, s3, bucket):
    name, firehose = stream
    faulty = FaultyFirehose(firehose, ["throttle", "network", "partial"])
    events: list[tuple[str, dict]] = []
    sink = CaptureSink(
        lambda: faulty, name, max_attempts=5, sleep=lambda _s: None, on_event=lambda e, f: events.append((e, f))
    )
    big = "z" * 300_000  # three rows per record → several records per batch
    sink.record(
        model="demo",
        version="1",
        feature_names=["t"],
        rows=[[big]] * 9,
        prediction_ids=[str(i) for i in range(9)],
        predictions=[0] * 9,
    )
    result = sink.flush()

    assert result.delivered_rows == 9 and result.failed_rows == 0 and faulty.calls == 4
    assert sorted(r["prediction_id"] for r in _captured_lines(s3, bucket)) == [str(i) for i in range(9)]
    assert events == []


def test_what_cannot_be_delivered_is_logged_with_its_rows_and_counted(stream):
    name, firehose = stream
    faulty = FaultyFirehose(firehose, ["throttle"] * 10)
    events: list[tuple[str, dict]] = []
    sink = CaptureSink(
        lambda: faulty, name, max_attempts=3, sleep=lambda _s: None, on_event=lambda e, f: events.append((e, f))
    )
    _record(sink, 5)
    result = sink.flush()

    assert (result.delivered_rows, result.failed_rows, faulty.calls) == (0, 5, 3)
    kinds = dict(events)
    assert kinds["CaptureFailures"]["rows"] == 5
    logged = [json.loads(line) for line in kinds["capture_undelivered"]["records"].splitlines()]
    assert [r["prediction_id"] for r in logged] == [f"p-{i}" for i in range(5)], "the rows survive in the log"


def test_a_missing_stream_never_raises_into_the_prediction(moto_server):
    firehose = boto3.client("firehose", endpoint_url=moto_server, region_name="us-east-1")
    events: list[tuple[str, dict]] = []
    sink = CaptureSink(
        lambda: firehose, "no-such-stream", sleep=lambda _s: None, on_event=lambda e, f: events.append((e, f))
    )
    _record(sink, 2)
    result = sink.flush()
    assert result.failed_rows == 2 and dict(events)["CaptureFailures"]["rows"] == 2
