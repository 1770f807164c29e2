"""The local stack end to end over real HTTP: moto, worker processes and the gateway, no mocks.

Runs against a small test template (tests/integration/fixtures/) whose echo handler returns the
event and environment it sees, so these tests do not depend on the product's functions.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from sklambda_dev.local import EmbeddedStack
from sklambda_dev.local.template import TemplateError
from tests.support.wait import wait_for

FIXTURES = Path(__file__).parent / "fixtures"
TEMPLATE = FIXTURES / "template.yaml"


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # Must never reach a worker: functions get only their own environment.
    os.environ["SKLAMBDA_LEAK_CHECK"] = "leaked"
    state = tmp_path_factory.mktemp("state") / "local.json"
    try:
        with EmbeddedStack(TEMPLATE, port=0, state_file=state, stack_name="it-stack") as s:
            yield s
    finally:
        os.environ.pop("SKLAMBDA_LEAK_CHECK", None)


@pytest.fixture(scope="module")
def http():
    with requests.Session() as session:
        yield session


# ------------------------------------------------------------------------------- the event
def test_event_shape(stack, http):
    sent_ms = time.time_ns() // 1_000_000
    r = http.post(
        f"{stack.api_url}/echo?model=iris&tag=a&tag=b",
        json={"instances": [[1, 2]]},
        headers={"X-Custom": "v", "Cookie": "session=abc; theme=dark"},
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    event = r.json()["event"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /echo"
    assert event["rawPath"] == "/echo"
    assert event["rawQueryString"] == "model=iris&tag=a&tag=b"
    assert event["queryStringParameters"] == {"model": "iris", "tag": "a,b"}
    assert event["cookies"] == ["session=abc", "theme=dark"]
    assert event["headers"]["x-custom"] == "v"
    assert event["headers"]["content-type"] == "application/json"
    assert json.loads(event["body"]) == {"instances": [[1, 2]]}
    assert event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["http"]["method"] == "POST"
    assert ctx["http"]["path"] == "/echo"
    assert ctx["http"]["sourceIp"] == "127.0.0.1"
    assert ctx["stage"] == "$default"
    assert ctx["routeKey"] == "POST /echo"
    assert ctx["accountId"] == "123456789012"
    assert sent_ms <= ctx["timeEpoch"] <= time.time_ns() // 1_000_000  # epoch milliseconds, at the request
    assert ctx["requestId"] == r.headers["apigw-requestid"]


def test_path_parameters_greedy_proxy_and_any(stack, http):
    item = http.put(f"{stack.api_url}/items/42", data=b"{}", headers={"Content-Type": "application/json"})
    assert item.status_code == 200
    assert item.json()["event"]["routeKey"] == "ANY /items/{id}"
    assert item.json()["event"]["pathParameters"] == {"id": "42"}
    files = http.get(f"{stack.api_url}/files/reports/2024/summary.html")
    assert files.json()["event"]["pathParameters"] == {"proxy": "reports/2024/summary.html"}
    assert "body" not in files.json()["event"]


def test_binary_body_is_base64_encoded(stack, http):
    payload = bytes(range(256))
    r = http.post(f"{stack.api_url}/items/1", data=payload, headers={"Content-Type": "application/octet-stream"})
    event = r.json()["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload


def test_unknown_route_and_wrong_method_are_404(stack, http):
    for method, path in [("GET", "/nope"), ("GET", "/echo"), ("DELETE", "/files/x")]:
        r = http.request(method, f"{stack.api_url}{path}")
        assert r.status_code == 404, (method, path)
        assert r.json() == {"message": "Not Found"}
        assert r.headers["apigw-requestid"]


def test_body_over_10_mb_is_413(stack, http):
    r = http.post(f"{stack.api_url}/echo", data=b"x" * (10 * 1024 * 1024 + 1))
    assert r.status_code == 413
    assert r.json() == {"message": "Request Entity Too Large"}


def test_custom_response_mapping(stack, http):
    r = http.get(f"{stack.api_url}/custom")
    assert r.status_code == 201
    assert r.text == "created"
    assert r.headers["content-type"] == "text/plain"
    assert r.headers["x-echo"] == "yes"
    assert r.raw.headers.getlist("set-cookie") == ["a=1", "b=2; Path=/"]


# --------------------------------------------------------------------------- the functions
def test_each_function_sees_only_its_own_environment(stack, http):
    echo = http.post(f"{stack.api_url}/echo", json={}).json()
    env = echo["env"]
    assert env["ECHO_ONLY"] == "echo-secret"
    assert env["OTHER_ONLY"] is None
    assert env["SHARED_SETTING"] == "from-globals"
    assert env["OVERRIDDEN"] == "function"
    assert env["DATA_BUCKET"] == stack.bucket("DataBucket") == "it-stack-databucket"
    assert env["GREETING"] == "hello from us-east-1"
    assert env["MODE"] == "development"
    assert env["AWS_ENDPOINT_URL"] == stack.endpoint_url
    assert env["AWS_ACCESS_KEY_ID"] == "testing"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "it-stack-EchoFunction"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["_HANDLER"] == "app.handler"
    assert env["LAMBDA_TASK_ROOT"] == str(FIXTURES / "echo")
    assert env["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert env["SKLAMBDA_LEAK_CHECK"] is None
    assert echo["sys_path_0"] == str(FIXTURES / "echo")
    assert echo["pid"] != os.getpid()

    other = http.get(f"{stack.api_url}/slow", params={"seconds": 0}).json()
    assert other["env"]["OTHER_ONLY"] == "other-secret"
    assert other["env"]["ECHO_ONLY"] is None
    assert other["pid"] != echo["pid"]
    assert stack.function_env("EchoFunction")["ECHO_ONLY"] == "echo-secret"


def test_lambda_context(stack, http):
    ctx = http.post(f"{stack.api_url}/echo", json={}).json()["context"]
    assert ctx["function_name"] == "it-stack-EchoFunction"
    assert ctx["function_version"] == "$LATEST"
    assert ctx["invoked_function_arn"] == ("arn:aws:lambda:us-east-1:123456789012:function:it-stack-EchoFunction")
    assert ctx["memory_limit_in_mb"] == "256"
    assert len(ctx["aws_request_id"]) == 36
    assert ctx["log_group_name"] == "/aws/lambda/it-stack-EchoFunction"
    assert "[$LATEST]" in ctx["log_stream_name"]
    assert 4000 < ctx["remaining_ms"] <= 5000  # Globals Timeout: 5


def test_function_reaches_the_emulator_with_plain_boto3(stack, http):
    s3 = stack.client("s3")
    bucket = stack.bucket("DataBucket")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    r = http.post(f"{stack.api_url}/echo", params={"s3": "written-by-echo.txt"}, json={})
    assert r.json()["s3"]["version_id"]  # versioned bucket
    assert s3.get_object(Bucket=bucket, Key="written-by-echo.txt")["Body"].read() == b"from-echo"


def test_condition_false_bucket_is_not_provisioned(stack):
    names = {b["Name"] for b in stack.client("s3").list_buckets()["Buckets"]}
    assert "it-stack-databucket" in names
    assert not any("prodonlybucket" in n for n in names)


def test_emf_lines_become_cloudwatch_metrics(stack, http):
    before = datetime.now(UTC) - timedelta(minutes=1)
    for _ in range(3):
        assert http.post(f"{stack.api_url}/echo", json={}).status_code == 200
    assert stack.flush_metrics()
    cloudwatch = stack.client("cloudwatch")
    metrics = cloudwatch.list_metrics(Namespace="sklambda-test", MetricName="EchoCount")["Metrics"]
    assert {"Name": "service", "Value": "echo"} in metrics[0]["Dimensions"]
    stats = cloudwatch.get_metric_statistics(
        Namespace="sklambda-test",
        MetricName="EchoCount",
        Dimensions=[{"Name": "service", "Value": "echo"}],
        StartTime=before,
        EndTime=datetime.now(UTC) + timedelta(minutes=1),
        Period=60,
        Statistics=["Sum"],
    )
    assert sum(p["Sum"] for p in stats["Datapoints"]) >= 3
    assert {p["Unit"] for p in stats["Datapoints"]} == {"Count"}


def test_service_metrics_like_lambda_and_http_apis_publish(stack, http):
    """AWS/Lambda and AWS/ApiGateway metrics, so alarms on them (errors, p99 duration, 5xx) work locally."""
    before = datetime.now(UTC) - timedelta(minutes=1)
    assert http.get(f"{stack.api_url}/boom").status_code == 500
    api_id = http.post(f"{stack.api_url}/echo", json={}).json()["event"]["requestContext"]["apiId"]
    assert http.get(f"{stack.api_url}/nope").status_code == 404
    assert stack.flush_metrics()
    cloudwatch = stack.client("cloudwatch")

    def total(namespace, metric, dimensions, stat="Sum"):
        points = cloudwatch.get_metric_statistics(
            Namespace=namespace,
            MetricName=metric,
            Dimensions=dimensions,
            StartTime=before,
            EndTime=datetime.now(UTC) + timedelta(minutes=1),
            Period=3600,
            Statistics=[stat],
        )["Datapoints"]
        return sum(p[stat] for p in points)

    other = [{"Name": "FunctionName", "Value": "it-stack-OtherFunction"}]
    echo = [{"Name": "FunctionName", "Value": "it-stack-EchoFunction"}]
    assert total("AWS/Lambda", "Errors", other) >= 1
    assert total("AWS/Lambda", "Invocations", echo) >= 1
    assert total("AWS/Lambda", "Errors", echo) == 0
    assert total("AWS/Lambda", "Duration", echo, "Maximum") > 0
    api = [{"Name": "ApiId", "Value": api_id}]
    assert total("AWS/ApiGateway", "5xx", api) >= 1
    assert total("AWS/ApiGateway", "4xx", api) >= 1
    assert total("AWS/ApiGateway", "Count", api) >= 3


def test_handler_exception_is_500_and_a_lambda_error(stack, http):
    r = http.get(f"{stack.api_url}/boom")
    assert r.status_code == 500
    assert r.json() == {"message": "Internal Server Error"}
    result = stack.invoke("OtherFunction", {"rawPath": "/boom"})
    assert result.status == "error"
    assert result.error["errorType"] == "ValueError"
    assert result.error["errorMessage"] == "boom requested"
    assert any("app.py" in frame for frame in result.error["stackTrace"])
    # A handled error does not cost the execution environment (same worker answers next).
    again = stack.invoke("OtherFunction", {"rawPath": "/slow", "queryStringParameters": {"seconds": "0"}})
    assert again.ok and again.worker_pid == result.worker_pid and not again.cold_start


def test_a_worker_that_dies_is_500_and_is_discarded(stack, http):
    r = http.get(f"{stack.api_url}/crash")
    assert r.status_code == 500
    assert r.json() == {"message": "Internal Server Error"}
    result = stack.invoke("OtherFunction", {"rawPath": "/crash"})
    assert result.status == "error" and result.error["errorType"] == "Runtime.ExitError"
    assert not _alive(result.worker_pid)
    assert result.worker_pid not in stack.function_stats("OtherFunction")["worker_pids"]
    assert http.get(f"{stack.api_url}/slow", params={"seconds": 0}).status_code == 200


def test_import_error_is_500_and_init_is_retried(stack, http):
    for _ in range(2):  # Lambda retries a failed init on the next request
        r = http.get(f"{stack.api_url}/broken")
        assert r.status_code == 500
    result = stack.invoke("BrokenFunction", {})
    assert result.cold_start
    assert result.error["errorType"] == "Runtime.ImportModuleError"
    assert "no_such_module" in result.error["errorMessage"]
    assert stack.function_stats("BrokenFunction")["workers"] == 0


def test_timeout_is_504_and_the_function_recovers(stack, http):
    r = http.get(f"{stack.api_url}/slow", params={"seconds": 5})  # OtherFunction Timeout: 1
    assert r.status_code == 504
    ok = http.get(f"{stack.api_url}/slow", params={"seconds": 0})
    assert ok.status_code == 200
    assert ok.json()["invocations"] == 1  # a fresh worker: cold start again


def test_concurrent_requests_use_separate_workers_up_to_the_limit(stack, http):
    def call(_):
        return requests.get(f"{stack.api_url}/slow", params={"seconds": 0.3}, timeout=10)

    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(call, range(6)))
    assert [r.status_code for r in responses] == [200] * 6
    pids = {r.json()["pid"] for r in responses}
    assert 2 <= len(pids) <= stack.max_concurrency
    assert stack.function_stats("OtherFunction")["workers"] <= stack.max_concurrency


# ------------------------------------------------------------- Firehose, SNS, CloudWatch alarms
def test_firehose_stream_delivers_each_batch_to_the_bucket_prefix(stack):
    name = stack.stream("EventsStream")
    assert name == "it-stack-EventsStream"
    firehose = stack.client("firehose")
    description = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    assert description["DeliveryStreamType"] == "DirectPut"
    destination = description["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert destination["BucketARN"] == f"arn:aws:s3:::{stack.bucket('DataBucket')}"
    assert destination["Prefix"] == "events/"
    assert destination["BufferingHints"] == {"IntervalInSeconds": 10, "SizeInMBs": 1}

    before = datetime.now(UTC)
    response = firehose.put_record_batch(
        DeliveryStreamName=name, Records=[{"Data": b'{"row": 1}\n'}, {"Data": b'{"row": 2}\n'}]
    )
    assert response["FailedPutCount"] == 0
    s3 = stack.client("s3")
    listed = s3.list_objects_v2(Bucket=stack.bucket("DataBucket"), Prefix="events/").get("Contents", [])
    (obj,) = listed  # one object per PutRecordBatch, records concatenated
    # <prefix>YYYY/MM/DD/HH/<stream>-<version>-<timestamp>-<uuid>, in UTC
    hours = {f"events/{t:%Y/%m/%d/%H}/" for t in (before, datetime.now(UTC))}
    assert any(obj["Key"].startswith(h + name + "-") for h in hours), obj["Key"]
    body = s3.get_object(Bucket=stack.bucket("DataBucket"), Key=obj["Key"])["Body"].read()
    assert body == b'{"row": 1}\n{"row": 2}\n'


def test_sns_topic_and_its_subscription(stack):
    arn = stack.topic_arn("NoticesTopic")
    assert arn == "arn:aws:sns:us-east-1:123456789012:it-stack-NoticesTopic"
    sns = stack.client("sns")
    assert arn in {t["TopicArn"] for t in sns.list_topics()["Topics"]}
    assert sns.get_topic_attributes(TopicArn=arn)["Attributes"]["DisplayName"] == "notices"
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("email", "dev@example.com")]


def test_alarm_is_defined_in_cloudwatch(stack):
    assert stack.alarm_names() == ["it-stack-echo-count"]  # explicit AlarmName, resolved
    (alarm,) = stack.client("cloudwatch").describe_alarms(AlarmNames=stack.alarm_names())["MetricAlarms"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("sklambda-test", "EchoCount")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "echo"}]
    assert alarm["Threshold"] == 10.0 and alarm["Period"] == 60
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["AlarmActions"] == [stack.topic_arn("NoticesTopic")]


def test_unknown_resources_are_template_errors(stack):
    for lookup in (stack.stream, stack.topic_arn):
        with pytest.raises(TemplateError):
            lookup("NoSuchThing")


# ------------------------------------------------------------------------ Lambda Invoke API
@pytest.fixture(scope="module")
def lambda_client(stack):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "lambda",
        endpoint_url=stack.api_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}),
    )


def test_lambda_invoke_api_on_the_gateway(stack, lambda_client):
    response = lambda_client.invoke(FunctionName="it-stack-EchoFunction", Payload=b'{"rawPath": "/echo"}')
    assert response["StatusCode"] == 200 and "FunctionError" not in response
    assert response["ExecutedVersion"] == "$LATEST"
    payload = json.loads(response["Payload"].read())
    assert payload["event"] == {"rawPath": "/echo"}  # the event is passed as is
    by_arn = lambda_client.invoke(
        FunctionName="arn:aws:lambda:us-east-1:123456789012:function:it-stack-EchoFunction", Qualifier="$LATEST"
    )
    assert json.loads(by_arn["Payload"].read())["event"] == {}


def test_lambda_invoke_api_errors(stack, lambda_client):
    failed = lambda_client.invoke(FunctionName="it-stack-OtherFunction", Payload=b'{"rawPath": "/boom"}')
    assert failed["StatusCode"] == 200 and failed["FunctionError"] == "Unhandled"
    error = json.loads(failed["Payload"].read())
    assert (error["errorType"], error["errorMessage"]) == ("ValueError", "boom requested")
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.invoke(FunctionName="no-such-function")
    with pytest.raises(lambda_client.exceptions.InvalidRequestContentException):
        lambda_client.invoke(FunctionName="it-stack-EchoFunction", Payload=b"{not json")
    assert lambda_client.invoke(FunctionName="it-stack-EchoFunction", InvocationType="DryRun")["StatusCode"] == 204


def test_lambda_invoke_api_event_invocation(stack, lambda_client):
    key = f"async-{time.time_ns()}.txt"
    response = lambda_client.invoke(
        FunctionName="it-stack-EchoFunction",
        InvocationType="Event",
        Payload=json.dumps({"rawPath": "/echo", "queryStringParameters": {"s3": key}}).encode(),
    )
    assert response["StatusCode"] == 202
    s3 = stack.client("s3")

    def written():
        return s3.list_objects_v2(Bucket=stack.bucket("DataBucket"), Prefix=key).get("KeyCount", 0)

    wait_for(written, timeout=30, message=f"the Event invocation to write {key}")


# -------------------------------------------------------------------------------- schedules
def _ticks(stack: EmbeddedStack) -> list[dict]:
    s3 = stack.client("s3")
    bucket = stack.bucket("DataBucket")
    contents = s3.list_objects_v2(Bucket=bucket, Prefix="ticks/").get("Contents", [])
    return [json.loads(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()) for o in contents]


def test_schedules_run_on_the_local_interval_one_at_a_time(caplog):
    overrides = {"TickSleep": "0.6", "TickFailEvery": "3"}
    opened = int(time.time())
    with (
        caplog.at_level("INFO", logger="sklambda_dev.local"),
        EmbeddedStack(
            TEMPLATE, port=0, stack_name="sched", parameter_overrides=overrides, schedule_interval=0.25
        ) as stack,
    ):
        assert "not on their template expressions" in caplog.text and "rate(1 hour)" in caplog.text
        assert stack.schedule_stats()["TickFunction.Every"]["timer"] is True
        wait_for(
            lambda: stack.schedule_stats()["TickFunction.Every"]["runs"] >= 5, timeout=60, message="5 scheduled runs"
        )
        ticks = sorted(_ticks(stack), key=lambda t: t["started"])
        assert len(ticks) >= 3

        # A real EventBridge scheduled-event payload.
        event = ticks[0]["event"]
        assert set(event) == {
            "version",
            "id",
            "detail-type",
            "source",
            "account",
            "time",
            "region",
            "resources",
            "detail",
        }
        assert (event["version"], event["detail-type"], event["source"]) == ("0", "Scheduled Event", "aws.events")
        assert (event["account"], event["region"], event["detail"]) == ("123456789012", "us-east-1", {})
        assert event["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/sched-TickFunctionEvery"]
        # The tick's time (whole seconds), between the stack's start and the run it started.
        ticked = datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
        assert opened <= ticked <= ticks[0]["started"]
        assert len({t["event"]["id"] for t in ticks}) == len(ticks)
        assert {t["function_name"] for t in ticks} == {"sched-TickFunction"}

        # One run at a time: ticks that come during a 0.6 s run are skipped, never overlapping.
        for earlier, later in zip(ticks, ticks[1:], strict=False):
            assert later["started"] >= earlier["ended"], (earlier, later)
        stats = stack.schedule_stats()["TickFunction.Every"]
        assert stats["skipped"] >= 1
        assert stack.function_stats("TickFunction")["workers"] == 1  # ReservedConcurrentExecutions: 1

        # Every third run raises: logged, and the schedule (and the stack) carry on.
        assert "fails on purpose" in caplog.text
        runs_after_failure = stats["runs"]
        wait_for(
            lambda: stack.schedule_stats()["TickFunction.Every"]["runs"] >= runs_after_failure + 2,
            timeout=60,
            message="2 more scheduled runs after a failed one",
        )
        assert requests.post(f"{stack.api_url}/echo", json={}, timeout=10).status_code == 200

        # run_schedule: now, with the same payload shape, waiting for a run in flight.
        result = stack.run_schedule("TickFunction")
        assert result.status in ("ok", "error")  # every third invocation fails on purpose
        if result.ok:
            assert result.payload["key"].startswith("ticks/")


def test_run_schedule_with_the_timer_off():
    with EmbeddedStack(TEMPLATE, port=0, stack_name="manual", schedule_interval=None) as stack:
        # No timer exists to tick later (the timed test sees one): nothing to wait for.
        assert stack.schedule_stats()["TickFunction.Every"]["timer"] is False
        assert stack.schedule_stats()["TickFunction.Every"]["runs"] == 0
        result = stack.run_schedule("TickFunction")
        assert result.ok, result.error
        assert stack.schedule_stats()["TickFunction.Every"]["runs"] == 1  # the counter does see a run
        (tick,) = _ticks(stack)
        assert tick["event"]["detail-type"] == "Scheduled Event"
        assert tick["event"]["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/manual-TickFunctionEvery"]
        assert result.payload == {"key": f"ticks/0001-{tick['event']['id']}.json", "invocation": 1}
        assert stack.run_schedule("TickFunction", event="Every").ok
        assert len(_ticks(stack)) == 2
        assert stack.schedule_stats()["TickFunction.Every"]["runs"] == 2
        with pytest.raises(TemplateError, match="no Schedule event"):
            stack.run_schedule("EchoFunction")
        with pytest.raises(TemplateError):
            stack.run_schedule("NoSuchFunction")


# -------------------------------------------------------------------------------- lifecycle
def test_cold_start_then_warm_then_clean_stop(tmp_path):
    state = tmp_path / ".sklambda" / "local.json"
    threads_before = set(threading.enumerate())
    stack = EmbeddedStack(TEMPLATE, port=0, state_file=state, stack_name="lifecycle").start()
    try:
        saved = json.loads(state.read_text())
        assert saved["api_url"] == stack.api_url
        assert saved["endpoint_url"] == stack.endpoint_url
        assert saved["buckets"] == {"DataBucket": "lifecycle-databucket"}
        assert saved["pid"] == os.getpid()
        assert saved["streams"] == {"EventsStream": "lifecycle-EventsStream"}
        assert saved["topics"] == {"NoticesTopic": "arn:aws:sns:us-east-1:123456789012:lifecycle-NoticesTopic"}
        assert saved["alarms"] == ["lifecycle-echo-count"]
        assert saved["schedule_interval"] == 60.0
        assert saved["schedules"] == {
            "TickFunction.Every": {
                "function": "TickFunction",
                "expression": "rate(1 hour)",
                "enabled": True,
                "rule_arn": "arn:aws:events:us-east-1:123456789012:rule/lifecycle-TickFunctionEvery",
            }
        }

        first = stack.invoke("EchoFunction", {"rawPath": "/echo"})
        second = stack.invoke("EchoFunction", {"rawPath": "/echo"})
        assert first.cold_start and first.init_ms is not None and first.init_ms > 0
        assert not second.cold_start and second.init_ms is None
        assert first.worker_pid == second.worker_pid
        assert second.payload["invocations"] == 2  # module state survived: same interpreter
        stats = stack.function_stats("EchoFunction")
        assert stats["cold_starts"] == 1 and stats["invocations"] == 2

        crashed = stack.invoke("EchoFunction", {"rawPath": "/crash"})
        assert crashed.error["errorType"] == "Runtime.ExitError"
        restarted = stack.invoke("EchoFunction", {"rawPath": "/echo"})
        assert restarted.ok and restarted.cold_start  # a new execution environment
        assert restarted.worker_pid != first.worker_pid and not _alive(first.worker_pid)

        via_http = requests.post(f"{stack.api_url}/echo", json={}).json()
        pids = {first.worker_pid, via_http["pid"]}
        pids.update(stack.function_stats("OtherFunction")["worker_pids"])
        api_url = stack.api_url
    finally:
        stack.stop()

    assert not any(_alive(pid) for pid in pids)
    assert not state.exists()
    assert not [t.name for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{api_url}/echo", timeout=2)
    stack.stop()  # idempotent


def _foreground_serve(state: Path) -> subprocess.Popen:
    """``serve_forever`` in a process of its own session (a terminal's foreground group); SIGUSR1
    dumps every thread's stack, so a shutdown that hangs says where."""
    script = (
        "import faulthandler, signal; faulthandler.register(signal.SIGUSR1, all_threads=True); "
        "import logging; logging.basicConfig(level=logging.INFO, format='%(name)s: %(message)s'); "
        "from sklambda_dev.local import EmbeddedStack; "
        f"EmbeddedStack({str(TEMPLATE)!r}, port=0, state_file={str(state)!r}).serve_forever(); "
        "print('clean exit')"
    )
    return subprocess.Popen(
        [sys.executable, "-c", script],
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _exit_output(proc: subprocess.Popen, timeout: float = 30) -> str:
    """The process's output once it exits; a hang fails with every thread's stack."""
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGUSR1)
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"still running {timeout:g} s after the signal; its threads:\n{proc.communicate()[0]}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_in_a_foreground_serve_exits_cleanly(tmp_path, signum):
    state = tmp_path / "local.json"
    proc = _foreground_serve(state)
    try:

        def started() -> bool:
            assert proc.poll() is None, proc.stdout.read()
            return state.exists()

        wait_for(started, timeout=60, interval=0.05, message="the stack's state file")
        api_url = json.loads(state.read_text())["api_url"]
        worker_pid = requests.post(f"{api_url}/echo", json={}, timeout=10).json()["pid"]
        # A terminal's Ctrl-C signals the whole foreground process group: do the same.
        os.killpg(proc.pid, signum)
        output = _exit_output(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert f"{signal.Signals(signum).name} received, stopping" in output
    assert "clean exit" in output
    assert "Traceback" not in output
    assert not state.exists()
    assert not _alive(worker_pid)


def test_ctrl_c_while_the_stack_starts_stops_it_once_started(tmp_path):
    state = tmp_path / "local.json"
    proc = _foreground_serve(state)
    try:
        # Signalled as soon as it logs anything of the start (moto's first line): mid-start.
        first = proc.stdout.readline()
        os.killpg(proc.pid, signal.SIGINT)
        output = first + _exit_output(proc, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "SIGINT received, stopping" in output
    assert "clean exit" in output and "Traceback" not in output
    assert "stopped" in output
    assert not state.exists()
