"""template.yaml: the capture path (bucket, Firehose, its role) and the scheduled drift function."""

from __future__ import annotations

from typing import Any

import pytest

from .support import REPO_ROOT, as_list, evaluate, mentions_resource, sub_text

pytestmark = pytest.mark.infra

GETATT_CAPTURE_BUCKET = {"Fn::GetAtt": ["CaptureBucket", "Arn"]}


@pytest.fixture(scope="module")
def resources(template) -> dict[str, dict[str, Any]]:
    return template["Resources"]


@pytest.fixture(scope="module")
def capture_bucket(resources) -> dict[str, Any]:
    return resources["CaptureBucket"]


@pytest.fixture(scope="module")
def stream(resources) -> dict[str, Any]:
    assert resources["CaptureStream"]["Type"] == "AWS::KinesisFirehose::DeliveryStream"
    return resources["CaptureStream"]["Properties"]


@pytest.fixture(scope="module")
def drift(resources) -> dict[str, Any]:
    assert resources["DriftFunction"]["Type"] == "AWS::Serverless::Function"
    return resources["DriftFunction"]["Properties"]


def statements_of(policies: Any) -> list[dict[str, Any]]:
    statements = []
    for policy in as_list(policies):
        document = policy.get("PolicyDocument", policy)
        assert "Statement" in document, f"{policy!r} is not an inline policy document"
        statements.extend(as_list(document["Statement"]))
    return statements


# --- parameters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "type_", "default"),
    [
        ("CaptureSampleRate", "Number", 1),
        ("DriftSchedule", "String", "rate(1 hour)"),
        ("DriftMinRows", "Number", 500),
        ("DriftPsiThreshold", "Number", 0.2),
        ("DriftDistanceThreshold", "Number", 0.1),
        ("DriftAlarmThreshold", "Number", 0.3),
        ("LatencyAlarmMs", "Number", 250),
        ("AlertEmail", "String", ""),
        ("CaptureRetentionDays", "Number", 90),
        ("ReportRetentionDays", "Number", 365),
    ],
)
def test_parameters(template, name, type_, default):
    spec = template["Parameters"][name]
    assert spec["Type"] == type_
    assert spec["Default"] == default
    assert spec.get("Description"), f"{name} has no Description"


def test_capture_sample_rate_is_a_fraction(template):
    spec = template["Parameters"]["CaptureSampleRate"]
    assert (spec["MinValue"], spec["MaxValue"]) == (0, 1)


# --- capture bucket -----------------------------------------------------------------------------


def test_capture_bucket_is_private_encrypted_and_versioned(capture_bucket):
    props = capture_bucket["Properties"]
    assert props["VersioningConfiguration"]["Status"] == "Enabled"  # state/ uses conditional writes
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert rule["BucketKeyEnabled"] is True
    block = props["PublicAccessBlockConfiguration"]
    for setting in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
        assert block[setting] is True, setting
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]


def test_capture_bucket_outlives_the_stack(capture_bucket):
    assert capture_bucket["DeletionPolicy"] == "Retain"
    assert capture_bucket["UpdateReplacePolicy"] == "Retain"


def test_capture_bucket_lifecycle(capture_bucket):
    rules = capture_bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    assert all(rule["Status"] == "Enabled" for rule in rules)
    by_prefix = {rule.get("Prefix", ""): rule for rule in rules}
    assert by_prefix["captures/"]["ExpirationInDays"] == {"Ref": "CaptureRetentionDays"}
    assert by_prefix["capture-errors/"]["ExpirationInDays"] == 30
    assert by_prefix["reports/"]["ExpirationInDays"] == {"Ref": "ReportRetentionDays"}
    assert "state/" not in by_prefix, "drift watermarks must never expire"
    whole_bucket = by_prefix[""]
    assert whole_bucket["NoncurrentVersionExpiration"] == {"NoncurrentDays": 7}
    assert whole_bucket["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert "ExpirationInDays" not in whole_bucket


# --- Firehose -----------------------------------------------------------------------------------


def test_stream_is_direct_put_and_encrypted(stream):
    assert stream["DeliveryStreamType"] == "DirectPut"
    assert stream["DeliveryStreamEncryptionConfigurationInput"] == {"KeyType": "AWS_OWNED_CMK"}


def test_stream_delivers_to_captures_prefix_with_firehose_time_layout(stream):
    destination = stream["ExtendedS3DestinationConfiguration"]
    assert destination["BucketARN"] == GETATT_CAPTURE_BUCKET
    assert destination["RoleARN"] == {"Fn::GetAtt": ["FirehoseRole", "Arn"]}
    # A static prefix: Firehose appends YYYY/MM/DD/HH/ itself (the drift reader's layout, and
    # moto's). A !{...} expression would replace that default, and needs dynamic partitioning.
    assert destination["Prefix"] == "captures/"
    assert destination["ErrorOutputPrefix"] == "capture-errors/"
    assert "!{" not in destination["Prefix"] + destination["ErrorOutputPrefix"]
    assert "DynamicPartitioningConfiguration" not in destination
    assert destination["BufferingHints"] == {"IntervalInSeconds": 60, "SizeInMBs": 5}
    assert destination["CompressionFormat"] == "GZIP"


def test_stream_logs_delivery_errors(stream, resources):
    logging = stream["ExtendedS3DestinationConfiguration"]["CloudWatchLoggingOptions"]
    assert logging["Enabled"] is True
    assert logging["LogGroupName"] == {"Ref": "CaptureDeliveryLogGroup"}
    assert logging["LogStreamName"] == {"Ref": "CaptureDeliveryLogStream"}
    group = resources["CaptureDeliveryLogGroup"]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] > 0
    log_stream = resources["CaptureDeliveryLogStream"]
    assert log_stream["Type"] == "AWS::Logs::LogStream"
    assert log_stream["Properties"]["LogGroupName"] == {"Ref": "CaptureDeliveryLogGroup"}


def test_firehose_role_trusts_only_firehose_of_this_account(resources):
    role = resources["FirehoseRole"]["Properties"]
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "firehose.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"]["StringEquals"]["sts:ExternalId"] == {"Ref": "AWS::AccountId"}
    assert "ManagedPolicyArns" not in role


def test_firehose_role_least_privilege(resources):
    statements = statements_of(resources["FirehoseRole"]["Properties"]["Policies"])
    granted: dict[str, list[Any]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            granted.setdefault(action, []).extend(as_list(statement["Resource"]))
    assert set(granted) == {
        "s3:AbortMultipartUpload",
        "s3:GetBucketLocation",
        "s3:GetObject",
        "s3:ListBucket",
        "s3:ListBucketMultipartUploads",
        "s3:PutObject",
        "logs:PutLogEvents",
    }
    for action in ("s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"):
        assert granted[action] == [GETATT_CAPTURE_BUCKET], action
    for action in ("s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"):
        texts = sorted(sub_text(r) or "" for r in granted[action])
        assert texts == [
            "${CaptureBucket.Arn}/capture-errors/*",
            "${CaptureBucket.Arn}/captures/*",
            "${CaptureBucket.Arn}/feedback-errors/*",
            "${CaptureBucket.Arn}/feedback/*",
        ], action
    (log_resource,) = granted["logs:PutLogEvents"]
    assert "${CaptureDeliveryLogGroup}:log-stream:" in sub_text(log_resource)


# --- predict function: capture settings ---------------------------------------------------------


def test_predict_function_captures_to_the_stream(resources):
    env = resources["PredictFunction"]["Properties"]["Environment"]["Variables"]
    assert env["CAPTURE_STREAM"] == {"Ref": "CaptureStream"}
    assert env["CAPTURE_SAMPLE_RATE"] == {"Ref": "CaptureSampleRate"}


def test_predict_function_may_only_put_records_to_its_stream(resources):
    statements = statements_of(resources["PredictFunction"]["Properties"]["Policies"])
    firehose = [s for s in statements if any(a.startswith("firehose:") for a in as_list(s["Action"]))]
    assert firehose, "PredictFunction cannot write to the capture stream"
    for statement in firehose:
        assert set(as_list(statement["Action"])) <= {"firehose:PutRecord", "firehose:PutRecordBatch"}
        assert "firehose:PutRecordBatch" in as_list(statement["Action"])
        assert as_list(statement["Resource"]) == [
            {"Fn::GetAtt": ["CaptureStream", "Arn"]},
            {"Fn::GetAtt": ["FeedbackStream", "Arn"]},
        ]


# --- drift function -----------------------------------------------------------------------------


def test_drift_function_runtime_settings(drift):
    assert drift["CodeUri"] == "functions/drift/"
    assert drift["Handler"] == "app.lambda_handler"
    assert (REPO_ROOT / "functions" / "drift" / "requirements.txt").is_file()  # sam build needs one
    assert drift["MemorySize"] == 2048
    assert drift["Timeout"] == 900
    assert drift["AutoPublishAlias"] == "live"
    assert drift["ReservedConcurrentExecutions"] == 1  # one drift run at a time
    # scipy (p-values) and scikit-learn (publish-time conversion) live in the SklearnLayer
    assert drift["Layers"] == [{"Ref": "SklambdaLayer"}, {"Ref": "DepsLayer"}, {"Ref": "SklearnLayer"}]


def test_drift_function_environment(drift):
    assert drift["Environment"]["Variables"] == {
        "POWERTOOLS_SERVICE_NAME": "drift",
        "CAPTURE_BUCKET": {"Ref": "CaptureBucket"},
        "MODEL_BUCKET": {"Ref": "ModelBucket"},
        "MODEL_ALIAS": {"Ref": "ModelAlias"},
        "DRIFT_MIN_ROWS": {"Ref": "DriftMinRows"},
        "DRIFT_PSI_THRESHOLD": {"Ref": "DriftPsiThreshold"},
        "DRIFT_DISTANCE_THRESHOLD": {"Ref": "DriftDistanceThreshold"},
        "DRIFT_WASSERSTEIN_THRESHOLD": {"Ref": "DriftWassersteinThreshold"},
        "DRIFT_LOOKBACK_HOURS": "48",
        # fan-out of big windows (DriftStateMachine, a known ARN: its reduce step invokes this function)
        "DRIFT_MAX_OBJECTS_PER_RUN": {"Ref": "DriftMaxObjectsPerRun"},
        "DRIFT_FANOUT_CONCURRENCY": {"Ref": "DriftFanoutConcurrency"},
        "DRIFT_STATE_MACHINE_ARN": {
            "Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:"
            "stateMachine:${AWS::StackName}-drift"
        },
    }


def test_drift_function_runs_on_the_drift_schedule(drift, template):
    schedules = {name: e for name, e in drift["Events"].items() if e["Type"] == "Schedule"}
    assert list(schedules) == ["DriftSchedule"]
    props = schedules["DriftSchedule"]["Properties"]
    assert props["Schedule"] == {"Ref": "DriftSchedule"}
    assert evaluate(props, template).get("Enabled", True) is True
    assert "Input" not in props  # the handler receives EventBridge's Scheduled Event


def test_drift_schedule_accepts_rate_and_cron_only(template):
    import re

    pattern = template["Parameters"]["DriftSchedule"]["AllowedPattern"]
    for ok in ("rate(1 hour)", "rate(15 minutes)", "rate(2 days)", "cron(0 * * * ? *)"):
        assert re.fullmatch(pattern, ok), ok
    for bad in ("1 hour", "rate(0 hours)", "rate(1 fortnight)", "every hour"):
        assert not re.fullmatch(pattern, bad), bad


# --- every function policy is scoped to its bucket prefixes -------------------------------------

# (function, bucket) -> {action: allowed key prefixes}. Anything not listed is not allowed.
ALLOWED_S3 = {
    ("PredictFunction", "ModelBucket"): {"s3:GetObject": {"models/"}, "s3:ListBucket": {"models/"}},
    ("DriftFunction", "ModelBucket"): {"s3:GetObject": {"models/"}, "s3:ListBucket": {"models/"}},
    # the pre-traffic hook reads the alias and the served version's manifest
    ("PreTrafficHookFunction", "ModelBucket"): {"s3:GetObject": {"models/"}, "s3:ListBucket": {"models/"}},
    # a fan-out drift run's children: read their batch of captures, write their partial aggregate
    ("DriftBatchFunction", "ModelBucket"): {"s3:GetObject": {"models/"}, "s3:ListBucket": {"models/"}},
    ("DriftBatchFunction", "CaptureBucket"): {"s3:GetObject": {"captures/"}, "s3:PutObject": {"state/fanout/"}},
    ("DriftFunction", "CaptureBucket"): {
        "s3:GetObject": {"captures/", "feedback/", "state/", "reports/"},
        "s3:PutObject": {"state/", "reports/"},
        "s3:ListBucket": {"captures/", "feedback/", "state/", "reports/"},
    },
    ("RetrainGuardFunction", "CaptureBucket"): {
        "s3:GetObject": {"state/retrain/"},
        "s3:PutObject": {"state/retrain/"},
        "s3:DeleteObject": {"state/retrain/"},
        "s3:ListBucket": {"state/retrain/"},
    },
    ("RetrainGuardFunction", "ModelBucket"): {
        "s3:GetObject": {"models/"},
        "s3:ListBucket": {"models/"},
        "s3:PutObject": {"models/*/aliases/"},
    },
    ("RetrainAssembleFunction", "ModelBucket"): {"s3:GetObject": {"models/"}, "s3:ListBucket": {"models/"}},
    ("RetrainAssembleFunction", "CaptureBucket"): {
        "s3:GetObject": {"captures/", "feedback/", "retrain/"},
        "s3:PutObject": {"retrain/"},
        "s3:ListBucket": {"captures/", "feedback/"},
    },
    ("RetrainTrainFunction", "ModelBucket"): {"s3:GetObject": {"models/"}},
    ("RetrainTrainFunction", "CaptureBucket"): {"s3:GetObject": {"retrain/"}, "s3:PutObject": {"retrain/"}},
    ("RetrainEvaluateFunction", "ModelBucket"): {"s3:GetObject": {"models/"}},
    ("RetrainEvaluateFunction", "CaptureBucket"): {"s3:GetObject": {"retrain/"}},
    ("RetrainPublishFunction", "ModelBucket"): {
        "s3:GetObject": {"models/"},
        "s3:ListBucket": {"models/"},
        "s3:PutObject": {"models/*/versions/"},
    },
    ("RetrainPublishFunction", "CaptureBucket"): {"s3:GetObject": {"retrain/"}},
    ("RetrainCanaryFunction", "ModelBucket"): {
        "s3:GetObject": {"models/"},
        "s3:ListBucket": {"models/"},
        "s3:PutObject": {"models/*/aliases/"},
    },
    ("RetrainCanaryFunction", "CaptureBucket"): {
        "s3:GetObject": {"captures/", "feedback/"},
        "s3:ListBucket": {"captures/", "feedback/"},
    },
    # batch scoring: plan and score read the pinned version; every batch function stays inside input/ and output/
    ("BatchPlanFunction", "ModelBucket"): {"s3:GetObject": {"models/"}, "s3:ListBucket": {"models/"}},
    ("BatchPlanFunction", "BatchBucket"): {
        "s3:GetObject": {"input/", "output/"},
        "s3:PutObject": {"output/"},
        "s3:ListBucket": {"input/", "output/"},
    },
    ("BatchScoreFunction", "ModelBucket"): {"s3:GetObject": {"models/"}, "s3:ListBucket": {"models/"}},
    ("BatchScoreFunction", "BatchBucket"): {
        "s3:GetObject": {"input/", "output/"},
        "s3:PutObject": {"output/"},
        "s3:ListBucket": {"output/"},
    },
    ("BatchFinalizeFunction", "BatchBucket"): {
        "s3:GetObject": {"output/"},
        "s3:PutObject": {"output/"},
        "s3:ListBucket": {"output/"},
    },
}
BUCKETS = ("ModelBucket", "CaptureBucket", "BatchBucket")


def test_function_policies_are_scoped_to_bucket_prefixes(template):
    functions = {n: r for n, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    assert {"PredictFunction", "DriftFunction"} <= set(functions)
    for name, function in functions.items():
        granted: dict[tuple[str, str], dict[str, set[str]]] = {}
        for statement in statements_of(function["Properties"].get("Policies", [])):
            s3_actions = [a for a in as_list(statement["Action"]) if a.startswith("s3:")]
            if not s3_actions:
                continue
            assert statement["Effect"] == "Allow", statement
            for resource in as_list(statement["Resource"]):
                (bucket,) = [b for b in BUCKETS if mentions_resource(resource, b)] or [None]
                assert bucket, f"{name}: S3 access outside the template's buckets: {resource!r}"
                text = sub_text(resource)
                if text is None:  # the bucket itself: listing, restricted by s3:prefix
                    assert resource == {"Fn::GetAtt": [bucket, "Arn"]}, resource
                    assert set(s3_actions) == {"s3:ListBucket"}, f"{name}: {s3_actions} on the bucket ARN"
                    prefixes = as_list(statement["Condition"]["StringLike"]["s3:prefix"])
                    keys = {p.removesuffix("*") for p in prefixes}
                    assert all(p.endswith("/*") for p in prefixes), prefixes
                else:
                    prefix = text.removeprefix("${" + bucket + ".Arn}/")
                    # a prefix ends in /*; a * elsewhere may only stand for one whole path segment
                    # (models/*/aliases/* is narrower than models/*)
                    assert prefix != text and prefix.endswith("/*"), text
                    assert all(seg == "*" or (seg and "*" not in seg) for seg in prefix[:-2].split("/")), text
                    keys = {prefix[:-1]}
                for action in s3_actions:
                    granted.setdefault((name, bucket), {}).setdefault(action, set()).update(keys)
        for (fn, bucket), actions in granted.items():
            allowed = ALLOWED_S3.get((fn, bucket))
            assert allowed is not None, f"{fn} may not touch {bucket} at all"
            for action, keys in actions.items():
                assert keys <= allowed.get(action, set()), f"{fn}: {action} on {bucket} {sorted(keys)}"
        expected = {key: value for key, value in ALLOWED_S3.items() if key[0] == name}
        assert {key: value for key, value in granted.items()} == expected, f"{name} lacks access it needs"
