"""EventBridge pattern matching and target input shaping of the local event bus (no network)."""

from __future__ import annotations

import pytest

from sklambda_dev.local.eventpattern import json_path, matches, target_input, validate_pattern

ALARM_EVENT = {
    "version": "0",
    "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "CloudWatch Alarm State Change",
    "source": "aws.cloudwatch",
    "account": "123456789012",
    "time": "2024-05-14T10:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:drift"],
    "detail": {
        "alarmName": "drift",
        "state": {"value": "ALARM", "reason": "Threshold Crossed", "timestamp": "2024-05-14T10:00:00.000+0000"},
        "previousState": {"value": "OK"},
        "configuration": {
            "metrics": [{"id": "m1", "metricStat": {"metric": {"name": "DriftScore"}, "period": 3600}}],
        },
        "score": 0.42,
        "count": 300,
        "flag": True,
        "nothing": None,
        "tags": ["drift", "demo"],
        "ip": "10.0.3.7",
    },
}


def m(pattern, event=ALARM_EVENT):
    validate_pattern(pattern)
    return matches(pattern, event)


def test_the_retrain_rule_pattern():
    pattern = {
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
        "resources": ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:drift"],
        "detail": {"state": {"value": ["ALARM"]}},
    }
    assert m(pattern)
    ok = {**ALARM_EVENT, "detail": {**ALARM_EVENT["detail"], "state": {"value": "OK"}}}
    assert not m(pattern, ok)
    assert not m({**pattern, "resources": ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:other"]})


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        # exact values: strings, numbers (numerically), booleans, null; lists are OR
        ({"source": ["aws.ec2", "aws.cloudwatch"]}, True),
        ({"source": ["AWS.CLOUDWATCH"]}, False),
        ({"detail": {"count": [300]}}, True),
        ({"detail": {"count": [3.0e2]}}, True),
        ({"detail": {"count": ["300"]}}, False),
        ({"detail": {"flag": [True]}}, True),
        ({"detail": {"flag": ["true"]}}, False),
        ({"detail": {"nothing": [None]}}, True),
        ({"detail": {"alarmName": [None]}}, False),
        # arrays in the event: any element
        ({"detail": {"tags": ["demo"]}}, True),
        ({"detail": {"tags": ["prod"]}}, False),
        ({"resources": [{"prefix": "arn:aws:cloudwatch:"}]}, True),
        # nested objects, and arrays of objects
        ({"detail": {"configuration": {"metrics": {"metricStat": {"period": [3600]}}}}}, True),
        ({"detail": {"configuration": {"metrics": {"metricStat": {"period": [60]}}}}}, False),
        # prefix / suffix / equals-ignore-case / wildcard
        ({"detail-type": [{"prefix": "CloudWatch Alarm"}]}, True),
        ({"detail-type": [{"prefix": {"equals-ignore-case": "cloudwatch alarm"}}]}, True),
        ({"detail-type": [{"prefix": "cloudwatch"}]}, False),
        ({"detail-type": [{"suffix": "State Change"}]}, True),
        ({"detail-type": [{"suffix": {"equals-ignore-case": "STATE CHANGE"}}]}, True),
        ({"source": [{"equals-ignore-case": "AWS.CloudWatch"}]}, True),
        ({"resources": [{"wildcard": "arn:aws:cloudwatch:*:alarm:dr*"}]}, True),
        ({"resources": [{"wildcard": "arn:aws:cloudwatch:*:alarm:x*"}]}, False),
        # anything-but: present and none of
        ({"detail": {"state": {"value": [{"anything-but": "OK"}]}}}, True),
        ({"detail": {"state": {"value": [{"anything-but": ["ALARM", "OK"]}]}}}, False),
        ({"detail": {"state": {"value": [{"anything-but": {"prefix": "AL"}}]}}}, False),
        ({"detail": {"state": {"value": [{"anything-but": {"suffix": "RM"}}]}}}, False),
        ({"detail": {"state": {"value": [{"anything-but": {"equals-ignore-case": "ok"}}]}}}, True),
        ({"detail": {"missing": [{"anything-but": "x"}]}}, False),  # needs the field
        ({"detail": {"count": [{"anything-but": [100, 200]}]}}, True),
        # numeric
        ({"detail": {"score": [{"numeric": [">=", 0.3]}]}}, True),
        ({"detail": {"score": [{"numeric": [">", 0, "<", 0.4]}]}}, False),
        ({"detail": {"score": [{"numeric": [">", 0, "<=", 0.42]}]}}, True),
        ({"detail": {"count": [{"numeric": ["=", 300]}]}}, True),
        ({"detail": {"alarmName": [{"numeric": [">", 0]}]}}, False),  # not a number
        # exists
        ({"detail": {"alarmName": [{"exists": True}]}}, True),
        ({"detail": {"missing": [{"exists": False}]}}, True),
        ({"detail": {"alarmName": [{"exists": False}]}}, False),
        ({"detail": {"missing": [{"exists": True}]}}, False),
        ({"detail": {"state": [{"exists": True}]}}, False),  # exists matches leaves only
        ({"absent": {"deeper": [{"exists": False}]}}, True),
        # cidr
        ({"detail": {"ip": [{"cidr": "10.0.0.0/16"}]}}, True),
        ({"detail": {"ip": [{"cidr": "10.1.0.0/16"}]}}, False),
        # $or
        ({"$or": [{"source": ["aws.ec2"]}, {"detail": {"score": [{"numeric": [">", 0.4]}]}}]}, True),
        ({"$or": [{"source": ["aws.ec2"]}, {"detail-type": ["Scheduled Event"]}]}, False),
        # a missing field fails an exact match; every key must match
        ({"detail": {"missing": ["x"]}}, False),
        ({"source": ["aws.cloudwatch"], "region": ["eu-west-1"]}, False),
    ],
)
def test_operators(pattern, expected):
    assert m(pattern) is expected


@pytest.mark.parametrize(
    "pattern",
    [
        {},
        {"source": "aws.cloudwatch"},  # leaves must be lists
        {"source": []},
        {"source": [{"regex": ".*"}]},  # not an EventBridge operator
        {"detail": {"score": [{"numeric": [">>", 1]}]}},
        {"detail": {"score": [{"numeric": [">", "1"]}]}},
        {"detail": {"score": [{"exists": "yes"}]}},
        {"detail": {"ip": [{"cidr": "not-a-network"}]}},
        {"detail": {"x": [{"anything-but": {"numeric": [">", 1]}}]}},
        {"$or": [{"source": ["a"]}]},
        {"source": [{"prefix": 1}]},
    ],
)
def test_invalid_patterns_are_refused(pattern):
    with pytest.raises(ValueError):
        validate_pattern(pattern)


# ------------------------------------------------------------------------------- target input
def test_json_path():
    assert json_path(ALARM_EVENT, "$") is ALARM_EVENT
    assert json_path(ALARM_EVENT, "$.detail.state.value") == "ALARM"
    assert json_path(ALARM_EVENT, "$.detail-type") == "CloudWatch Alarm State Change"
    assert json_path(ALARM_EVENT, "$['detail-type']") == "CloudWatch Alarm State Change"
    assert json_path(ALARM_EVENT, "$.resources[0]").endswith(":alarm:drift")
    assert json_path(ALARM_EVENT, "$.detail.configuration.metrics[0].metricStat.period") == 3600
    assert json_path(ALARM_EVENT, "$.detail.nope.deeper") is None
    assert json_path(ALARM_EVENT, "$.resources[5]") is None


def test_target_input():
    assert target_input(ALARM_EVENT) is ALARM_EVENT
    assert target_input(ALARM_EVENT, input='{"model": "demo"}') == {"model": "demo"}
    assert target_input(ALARM_EVENT, input_path="$.detail.state") == ALARM_EVENT["detail"]["state"]
    transformer = {
        "InputPathsMap": {"alarm": "$.detail.alarmName", "score": "$.detail.score", "tags": "$.detail.tags"},
        "InputTemplate": '{"alarm": "<alarm>", "score": <score>, "tags": <tags>, "rule": "<aws.events.rule-name>"}',
    }
    assert target_input(ALARM_EVENT, input_transformer=transformer, rule_name="retrain") == {
        "alarm": "drift",
        "score": 0.42,
        "tags": ["drift", "demo"],
        "rule": "retrain",
    }
    text = {"InputPathsMap": {"alarm": "$.detail.alarmName"}, "InputTemplate": "alarm <alarm> fired"}
    assert target_input(ALARM_EVENT, input_transformer=text) == "alarm drift fired"
    whole = {"InputTemplate": '{"event": <aws.events.event.json>}'}
    assert target_input(ALARM_EVENT, input_transformer=whole) == {"event": ALARM_EVENT}
