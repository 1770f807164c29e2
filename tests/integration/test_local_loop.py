"""The local loop over real HTTP and a real moto: the AWS endpoint (Lambda Invoke API served by the
workers, the rest forwarded to moto), Step Functions running the real ASL with real handlers, alarm
evaluation, and EventBridge delivery of alarm state changes. No mocks.

Runs against tests/integration/fixtures/loop/template.yaml: ScoreFunction and DecideFunction (both
with AutoPublishAlias live), FlowStateMachine (Score → Choice → Decide | Skip → SNS publish, with a
Catch to a Fail state), SignalAlarm (Maximum of a custom metric, 10 s period, notBreaching) whose
ALARM state starts FlowStateMachine through a SAM EventBridgeRule event, and a RecorderFunction
fed by an AWS::Events::Rule (alarm changes, with an InputTransformer) and a SAM EventBridgeRule
(custom events).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
import requests
from botocore.config import Config

from sklambda_dev.local import EmbeddedStack
from tests.support.wait import wait_for

TEMPLATE = Path(__file__).parent / "fixtures" / "loop" / "template.yaml"
ACCOUNT = "123456789012"


def _lambda(stack: EmbeddedStack):
    return stack.client("lambda", config=Config(retries={"max_attempts": 1}, read_timeout=30))


def _fn(stack: EmbeddedStack, logical_id: str) -> str:
    return stack.function(logical_id).name


def _subscribe_queue(stack: EmbeddedStack, topic_logical_id: str) -> str:
    """A real SQS queue in moto subscribed to the topic (raw delivery off: the SNS envelope arrives)."""
    sqs = stack.client("sqs")
    url = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    stack.client("sns").subscribe(TopicArn=stack.topic_arn(topic_logical_id), Protocol="sqs", Endpoint=arn)
    return url


def _messages(stack: EmbeddedStack, queue_url: str) -> list[dict]:
    sqs = stack.client("sqs")
    out = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not batch:
            return out
        for message in batch:
            out.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def _alarm_notifications(stack: EmbeddedStack, queue_url: str) -> list[dict]:
    """CloudWatch's notifications among the queue's messages (the state machine's Notify step publishes too)."""
    return [m for m in _messages(stack, queue_url) if m.get("Subject")]


def _records(stack: EmbeddedStack) -> dict[str, dict]:
    s3 = stack.client("s3")
    bucket = stack.bucket("RecordBucket")
    contents = s3.list_objects_v2(Bucket=bucket, Prefix="events/").get("Contents", [])
    return {o["Key"]: json.loads(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()) for o in contents}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    state = tmp_path_factory.mktemp("loop") / "local.json"
    with EmbeddedStack(TEMPLATE, port=0, stack_name="loop-it", state_file=state, alarm_interval=None) as s:
        yield s


# ------------------------------------------------------------------------------ AWS endpoint
def test_the_endpoint_is_a_proxy_in_front_of_moto(stack):
    assert stack.endpoint_url != stack.emulator_url
    assert os.environ["MOTO_PORT"] == stack.endpoint_url.rsplit(":", 1)[1]
    assert stack.function_env("ScoreFunction")["AWS_ENDPOINT_URL"] == stack.endpoint_url
    state = json.loads(stack.state_file.read_text())
    assert state["endpoint_url"] == stack.endpoint_url
    assert state["emulator_url"] == stack.emulator_url
    assert state["state_machines"] == {
        "FlowStateMachine": f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:loop-it-FlowStateMachine"
    }
    assert state["alarm_interval"] is None
    assert state["rules"]["FlowStateMachine.SignalAlarm"]["targets"] == [stack.state_machine_arn("FlowStateMachine")]
    assert state["rules"]["AlarmRecordRule"]["targets"] == [
        f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:loop-it-RecorderFunction:live"
    ]


@pytest.mark.parametrize(
    ("function_name", "qualifier", "invoked_as"),
    [
        ("loop-it-ScoreFunction", None, ""),
        ("loop-it-ScoreFunction:live", None, ":live"),
        ("loop-it-ScoreFunction", "live", ":live"),
        ("loop-it-ScoreFunction:$LATEST", None, ":$LATEST"),
        (f"{ACCOUNT}:function:loop-it-ScoreFunction", None, ""),
        (f"{ACCOUNT}:function:loop-it-ScoreFunction:live", None, ":live"),
        (f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:loop-it-ScoreFunction", None, ""),
        (f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:loop-it-ScoreFunction:live", None, ":live"),
        (f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:loop-it-ScoreFunction", "$LATEST", ":$LATEST"),
    ],
)
def test_lambda_invoke_through_the_endpoint(stack, function_name, qualifier, invoked_as):
    kwargs = {"Qualifier": qualifier} if qualifier else {}
    response = _lambda(stack).invoke(FunctionName=function_name, Payload=b'{"value": 4}', **kwargs)
    assert response["StatusCode"] == 200 and "FunctionError" not in response
    assert response["ExecutedVersion"] == "$LATEST"
    payload = json.loads(response["Payload"].read())
    assert payload["score"] == 8
    arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:loop-it-ScoreFunction"
    assert payload["invoked_function_arn"] == arn + invoked_as  # Lambda's context says how it was called


def test_lambda_invoke_errors_through_the_endpoint(stack):
    client = _lambda(stack)
    failed = client.invoke(FunctionName="loop-it-ScoreFunction", Payload=b'{"fail": true}')
    assert failed["StatusCode"] == 200 and failed["FunctionError"] == "Unhandled"
    error = json.loads(failed["Payload"].read())
    assert (error["errorType"], error["errorMessage"]) == ("ValueError", "scoring failed on purpose")
    assert error["stackTrace"] and error["requestId"]
    with pytest.raises(client.exceptions.ResourceNotFoundException, match="function:no-such-function"):
        client.invoke(FunctionName="no-such-function")
    with pytest.raises(client.exceptions.ResourceNotFoundException, match="loop-it-ScoreFunction:canary"):
        client.invoke(FunctionName="loop-it-ScoreFunction:canary")  # no such alias
    with pytest.raises(client.exceptions.InvalidParameterValueException, match="derived qualifier"):
        client.invoke(FunctionName="loop-it-ScoreFunction:live", Qualifier="$LATEST")
    with pytest.raises(client.exceptions.InvalidRequestContentException):
        client.invoke(FunctionName="loop-it-ScoreFunction", Payload=b"{not json")
    assert client.invoke(FunctionName="loop-it-ScoreFunction", InvocationType="DryRun")["StatusCode"] == 204


def test_event_invocation_through_the_endpoint_runs_in_the_background(stack):
    event_id = f"async-{uuid.uuid4()}"
    response = _lambda(stack).invoke(
        FunctionName=f"{_fn(stack, 'RecorderFunction')}:live",
        InvocationType="Event",
        Payload=json.dumps({"id": event_id}).encode(),
    )
    assert response["StatusCode"] == 202
    record = wait_for(lambda: _records(stack).get(f"events/{event_id}.json"), message=f"the record of {event_id}")
    assert record["invoked_function_arn"].endswith("loop-it-RecorderFunction:live")


def test_everything_else_is_forwarded_to_moto(stack):
    s3 = stack.client("s3")
    bucket = stack.bucket("RecordBucket")
    body = os.urandom(3 * 1024 * 1024 + 17)  # several chunks each way
    s3.put_object(Bucket=bucket, Key="blob.bin", Body=body)
    assert s3.get_object(Bucket=bucket, Key="blob.bin")["Body"].read() == body
    head = s3.head_object(Bucket=bucket, Key="blob.bin")
    assert head["ContentLength"] == len(body)
    ranged = s3.get_object(Bucket=bucket, Key="blob.bin", Range="bytes=10-19")
    assert ranged["Body"].read() == body[10:20] and ranged["ResponseMetadata"]["HTTPStatusCode"] == 206
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key="missing")
    # Plain HTTP too: moto's own API, through the endpoint.
    r = requests.get(f"{stack.endpoint_url}/moto-api/data.json", timeout=10)
    assert r.status_code == 200 and "s3" in r.json()


# ---------------------------------------------------------------------------- state machines
def test_state_machine_is_provisioned_from_the_asl_file_with_substitutions(stack):
    arn = stack.state_machine_arn("FlowStateMachine")
    description = stack.client("stepfunctions").describe_state_machine(stateMachineArn=arn)
    assert description["type"] == "STANDARD"
    assert description["roleArn"].startswith(f"arn:aws:iam::{ACCOUNT}:role/")
    states = json.loads(description["definition"])["States"]
    assert states["Score"]["Parameters"]["FunctionName"] == (
        f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:loop-it-ScoreFunction"
    )
    assert states["Decide"]["Resource"] == f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:loop-it-DecideFunction:live"
    assert states["Notify"]["Parameters"]["TopicArn"] == stack.topic_arn("AlertsTopic")
    assert states["Gate"]["Choices"][0]["NumericGreaterThanEquals"] == 10  # unquoted substitution


def test_execution_runs_both_real_handlers_and_publishes(stack):
    queue = _subscribe_queue(stack, "AlertsTopic")
    arn = stack.start_execution("FlowStateMachine", {"value": 6})
    result = stack.wait_execution(arn, timeout=30)
    assert result["status"] == "SUCCEEDED", result
    output = json.loads(result["output"])
    assert output["scored"] == {"score": 12, "seen": "direct"}
    assert output["decision"] == {
        "decision": "promote",
        "score": 12,
        "by": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:loop-it-DecideFunction:live",
    }
    messages = _messages(stack, queue)
    assert [m["MessageId"] for m in messages] == [output["notified"]["messageId"]]
    assert json.loads(messages[0]["Message"]) == output["decision"]


def test_choice_default_branch(stack):
    result = stack.wait_execution(stack.start_execution("FlowStateMachine", '{"value": 1}'), timeout=30)
    assert result["status"] == "SUCCEEDED"
    output = json.loads(result["output"])
    assert output["scored"]["score"] == 2 and output["decision"] == {"decision": "skip"}


def test_task_failure_is_caught_into_the_fail_state(stack):
    arn = stack.start_execution("FlowStateMachine", {"value": 6, "fail": True}, name="fails-on-purpose")
    assert arn.endswith(":fails-on-purpose")
    result = stack.wait_execution(arn, timeout=30)
    assert result["status"] == "FAILED"
    assert (result["error"], result["cause"]) == ("ScoreFailed", "the Score task raised")
    history = stack.client("stepfunctions").get_execution_history(executionArn=arn)["events"]
    failed = [e for e in history if e["type"] in ("LambdaFunctionFailed", "TaskFailed")]
    details = failed[0].get("lambdaFunctionFailedEventDetails") or failed[0].get("taskFailedEventDetails")
    assert details["error"] == "ValueError"  # the handler's errorType, as Step Functions names it
    assert json.loads(details["cause"])["errorMessage"] == "scoring failed on purpose"
    assert not [
        e for e in history if e["type"] == "TaskStateEntered" and e["stateEnteredEventDetails"]["name"] == "Decide"
    ]


# -------------------------------------------------------------------------- EventBridge bus
def test_put_events_through_the_endpoint_reaches_matching_rules(stack):
    events = stack.client("events")
    response = events.put_events(
        Entries=[
            {"Source": "sklambda.test", "DetailType": "Loop ping", "Detail": json.dumps({"level": 4})},
            {"Source": "sklambda.test", "DetailType": "Loop ping", "Detail": json.dumps({"level": 1})},
            {"Source": "sklambda.test", "DetailType": "Other ping", "Detail": json.dumps({"level": 9})},
        ]
    )
    assert response["FailedEntryCount"] == 0
    ids = [e["EventId"] for e in response["Entries"]]
    record = wait_for(lambda: _records(stack).get(f"events/{ids[0]}.json"), message="the matching event's record")
    event = record["event"]
    assert (event["source"], event["detail-type"], event["detail"]) == ("sklambda.test", "Loop ping", {"level": 4})
    assert event["account"] == ACCOUNT and event["region"] == "us-east-1" and event["version"] == "0"
    # PutEvents matches rules before it answers: the bus has decided on all three events.
    delivered = [d.input["id"] for d in stack.event_deliveries if isinstance(d.input, dict) and "id" in d.input]
    assert ids[0] in delivered  # the same observation sees a delivery when one happens
    assert ids[1] not in delivered and ids[2] not in delivered
    records = _records(stack)
    assert f"events/{ids[1]}.json" not in records  # level below 3
    assert f"events/{ids[2]}.json" not in records  # detail-type without the prefix


def test_put_event_api(stack):
    deliveries = stack.put_event({"source": "sklambda.test", "detail-type": "Loop direct", "detail": {"level": 3}})
    assert [(d.source, d.kind, d.ok) for d in deliveries] == [("RecorderFunction.Custom", "function", True)]
    assert stack.put_event({"source": "elsewhere", "detail-type": "Loop direct", "detail": {"level": 3}}) == []
    with pytest.raises(ValueError, match="source"):
        stack.put_event({"detail-type": "x"})


# ------------------------------------------------------------------------------------ alarms
@pytest.fixture
def fresh_stack(request):
    """A stack of its own per test: alarm state and the metric namespace are per stack name."""
    name = f"alarm-{uuid.uuid4().hex[:6]}"
    interval = getattr(request, "param", None)
    with EmbeddedStack(TEMPLATE, port=0, stack_name=name, alarm_interval=interval) as s:
        yield s


def _emit(stack: EmbeddedStack, value: float, **extra) -> None:
    response = _lambda(stack).invoke(
        FunctionName=_fn(stack, "ScoreFunction"), Payload=json.dumps({"emit": value, **extra})
    )
    assert "FunctionError" not in response


def test_alarm_to_execution(fresh_stack):
    stack = fresh_stack
    alarm = stack.alarm_names()[0]
    queue = _subscribe_queue(stack, "AlertsTopic")
    assert stack.alarm_states() == {alarm: "INSUFFICIENT_DATA"}  # as a new CloudWatch alarm starts

    # No data, notBreaching: INSUFFICIENT_DATA -> OK. The OK notification goes out, the rule
    # (state ALARM only) starts nothing.
    (first,) = stack.evaluate_alarms()
    assert (first.old_state, first.new_state, first.values) == ("INSUFFICIENT_DATA", "OK", [None])
    assert "treated as [NonBreaching]" in first.reason
    assert [d.source for d in first.deliveries] == ["AlarmRecordRule"]  # matches any state change
    assert stack.executions("FlowStateMachine") == []
    (ok_message,) = _alarm_notifications(stack, queue)
    assert ok_message["Subject"] == f'OK: "{alarm}" in US East (N. Virginia)'
    assert json.loads(ok_message["Message"])["NewStateValue"] == "OK"
    assert stack.evaluate_alarms() == []  # nothing changed

    # A handler prints the metric (EMF) → the alarm breaches → ALARM → the rule starts the machine.
    _emit(stack, 2)
    _emit(stack, 9)
    (fired,) = stack.evaluate_alarms()
    assert (fired.old_state, fired.new_state, fired.values) == ("OK", "ALARM", [9.0])
    assert fired.reason.startswith("Threshold Crossed: 1 out of the last 1 datapoints [9.0 (")
    assert "greater than or equal to the threshold (5.0)" in fired.reason
    (described,) = stack.client("cloudwatch").describe_alarms(AlarmNames=[alarm])["MetricAlarms"]
    assert (described["StateValue"], described["StateReason"]) == ("ALARM", fired.reason)
    reason_data = json.loads(described["StateReasonData"])
    assert reason_data["recentDatapoints"] == [9.0] and reason_data["statistic"] == "Maximum"
    assert reason_data["evaluatedDatapoints"][0]["sampleCount"] == 2.0

    (alarm_message,) = _alarm_notifications(stack, queue)
    notification = json.loads(alarm_message["Message"])
    assert alarm_message["Subject"] == f'ALARM: "{alarm}" in US East (N. Virginia)'
    assert (notification["AlarmName"], notification["OldStateValue"], notification["NewStateValue"]) == (
        alarm,
        "OK",
        "ALARM",
    )
    assert notification["Trigger"]["MetricName"] == "Signal"
    assert notification["Trigger"]["Dimensions"] == [{"value": "score", "name": "service"}]
    assert notification["AlarmArn"] == f"arn:aws:cloudwatch:us-east-1:{ACCOUNT}:alarm:{alarm}"

    by_source = {d.source: d for d in fired.deliveries}
    assert set(by_source) == {"AlarmRecordRule", "FlowStateMachine.SignalAlarm"}
    execution = by_source["FlowStateMachine.SignalAlarm"]
    assert execution.ok and execution.detail.startswith(
        stack.state_machine_arn("FlowStateMachine").replace(":stateMachine:", ":execution:")
    )
    result = stack.wait_execution(execution.detail, timeout=30)
    assert result["status"] == "SUCCEEDED", result
    event = json.loads(result["input"])
    assert (event["source"], event["detail-type"]) == ("aws.cloudwatch", "CloudWatch Alarm State Change")
    assert event["resources"] == [f"arn:aws:cloudwatch:us-east-1:{ACCOUNT}:alarm:{alarm}"]
    detail = event["detail"]
    assert detail["alarmName"] == alarm
    assert (detail["state"]["value"], detail["previousState"]["value"]) == ("ALARM", "OK")
    assert detail["state"]["reason"] == fired.reason
    assert json.loads(detail["state"]["reasonData"])["recentDatapoints"] == [9.0]
    (metric,) = detail["configuration"]["metrics"]
    assert metric["metricStat"] == {
        "metric": {"namespace": f"{stack.stack_name}-signal", "name": "Signal", "dimensions": {"service": "score"}},
        "period": 10,
        "stat": "Maximum",
    }
    output = json.loads(result["output"])
    assert output["scored"]["seen"] == "CloudWatch Alarm State Change"
    assert output["decision"]["decision"] == "promote"

    # The rule resource's InputTransformer shaped what the recorder got.
    record = wait_for(lambda: _records(stack).get(f"events/{event['id']}.json"), message="the alarm change's record")
    assert record["event"] == {
        "id": event["id"],
        "alarm": alarm,
        "state": "ALARM",
        "previous": "OK",
        "rule": f"{stack.stack_name}-AlarmRecordRule",
    }
    assert stack.evaluate_alarms() == []  # still breaching: no new transition, no new execution
    assert len(stack.executions("FlowStateMachine")) == 1


def test_alarm_sees_only_its_exact_dimensions(fresh_stack):
    stack = fresh_stack
    stack.evaluate_alarms()  # INSUFFICIENT_DATA -> OK
    _emit(stack, 50, variant="b")  # service=score AND variant=b: another metric for CloudWatch
    assert stack.evaluate_alarms() == []
    assert set(stack.alarm_states().values()) == {"OK"}


def test_set_alarm_state_from_outside_is_delivered(fresh_stack):
    stack = fresh_stack
    alarm = stack.alarm_names()[0]
    stack.evaluate_alarms()  # INSUFFICIENT_DATA -> OK
    stack.client("cloudwatch").set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="testing the loop")
    (external,) = stack.evaluate_alarms()
    assert (external.external, external.old_state, external.new_state) == (True, "OK", "ALARM")
    (execution,) = [d for d in external.deliveries if d.kind == "state_machine"]
    assert stack.wait_execution(execution.detail, timeout=30)["status"] == "SUCCEEDED"
    (back,) = stack.evaluate_alarms()  # then evaluated against its metric again, as CloudWatch does
    assert (back.external, back.old_state, back.new_state) == (False, "ALARM", "OK")
    assert len(stack.executions("FlowStateMachine")) == 1


@pytest.mark.parametrize("fresh_stack", [0.25], indirect=True)
def test_alarm_timer_end_to_end_and_back_to_ok(fresh_stack):
    stack = fresh_stack
    alarm = stack.alarm_names()[0]
    wait_for(lambda: stack.alarm_states()[alarm] == "OK", timeout=30, message="the first timed evaluation (OK)")
    _emit(stack, 7)

    def succeeded():
        runs = stack.executions("FlowStateMachine")
        return runs if runs and runs[0]["status"] == "SUCCEEDED" else None

    # metric → alarm (one 0.25 s tick) → event → execution through 2 handlers
    (run,) = wait_for(succeeded, timeout=60, message="the alarm's execution to succeed")
    # 10 s later the datapoint has left the 10 s period: ALARM -> OK, which starts nothing.
    wait_for(lambda: len(stack.alarm_transitions) == 3, timeout=60, message="the alarm back to OK")
    assert stack.alarm_states()[alarm] == "OK"
    transitions = [(t.old_state, t.new_state) for t in stack.alarm_transitions]
    assert transitions == [("INSUFFICIENT_DATA", "OK"), ("OK", "ALARM"), ("ALARM", "OK")]
    # Deliveries are made before a transition is recorded: ALARM started the execution, OK nothing.
    fired, back = stack.alarm_transitions[1:]
    started = [d.detail for d in fired.deliveries if d.kind == "state_machine"]
    assert started == [run["executionArn"]]
    assert [d for d in back.deliveries if d.kind == "state_machine"] == []
    assert [r["executionArn"] for r in stack.executions("FlowStateMachine")] == [run["executionArn"]]


def test_moto_port_is_restored_when_stacks_stop():
    before = os.environ.get("MOTO_PORT")
    with EmbeddedStack(TEMPLATE, port=0, stack_name=f"port-{uuid.uuid4().hex[:6]}", alarm_interval=None) as outer:
        outer_port = outer.endpoint_url.rsplit(":", 1)[1]
        assert os.environ["MOTO_PORT"] == outer_port
        with EmbeddedStack(TEMPLATE, port=0, stack_name=f"port-{uuid.uuid4().hex[:6]}", alarm_interval=None) as inner:
            assert os.environ["MOTO_PORT"] == inner.endpoint_url.rsplit(":", 1)[1]
            # The outer stack's machine still reaches its own handlers through the inner endpoint.
            result = outer.wait_execution(outer.start_execution("FlowStateMachine", {"value": 6}), timeout=30)
            assert result["status"] == "SUCCEEDED", result
        assert os.environ["MOTO_PORT"] == outer_port
    assert os.environ.get("MOTO_PORT") == before
