"""The capture and feedback records (one definition, written and read the same way) and live quality
(one definition of accuracy and RMSE, with the direction the canary compares them in). No network."""

from __future__ import annotations

import json
import math

import pytest

from sklambda.monitoring.capture import CaptureRecord
from sklambda.monitoring.feedback import FeedbackRecord, same_label
from sklambda.monitoring.quality import QualityScore, score_predictions
from sklambda.monitoring.records import BadRecord

# Lines exactly as the capture and feedback writers before CaptureRecord/FeedbackRecord produced
# them (json.dumps, ASCII escapes, compact separators): captures already in S3 must still be read.
LEGACY_CLASSIFIER = (
    b'{"captured_at":"2026-11-23T06:00:00.123Z","prediction_id":"demo.v3.abc-0.sig","model":"demo","version":"3",'
    b'"features":{"age":30.0,"plan":"b\\u00e1sic","income":null},"prediction":1,"probabilities":[0.25,0.75]}'
)
LEGACY_REGRESSOR = (
    b'{"captured_at":"2026-11-23T06:00:00.123Z","prediction_id":"p-1","model":"houses","version":"1",'
    b'"features":{"rooms":3},"prediction":201.5}'
)
LEGACY_FEEDBACK = (
    b'{"received_at":"2026-11-23T07:00:00.000Z","prediction_id":"demo.v3.abc-0.sig","model":"demo",'
    b'"version":"3","label":1}'
)


def test_captures_written_before_the_record_type_are_read_unchanged():
    record = CaptureRecord.parse_line(LEGACY_CLASSIFIER)
    assert (record.model, record.version, record.prediction_id) == ("demo", "3", "demo.v3.abc-0.sig")
    assert record.features == {"age": 30.0, "plan": "básic", "income": None}
    assert record.prediction == 1 and type(record.prediction) is int and record.probabilities == [0.25, 0.75]
    regression = CaptureRecord.parse_line(LEGACY_REGRESSOR)
    assert regression.prediction == 201.5 and regression.probabilities is None
    label = FeedbackRecord.parse_line(LEGACY_FEEDBACK)
    assert (label.prediction_id, label.model, label.version, label.label) == ("demo.v3.abc-0.sig", "demo", "3", 1)


def test_a_written_record_is_the_same_document_and_reads_back_equal():
    record = CaptureRecord(
        captured_at="2026-11-23T06:00:00.123Z",
        prediction_id="demo.v3.abc-0.sig",
        model="demo",
        version="3",
        features={"age": 30.0, "plan": "básic", "income": None},
        prediction=1,
        probabilities=[0.25, 0.75],
    )
    line = record.to_json_line()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == json.loads(LEGACY_CLASSIFIER), "the on-disk document did not change"
    assert CaptureRecord.parse_line(line) == record
    regressor = CaptureRecord(model="houses", version="1", features={"rooms": 3}, prediction=201.5)
    assert "probabilities" not in json.loads(regressor.to_json_line()), "regressors write no probabilities"


def test_non_finite_feature_values_are_written_as_null_so_the_line_stays_json():
    line = CaptureRecord(model="m", version="1", features={"a": math.nan, "b": math.inf}).to_json_line()
    assert json.loads(line)["features"] == {"a": None, "b": None}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b"[1,2]", "not_an_object"),
        (b'"text"', "not_an_object"),
        (b'{"model":"demo","features":{}}', "missing_model_or_version"),
        (b'{"model":5,"version":"1","features":{}}', "missing_model_or_version"),
        (b'{"model":"demo","version":"1","features":"x"}', "missing_features"),
        (b'{"model":"demo","version":1,"features":"x"}', "missing_model_or_version"),
        (b'{"model":"demo","version":"1","features":{},"probabilities":"x"}', "invalid_field"),
    ],
)
def test_an_unusable_capture_line_says_why(line, reason):
    with pytest.raises(BadRecord) as bad:
        CaptureRecord.parse_line(line)
    assert bad.value.reason == reason


def test_wrongly_typed_feature_values_still_parse_for_the_drift_statistics_to_count():
    record = CaptureRecord.parse_line(b'{"model":"demo","version":"1","features":{"age":"old","extra":[1]}}')
    assert record.features == {"age": "old", "extra": [1]}


def test_a_feedback_line_needs_an_id_a_model_and_a_label():
    with pytest.raises(BadRecord, match="missing_label"):
        FeedbackRecord.parse_line(b'{"prediction_id":"p","model":"demo"}')
    with pytest.raises(BadRecord, match="missing_prediction_id"):
        FeedbackRecord.parse_line(b'{"model":"demo","label":1}')
    assert FeedbackRecord.parse_line(b'{"prediction_id":"p","model":"demo","label":true}').label is True


def test_same_label_matches_numbers_across_int_and_float_but_never_booleans():
    assert same_label(1, 1) and same_label(1, 1.0) and same_label("yes", "yes")
    assert not same_label(True, 1) and not same_label(1, "1") and not same_label(0, 1)


def test_accuracy_counts_predictions_naming_the_label_class():
    score = score_predictions("classification", [(1, 1), (0, 1), (1, 1.0), (True, 1)])
    assert score == QualityScore(metric="accuracy", value=0.5, rows=4)
    assert score_predictions("classification", []) is None


def test_rmse_over_numeric_pairs_only():
    score = score_predictions("regression", [(10.0, 13.0), (5, 1), ("x", 1), (True, 1), (2.0, math.nan)])
    assert score is not None and score.metric == "rmse" and score.rows == 2
    assert score.value == pytest.approx(math.sqrt((9 + 16) / 2))


def test_worse_than_knows_accuracy_is_higher_is_better_and_rmse_lower_is_better():
    accurate, sloppy = (
        QualityScore(metric="accuracy", value=0.9, rows=50),
        QualityScore(metric="accuracy", value=0.8, rows=50),
    )
    assert sloppy.worse_than(accurate, margin=0.05) and not accurate.worse_than(sloppy, margin=0.05)
    assert not QualityScore(metric="accuracy", value=0.88, rows=5).worse_than(accurate, margin=0.05)
    close, far = QualityScore(metric="rmse", value=2.0, rows=50), QualityScore(metric="rmse", value=40.0, rows=50)
    assert far.worse_than(close, margin=0.05) and not close.worse_than(far, margin=0.05)
    assert not QualityScore(metric="rmse", value=2.05, rows=5).worse_than(close, margin=0.05), "within 5 %"
    with pytest.raises(ValueError):
        close.worse_than(accurate, margin=0.05)
