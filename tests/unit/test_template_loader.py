"""template.yaml resolved for the local stack: the real template, plus the generic resolver rules."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sklambda_dev.local.template import TemplateError, load_template, load_yaml, s3_bucket_name

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"


@pytest.fixture(scope="module")
def template():
    return load_template(TEMPLATE, {"AuthType": "NONE"})


# ------------------------------------------------------------------------- the real template
def test_model_bucket_is_found_with_its_configuration(template):
    (bucket,) = [b for b in template.buckets if b.logical_id == "ModelBucket"]
    assert bucket.name == "sklambda-local-modelbucket"
    assert bucket.arn == "arn:aws:s3:::sklambda-local-modelbucket"
    assert bucket.versioning is True
    rule = bucket.encryption["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert rule["BucketKeyEnabled"] is True
    assert bucket.public_access_block["BlockPublicAcls"] is True
    assert bucket.ownership_controls == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}


def test_predict_function_environment_is_resolved(template):
    fn = template.function("PredictFunction")
    env = fn.environment
    assert env["MODEL_BUCKET"] == template.bucket("ModelBucket").name
    assert env["DEFAULT_MODEL"] == "demo"
    assert env["MODEL_ALIAS"] == "production"
    assert env["ALIAS_CHECK_SECONDS"] == "30"  # a Number parameter is still a string in the env
    assert env["MAX_BATCH_ROWS"] == "1000"
    assert env["POWERTOOLS_SERVICE_NAME"] == "predict"
    # Globals.Function.Environment merged in
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "sklambda"
    assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
    assert all(isinstance(v, str) for v in env.values())


def test_predict_function_runtime_settings(template):
    fn = template.function("PredictFunction")
    assert fn.name == "sklambda-local-PredictFunction"
    assert fn.code_uri == REPO / "functions" / "predict"
    assert fn.code_uri.is_absolute()
    assert fn.handler == "app.lambda_handler"
    assert fn.memory_size == 1024
    assert fn.timeout == 30  # from Globals
    assert fn.runtime == "python3.12"
    assert fn.auto_publish_alias == "live"
    assert fn.layers == (REPO / "layers" / "sklambda", REPO / "layers" / "deps", REPO / "layers" / "sklearn")


def test_predict_routes(template):
    keys = {r.route_key for r in template.routes}
    assert {
        "GET /health",
        "GET /ready",
        "GET /models",
        "GET /models/{name}",
        "POST /predict",
        "POST /models/{name}/predict",
        "GET /openapi.json",
        "GET /docs",
    } <= keys
    assert all(r.function == "PredictFunction" for r in template.routes)
    assert all(r.payload_format_version == "2.0" for r in template.routes)


def test_parameter_overrides_flow_into_the_environment():
    t = load_template(TEMPLATE, {"DefaultModelName": "iris", "LogLevel": "DEBUG", "MaxBatchRows": 50})
    env = t.function("PredictFunction").environment
    assert env["DEFAULT_MODEL"] == "iris"
    assert env["POWERTOOLS_LOG_LEVEL"] == "DEBUG"
    assert env["MAX_BATCH_ROWS"] == "50"


@pytest.mark.parametrize(
    "overrides",
    [
        {"LogLevel": "TRACE"},  # AllowedValues
        {"DefaultModelName": "Not_Valid"},  # AllowedPattern
        {"MaxBatchRows": 0},  # MinValue
        {"MaxBatchRows": "many"},  # Number
        {"NoSuchParameter": "x"},  # undeclared
    ],
)
def test_invalid_overrides_are_rejected(overrides):
    with pytest.raises(TemplateError):
        load_template(TEMPLATE, overrides)


def test_auth_condition_follows_the_parameter():
    iam = load_template(TEMPLATE)
    assert iam.condition("UseIamAuth") is True
    assert iam.resolve(iam.resources["Api"]["Properties"])["Auth"]["DefaultAuthorizer"] == "AWS_IAM"
    none = load_template(TEMPLATE, {"AuthType": "NONE"})
    assert none.condition("UseIamAuth") is False
    # !If [..., !Ref AWS::NoValue] removes the property altogether
    assert "DefaultAuthorizer" not in none.resolve(none.resources["Api"]["Properties"])["Auth"]


def test_getatt_and_sub_in_the_bucket_policy(template):
    props = template.resolve(template.resources["ModelBucketPolicy"]["Properties"])
    assert props["Bucket"] == "sklambda-local-modelbucket"
    assert props["PolicyDocument"]["Statement"][0]["Resource"] == [
        "arn:aws:s3:::sklambda-local-modelbucket",
        "arn:aws:s3:::sklambda-local-modelbucket/*",
    ]


def test_outputs(template):
    outputs = template.outputs()
    assert outputs["ModelBucketName"] == "sklambda-local-modelbucket"
    assert outputs["ApiUrl"] == f"https://{template.api_id('Api')}.execute-api.us-east-1.amazonaws.com"
    assert outputs["PredictFunctionAlias"].endswith(":function:sklambda-local-PredictFunction:live")


# ------------------------------------------------------- capture, drift and alerts resources
def test_capture_stream_delivers_into_the_local_capture_bucket(template):
    stream = template.delivery_stream("CaptureStream")
    assert stream.name == "sklambda-local-CaptureStream"
    assert stream.arn == "arn:aws:firehose:us-east-1:123456789012:deliverystream/sklambda-local-CaptureStream"
    assert stream.bucket_name == template.bucket("CaptureBucket").name == "sklambda-local-capturebucket"
    assert stream.prefix == "captures/"
    kwargs = stream.create_kwargs
    assert kwargs["DeliveryStreamName"] == stream.name
    assert kwargs["DeliveryStreamType"] == "DirectPut"
    assert kwargs["DeliveryStreamEncryptionConfigurationInput"] == {"KeyType": "AWS_OWNED_CMK"}
    destination = kwargs["ExtendedS3DestinationConfiguration"]
    assert destination["BucketARN"] == "arn:aws:s3:::sklambda-local-capturebucket"
    assert destination["RoleARN"] == "arn:aws:iam::123456789012:role/sklambda-local-FirehoseRole"
    assert destination["ErrorOutputPrefix"] == "capture-errors/"
    assert destination["BufferingHints"] == {"IntervalInSeconds": 60, "SizeInMBs": 5}
    assert destination["CloudWatchLoggingOptions"] == {
        "Enabled": True,
        "LogGroupName": "/aws/kinesisfirehose/sklambda-local-capture",
        "LogStreamName": "S3Delivery",  # an explicit LogStreamName is the physical name
    }


def test_predict_function_captures_to_the_local_stream(template):
    env = template.function("PredictFunction").environment
    assert env["CAPTURE_STREAM"] == template.delivery_stream("CaptureStream").name
    assert env["CAPTURE_SAMPLE_RATE"] == "1"
    t = load_template(TEMPLATE, {"CaptureSampleRate": "0.25"})
    assert t.function("PredictFunction").environment["CAPTURE_SAMPLE_RATE"] == "0.25"


def test_drift_function_is_resolved(template):
    fn = template.function("DriftFunction")
    assert fn.name == "sklambda-local-DriftFunction"
    assert fn.code_uri == REPO / "functions" / "drift"
    assert fn.handler == "app.lambda_handler"
    assert (fn.memory_size, fn.timeout, fn.reserved_concurrency) == (2048, 900, 1)
    assert fn.layers == (REPO / "layers" / "sklambda", REPO / "layers" / "deps", REPO / "layers" / "sklearn")
    assert fn.routes == ()
    assert fn.environment == {
        "POWERTOOLS_METRICS_NAMESPACE": "sklambda",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "POWERTOOLS_SERVICE_NAME": "drift",
        "CAPTURE_BUCKET": "sklambda-local-capturebucket",
        "MODEL_BUCKET": "sklambda-local-modelbucket",
        "MODEL_ALIAS": "production",
        "DRIFT_MIN_ROWS": "500",
        "DRIFT_PSI_THRESHOLD": "0.2",
        "DRIFT_DISTANCE_THRESHOLD": "0.1",
        "DRIFT_WASSERSTEIN_THRESHOLD": "0.1",
        "DRIFT_LOOKBACK_HOURS": "48",
        # fan-out of big windows: the Sub of the state machine's known ARN resolved locally
        "DRIFT_MAX_OBJECTS_PER_RUN": "500",
        "DRIFT_FANOUT_CONCURRENCY": "20",
        "DRIFT_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:sklambda-local-drift",
    }
    assert template.function("PredictFunction").reserved_concurrency is None


def test_drift_schedule_is_found(template):
    (schedule,) = template.schedules
    assert (schedule.function, schedule.event, schedule.key) == (
        "DriftFunction",
        "DriftSchedule",
        "DriftFunction.DriftSchedule",
    )
    assert schedule.expression == "rate(1 hour)"
    assert schedule.enabled and schedule.input is None
    assert schedule.rule_arn == ("arn:aws:events:us-east-1:123456789012:rule/sklambda-local-DriftFunctionDriftSchedule")
    assert template.schedules_of("DriftFunction") == [schedule]
    assert template.schedules_of("PredictFunction") == []
    fast = load_template(TEMPLATE, {"DriftSchedule": "rate(5 minutes)"})
    assert fast.schedules[0].expression == "rate(5 minutes)"


def test_capture_bucket_lifecycle_in_s3_api_shape(template):
    rules = {rule["ID"]: rule for rule in template.bucket("CaptureBucket").lifecycle["Rules"]}
    assert rules["ExpireCaptures"] == {
        "ID": "ExpireCaptures",
        "Status": "Enabled",
        "Filter": {"Prefix": "captures/"},
        "Expiration": {"Days": 90},
    }
    assert rules["ExpireCaptureErrors"]["Expiration"] == {"Days": 30}
    assert rules["ExpireReports"]["Filter"] == {"Prefix": "reports/"}
    assert rules["ExpireReports"]["Expiration"] == {"Days": 365}
    tidy = rules["TidyVersionsAndUploads"]
    assert tidy["Filter"] == {"Prefix": ""}
    assert tidy["NoncurrentVersionExpiration"] == {"NoncurrentDays": 7}
    assert tidy["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert tidy["Expiration"] == {"ExpiredObjectDeleteMarker": True}
    assert template.bucket("ModelBucket").lifecycle is None
    short = load_template(TEMPLATE, {"CaptureRetentionDays": 7})
    assert {r["ID"]: r for r in short.bucket("CaptureBucket").lifecycle["Rules"]}["ExpireCaptures"]["Expiration"] == {
        "Days": 7
    }


def test_alerts_topic_and_optional_subscription(template):
    topic = template.topic("AlertsTopic")
    assert topic.arn == "arn:aws:sns:us-east-1:123456789012:sklambda-local-AlertsTopic"
    assert topic.name == "sklambda-local-AlertsTopic"
    assert topic.attributes["DisplayName"] == "sklambda alerts"
    assert topic.subscriptions == ()
    with_email = load_template(TEMPLATE, {"AlertEmail": "ops@example.com"})
    assert with_email.topic("AlertsTopic").subscriptions == ({"Protocol": "email", "Endpoint": "ops@example.com"},)


def test_alarms_become_put_metric_alarm_requests(template):
    alarms = {a.logical_id: a for a in template.alarms}
    assert set(alarms) >= {
        "DriftAlarm",
        "PredictErrorsAlarm",
        "Api5xxAlarm",
        "PredictLatencyAlarm",
        "CaptureFailuresAlarm",
    }
    topic = template.topic("AlertsTopic").arn
    for alarm in alarms.values():
        assert alarm.name == f"sklambda-local-{alarm.logical_id}" == alarm.put_kwargs["AlarmName"]
        assert alarm.put_kwargs["AlarmActions"] == [topic] and alarm.put_kwargs["OKActions"] == [topic]
        assert isinstance(alarm.put_kwargs["Period"], int) and isinstance(alarm.put_kwargs["Threshold"], float)
    drift = alarms["DriftAlarm"].put_kwargs
    assert drift["Dimensions"] == [{"Name": "service", "Value": "drift"}, {"Name": "model", "Value": "demo"}]
    assert drift["Threshold"] == 0.3 and drift["EvaluationPeriods"] == 1
    latency = alarms["PredictLatencyAlarm"].put_kwargs
    assert latency["Dimensions"] == [{"Name": "FunctionName", "Value": "sklambda-local-PredictFunction"}]
    assert latency["ExtendedStatistic"] == "p99" and latency["Threshold"] == 250.0
    assert alarms["Api5xxAlarm"].put_kwargs["Dimensions"] == [{"Name": "ApiId", "Value": template.api_id("Api")}]
    iris = load_template(TEMPLATE, {"DefaultModelName": "iris", "DriftAlarmThreshold": 0.5})
    drift = iris.alarm("DriftAlarm").put_kwargs
    assert {"Name": "model", "Value": "iris"} in drift["Dimensions"] and drift["Threshold"] == 0.5


def test_new_outputs(template):
    outputs = template.outputs()
    assert outputs["CaptureBucketName"] == "sklambda-local-capturebucket"
    assert outputs["CaptureStreamName"] == "sklambda-local-CaptureStream"
    assert outputs["AlertsTopicArn"] == "arn:aws:sns:us-east-1:123456789012:sklambda-local-AlertsTopic"
    assert outputs["DriftFunctionName"] == "sklambda-local-DriftFunction"


def test_stack_name_shapes_physical_names():
    t = load_template(TEMPLATE, stack_name="My_Stack")
    assert t.bucket("ModelBucket").name == "my-stack-modelbucket"
    assert t.function("PredictFunction").environment["MODEL_BUCKET"] == "my-stack-modelbucket"
    assert t.function("PredictFunction").name == "My_Stack-PredictFunction"


def test_s3_bucket_name_rules():
    assert s3_bucket_name("sklambda-local", "ModelBucket") == "sklambda-local-modelbucket"
    assert s3_bucket_name("A__B", "C") == "a-b-c"
    long = s3_bucket_name("x" * 80, "Bucket")
    assert len(long) <= 63 and long[-1].isalnum()


# ------------------------------------------------------------------------ generic resolution
def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(textwrap.dedent(text))
    (tmp_path / "src").mkdir(exist_ok=True)
    return path


def test_short_tags_are_parsed_to_long_form(tmp_path):
    path = _write(
        tmp_path,
        """
        AWSTemplateFormatVersion: 2010-09-09
        Resources:
          X:
            Type: AWS::S3::Bucket
            Properties:
              A: !Ref Y
              B: !GetAtt Y.Arn
              C: !Sub "${Y}"
              D: !Join [",", [a, b]]
              E: !If [Cond, 1, 2]
        """,
    )
    raw = load_yaml(path)
    assert raw["AWSTemplateFormatVersion"] == "2010-09-09"  # dates stay strings
    props = raw["Resources"]["X"]["Properties"]
    assert props["A"] == {"Ref": "Y"}
    assert props["B"] == {"Fn::GetAtt": ["Y", "Arn"]}
    assert props["C"] == {"Fn::Sub": "${Y}"}
    assert props["D"] == {"Fn::Join": [",", ["a", "b"]]}
    assert props["E"] == {"Fn::If": ["Cond", 1, 2]}


def test_intrinsics_conditions_and_events(tmp_path):
    path = _write(
        tmp_path,
        """
        Parameters:
          Env: {Type: String, Default: dev}
          Zones: {Type: CommaDelimitedList, Default: "a, b, c"}
        Mappings:
          Sizes: {dev: {Memory: 256}, prod: {Memory: 2048}}
        Conditions:
          IsProd: !Equals [!Ref Env, prod]
          NotProd: !Not [!Condition IsProd]
          Both: !And [!Condition NotProd, !Or [!Equals [a, a], !Condition IsProd]]
        Globals:
          Function:
            Timeout: 10
            Layers: [!Ref Shared]
            Environment:
              Variables: {A: global, B: global}
        Resources:
          Shared:
            Type: AWS::Serverless::LayerVersion
            Properties: {ContentUri: lib/}
          Data:
            Type: AWS::S3::Bucket
            Properties: {BucketName: !Sub "data-${Env}-${AWS::AccountId}"}
          ProdOnly:
            Type: AWS::S3::Bucket
            Condition: IsProd
          Topic:
            Type: AWS::SNS::Topic
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src/
              Handler: pkg/mod.handle
              MemorySize: !FindInMap [Sizes, !Ref Env, Memory]
              Environment:
                Variables:
                  B: own
                  JOINED: !Join ["-", !Ref Zones]
                  SECOND: !Select [1, !Split [",", "x,y,z"]]
                  TOPIC: !Ref Topic
                  ESCAPED: !Sub "${!NotAVar}/${Data.Arn}"
                  BOTH: !If [Both, yes-both, not-both]
                  GONE: !If [IsProd, here, !Ref AWS::NoValue]
                  NUM: 3
                  FLAG: true
              Events:
                Root:
                  Type: HttpApi
                  Properties: {Path: "/things/{proxy+}", Method: any}
                Catch:
                  Type: HttpApi
                Tick:
                  Type: Schedule
                  Properties: {Schedule: rate(5 minutes), Input: !Sub '{"env": "${Env}"}'}
                Weird:
                  Type: EventBridgeRule
                  Properties: {Pattern: {source: [!GetAtt Topic.Unsupported]}}
        """,
    )
    t = load_template(path, stack_name="s")
    assert [b.logical_id for b in t.buckets] == ["Data"]  # ProdOnly's condition is false
    assert t.bucket("Data").name == "data-dev-123456789012"
    fn = t.function("Fn")
    assert fn.memory_size == 256 and fn.timeout == 10
    assert fn.layers == ((tmp_path / "lib").resolve(),)
    assert fn.code_uri == (tmp_path / "src").resolve()
    assert fn.handler == "pkg/mod.handle"
    assert fn.environment == {
        "A": "global",
        "B": "own",
        "JOINED": "a-b-c",
        "SECOND": "y",
        "TOPIC": "arn:aws:sns:us-east-1:123456789012:s-Topic",
        "ESCAPED": "${NotAVar}/arn:aws:s3:::data-dev-123456789012",
        "BOTH": "yes-both",
        "NUM": "3",
        "FLAG": "true",
    }
    assert {r.route_key for r in fn.routes} == {"ANY /things/{proxy+}", "$default"}
    tick = fn.events["Tick"]
    assert tick.type == "Schedule" and tick.resolved
    assert tick.properties == {"Schedule": "rate(5 minutes)", "Input": '{"env": "dev"}'}
    assert fn.events_of_type("Schedule") == [tick]
    weird = fn.events["Weird"]  # unsupported intrinsic: kept raw instead of failing the stack
    assert weird.resolved is False and weird.type == "EventBridgeRule"

    prod = load_template(path, {"Env": "prod"}, stack_name="s")
    assert {b.logical_id for b in prod.buckets} == {"Data", "ProdOnly"}
    assert prod.function("Fn").memory_size == 2048
    assert "GONE" in prod.function("Fn").environment
    assert prod.function("Fn").environment["BOTH"] == "not-both"


def test_unknown_ref_is_an_error(tmp_path):
    path = _write(
        tmp_path,
        """
        Resources:
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src/
              Handler: app.handler
              Environment: {Variables: {X: !Ref Missing}}
        """,
    )
    with pytest.raises(TemplateError, match="Missing"):
        load_template(path).functions  # noqa: B018 - resolution is lazy


def test_schedule_events_input_name_and_state(tmp_path):
    path = _write(
        tmp_path,
        """
        Parameters:
          Every: {Type: String, Default: rate(5 minutes)}
        Resources:
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src/
              Handler: app.handler
              Events:
                Tick:
                  Type: Schedule
                  Properties: {Schedule: !Ref Every, Input: '{"job": "tick"}'}
                Named:
                  Type: Schedule
                  Properties: {Schedule: "cron(0 3 * * ? *)", Name: my-rule, Enabled: false}
                Paused:
                  Type: Schedule
                  Properties: {Schedule: rate(1 day), State: DISABLED}
        """,
    )
    t = load_template(path, stack_name="s")
    schedules = {s.event: s for s in t.schedules}
    assert schedules["Tick"].expression == "rate(5 minutes)"
    assert schedules["Tick"].input == {"job": "tick"}
    assert schedules["Tick"].enabled is True
    assert schedules["Tick"].rule_arn == "arn:aws:events:us-east-1:123456789012:rule/s-FnTick"
    assert schedules["Named"].rule_name == "my-rule" and schedules["Named"].enabled is False
    assert schedules["Paused"].enabled is False


def test_lifecycle_rules_translation(tmp_path):
    path = _write(
        tmp_path,
        """
        Resources:
          B:
            Type: AWS::S3::Bucket
            Properties:
              LifecycleConfiguration:
                Rules:
                  - Id: tagged
                    Status: Enabled
                    Prefix: logs/
                    TagFilters: [{Key: k, Value: v}]
                    Transitions: [{StorageClass: GLACIER, TransitionInDays: "30"}]
                    NoncurrentVersionExpirationInDays: 3
                  - Status: Disabled
                    TagFilters: [{Key: only, Value: tag}]
                    ExpirationDate: "2030-01-01T00:00:00Z"
        """,
    )
    tagged, disabled = load_template(path).bucket("B").lifecycle["Rules"]
    assert tagged == {
        "ID": "tagged",
        "Status": "Enabled",
        "Filter": {"And": {"Prefix": "logs/", "Tags": [{"Key": "k", "Value": "v"}]}},
        "Transitions": [{"StorageClass": "GLACIER", "Days": 30}],
        "NoncurrentVersionExpiration": {"NoncurrentDays": 3},
    }
    assert disabled == {
        "Status": "Disabled",
        "Filter": {"Tag": {"Key": "only", "Value": "tag"}},
        "Expiration": {"Date": "2030-01-01T00:00:00Z"},
    }


def test_scheduled_event_payload():
    from datetime import UTC, datetime

    from sklambda_dev.local.scheduler import scheduled_event
    from sklambda_dev.local.template import Schedule

    rule = "arn:aws:events:eu-west-1:111122223333:rule/s-FnTick"
    schedule = Schedule("Fn", "Tick", "rate(1 hour)", "s-FnTick", rule)
    when = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    event = scheduled_event(schedule, account_id="111122223333", region="eu-west-1", now=when)
    assert len(event.pop("id")) == 36
    assert event == {
        "version": "0",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "111122223333",
        "time": "2024-05-06T07:08:09Z",
        "region": "eu-west-1",
        "resources": [rule],
        "detail": {},
    }
    with_input = Schedule("Fn", "Tick", "rate(1 hour)", "s-FnTick", rule, input={"job": "x"})
    assert scheduled_event(with_input, account_id="1", region="r") == {"job": "x"}
