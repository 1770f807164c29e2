"""The local alarm evaluator alone: M out of N, missing-data treatment, statistics, periods (no network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sklambda_dev.local.alarms import (
    ALARM,
    INSUFFICIENT_DATA,
    OK,
    AlarmSpec,
    UnsupportedAlarm,
    evaluate_state,
    period_values,
    statistic,
)
from sklambda_dev.local.template import Alarm

X, G, _ = 9.0, 1.0, None  # breaching, good (not breaching: threshold 5, >=), missing


def state(values, m, treat, current=INSUFFICIENT_DATA):
    return evaluate_state(
        values,
        comparison="GreaterThanOrEqualToThreshold",
        threshold=5.0,
        datapoints_to_alarm=m,
        treat_missing_data=treat,
        current_state=current,
    )


# ------------------------------------------------------------------------------- M out of N
@pytest.mark.parametrize(
    ("values", "m", "expected"),
    [
        ([X], 1, ALARM),
        ([G], 1, OK),
        ([X, X, X], 3, ALARM),
        ([X, G, X], 3, OK),  # 2 of 3 is not 3 of 3
        ([X, G, X], 2, ALARM),  # 2 out of 3
        ([G, G, X], 2, OK),
        ([X, X, G, G, G], 2, ALARM),  # any 2 of the 5, not only the newest
        ([G, X, G, X, G], 3, OK),
    ],
)
def test_m_out_of_n(values, m, expected):
    for treat in ("missing", "ignore", "breaching", "notBreaching"):  # no missing data: all agree
        assert state(values, m, treat, current=OK) == expected, treat
        assert state(values, m, treat, current=ALARM) == expected, treat


def test_threshold_comparisons():
    def check(op, value):
        return evaluate_state([value], comparison=op, threshold=5.0, datapoints_to_alarm=1)

    assert check("GreaterThanOrEqualToThreshold", 5.0) == ALARM
    assert check("GreaterThanThreshold", 5.0) == OK
    assert check("GreaterThanThreshold", 5.1) == ALARM
    assert check("LessThanThreshold", 4.9) == ALARM
    assert check("LessThanThreshold", 5.0) == OK
    assert check("LessThanOrEqualToThreshold", 5.0) == ALARM


# ------------------------------------------------------------------------ missing data
@pytest.mark.parametrize(
    ("values", "m", "current", "missing", "ignore", "breaching", "not_breaching"),
    [
        # No data at all.
        ([_, _, _], 3, OK, INSUFFICIENT_DATA, OK, ALARM, OK),
        ([_, _, _], 3, ALARM, INSUFFICIENT_DATA, ALARM, ALARM, OK),
        ([_], 1, INSUFFICIENT_DATA, INSUFFICIENT_DATA, INSUFFICIENT_DATA, ALARM, OK),
        # Fewer datapoints than M, all breaching: CloudWatch's "- - X" row.
        ([_, _, X], 3, OK, ALARM, OK, ALARM, OK),
        ([_, X, X], 3, OK, ALARM, OK, ALARM, OK),
        # A good datapoint among the missing ones.
        ([_, _, G], 3, ALARM, OK, OK, OK, OK),
        ([_, _, G], 1, ALARM, OK, ALARM, ALARM, OK),  # ignore: M=1 could still breach → keep
        ([G, _, X], 2, OK, OK, OK, ALARM, OK),
        ([G, _, X], 2, ALARM, OK, ALARM, ALARM, OK),  # ignore: undecided → keep ALARM
        ([G, G, _], 2, ALARM, OK, OK, OK, OK),  # two good of 3 with M=2: decided OK
        ([X, _, X], 2, OK, ALARM, ALARM, ALARM, ALARM),  # M breaching present: ALARM for all
    ],
)
def test_missing_data_treatment(values, m, current, missing, ignore, breaching, not_breaching):
    assert state(values, m, "missing", current) == missing
    assert state(values, m, "ignore", current) == ignore
    assert state(values, m, "breaching", current) == breaching
    assert state(values, m, "notBreaching", current) == not_breaching


# -------------------------------------------------------------------------------- statistics
def test_statistics_over_values_and_statistic_sets():
    values = [1.0, 2.0, 3.0, 10.0]
    aggregates = [(20.0, 4.0, 12.0, 4.0)]  # sum, min, max, count
    assert statistic("SampleCount", values, aggregates) == 8.0
    assert statistic("Sum", values, aggregates) == 36.0
    assert statistic("Average", values, aggregates) == 4.5
    assert statistic("Minimum", values, aggregates) == 1.0
    assert statistic("Maximum", values, aggregates) == 12.0
    for stat in ("SampleCount", "Sum", "Average", "Minimum", "Maximum", "p99"):
        assert statistic(stat, []) is None


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert statistic("p50", values) == 50.0
    assert statistic("p99", values) == 99.0
    assert statistic("p99.9", values) == 100.0
    assert statistic("p100", values) == 100.0
    assert statistic("p0", values) == 1.0
    assert statistic("p90", [5.0]) == 5.0
    assert statistic("p99", [], [(10.0, 1.0, 9.0, 2.0)]) is None  # a StatisticSet has no distribution


# ------------------------------------------------------------------------------------ specs
def alarm(**kwargs):
    put = {
        "AlarmName": "a",
        "Namespace": "ns",
        "MetricName": "m",
        "Dimensions": [{"Name": "service", "Value": "x"}],
        "Statistic": "Maximum",
        "Period": 60,
        "EvaluationPeriods": 3,
        "Threshold": 5.0,
        "ComparisonOperator": "GreaterThanThreshold",
    }
    put.update(kwargs)
    return Alarm("A", "a", "arn:aws:cloudwatch:us-east-1:123456789012:alarm:a", {k: v for k, v in put.items() if v})


def test_spec_defaults_and_percentiles():
    spec = AlarmSpec.from_alarm(alarm())
    assert (spec.datapoints_to_alarm, spec.treat_missing_data, spec.actions_enabled) == (3, "missing", True)
    assert spec.dimensions == (("service", "x"),)
    p99 = AlarmSpec.from_alarm(alarm(Statistic=None, ExtendedStatistic="p99", DatapointsToAlarm=2))
    assert (p99.stat, p99.is_percentile, p99.datapoints_to_alarm) == ("p99", True, 2)


def test_spec_from_a_single_metric_stat_query():
    spec = AlarmSpec.from_alarm(
        alarm(
            Namespace=None,
            MetricName=None,
            Dimensions=None,
            Statistic=None,
            Period=None,
            Metrics=[
                {
                    "Id": "errors",
                    "ReturnData": True,
                    "MetricStat": {
                        "Metric": {"Namespace": "AWS/Lambda", "MetricName": "Errors", "Dimensions": []},
                        "Period": 300,
                        "Stat": "Sum",
                    },
                }
            ],
        )
    )
    assert (spec.namespace, spec.metric_name, spec.stat, spec.period, spec.metric_id) == (
        "AWS/Lambda",
        "Errors",
        "Sum",
        300,
        "errors",
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ComparisonOperator": "LessThanLowerOrGreaterThanUpperThreshold"},
        {"Statistic": None, "ExtendedStatistic": "tm99"},
        {"DatapointsToAlarm": 4},
        {"TreatMissingData": "sometimes"},
        {"Metrics": [{"Id": "e", "Expression": "m1 * 2"}, {"Id": "m1", "MetricStat": {}}]},
    ],
)
def test_unsupported_alarms(kwargs):
    with pytest.raises(UnsupportedAlarm):
        AlarmSpec.from_alarm(alarm(**kwargs))


# --------------------------------------------------------------------------------- periods
class Datapoints:
    """An in-memory metric store with MotoMetrics.datapoints' signature."""

    def __init__(self, points):
        self.points = points  # [(timestamp, value, dimensions)]
        self.calls = []

    def datapoints(self, namespace, metric_name, dimensions, start, end, unit=None):
        self.calls.append((start, end))
        return [v for t, v, d in self.points if start <= t < end and d == tuple(dimensions)], []


def test_periods_end_now_and_are_read_oldest_first():
    now = datetime(2024, 5, 14, 10, 0, 0, tzinfo=UTC)
    dims = (("service", "x"),)
    spec = AlarmSpec.from_alarm(alarm(Period=60, EvaluationPeriods=3))
    source = Datapoints(
        [
            (now - timedelta(seconds=170), 1.0, dims),  # oldest period
            (now - timedelta(seconds=100), 7.0, dims),  # middle
            (now - timedelta(seconds=101), 3.0, dims),
            (now - timedelta(seconds=1), 8.0, (("service", "y"),)),  # other dimensions
            (now - timedelta(seconds=181), 99.0, dims),  # before the window
            (now, 99.0, dims),  # the window is [now - 180 s, now)
        ]
    )
    values, evaluated = period_values(spec, source, now)
    assert values == [1.0, 7.0, None]
    assert source.calls[0] == (now - timedelta(seconds=180), now - timedelta(seconds=120))
    assert source.calls[-1] == (now - timedelta(seconds=60), now)
    assert [e["value"] for e in evaluated] == [7.0, 1.0]  # newest first, as CloudWatch lists them
    assert evaluated[0] == {"timestamp": "2024-05-14T09:58:00.000+0000", "sampleCount": 2.0, "value": 7.0}
