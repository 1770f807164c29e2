"""template.yaml and statemachine/batch.asl.json: the batch pipeline's resources, policies and ASL.

The functions' S3 grants are checked with the same rules as test_infra_capture_drift.py's
``test_function_policies_are_scoped_to_bucket_prefixes`` (an allow-list of bucket prefixes per
function and action; a ``*`` only for a whole path segment), against the batch functions' own list.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from .support import REPO_ROOT, as_list, mentions_resource, sub_text

pytestmark = pytest.mark.infra

ASL = REPO_ROOT / "statemachine" / "batch.asl.json"
FUNCTIONS = ("BatchPlanFunction", "BatchScoreFunction", "BatchFinalizeFunction")
BUCKETS = ("ModelBucket", "CaptureBucket", "BatchBucket")
# (function, bucket) -> {action: key prefixes}; nothing else is allowed, and all of it is needed.
ALLOWED_S3 = {
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


@pytest.fixture(scope="module")
def resources(template) -> dict[str, dict[str, Any]]:
    return template["Resources"]


@pytest.fixture(scope="module")
def asl() -> dict[str, Any]:
    return json.loads(ASL.read_text())


def statements(resource: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for policy in as_list(resource["Properties"].get("Policies", [])):
        if "Statement" in policy:
            out += as_list(policy["Statement"])
    return out


def s3_grants(name: str, resource: dict[str, Any]) -> dict[tuple[str, str], dict[str, set[str]]]:
    granted: dict[tuple[str, str], dict[str, set[str]]] = {}
    for statement in statements(resource):
        actions = [a for a in as_list(statement["Action"]) if a.startswith("s3:")]
        if not actions:
            continue
        assert statement["Effect"] == "Allow", statement
        for target in as_list(statement["Resource"]):
            (bucket,) = [b for b in BUCKETS if mentions_resource(target, b)] or [None]
            assert bucket, f"{name}: S3 access outside the template's buckets: {target!r}"
            text = sub_text(target)
            if text is None:  # the bucket itself: listing only, narrowed by s3:prefix
                assert target == {"Fn::GetAtt": [bucket, "Arn"]} and set(actions) == {"s3:ListBucket"}
                prefixes = as_list(statement["Condition"]["StringLike"]["s3:prefix"])
                assert all(p.endswith("/*") for p in prefixes), prefixes
                keys = {p.removesuffix("*") for p in prefixes}
            else:
                prefix = text.removeprefix("${" + bucket + ".Arn}/")
                assert prefix != text and prefix.endswith("/*"), text
                assert all(seg == "*" or (seg and "*" not in seg) for seg in prefix[:-2].split("/")), text
                keys = {prefix[:-1]}
            for action in actions:
                granted.setdefault((name, bucket), {}).setdefault(action, set()).update(keys)
    return granted


# ----------------------------------------------------------------------------- the bucket
def test_the_batch_bucket_is_private_encrypted_versioned_and_retained(resources):
    bucket = resources["BatchBucket"]
    props = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Retain"
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["OwnershipControls"]["Rules"][0]["ObjectOwnership"] == "BucketOwnerEnforced"
    expiring = {r["Prefix"]: r["ExpirationInDays"] for r in props["LifecycleConfiguration"]["Rules"] if "Prefix" in r}
    assert expiring == {"input/": {"Ref": "BatchRetentionDays"}, "output/": {"Ref": "BatchRetentionDays"}}


def test_the_batch_bucket_refuses_plain_http(resources):
    policy = resources["BatchBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "BatchBucket"}
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny" and statement["Action"] == "s3:*" and statement["Principal"] == "*"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert {"Fn::GetAtt": ["BatchBucket", "Arn"]} in statement["Resource"]


# ----------------------------------------------------------------------------- the functions
@pytest.mark.parametrize("name", FUNCTIONS)
def test_batch_functions_run_the_library_with_their_settings_and_no_capture(resources, name):
    props = resources[name]["Properties"]
    assert props["Handler"] == "app.lambda_handler"
    assert (REPO_ROOT / props["CodeUri"] / "app.py").is_file()
    assert props["Layers"] == [{"Ref": "SklambdaLayer"}, {"Ref": "DepsLayer"}, {"Ref": "SklearnLayer"}]
    env = props["Environment"]["Variables"]
    assert env["BATCH_BUCKET"] == {"Ref": "BatchBucket"} and env["POWERTOOLS_SERVICE_NAME"] == "batch"
    assert "CAPTURE_STREAM" not in env  # batch rows are not live traffic
    actions = {a for s in statements(resources[name]) for a in as_list(s["Action"])}
    assert not any(a.startswith("firehose:") for a in actions)


def test_the_score_function_has_one_vcpu_and_lambdas_longest_timeout(resources):
    props = resources["BatchScoreFunction"]["Properties"]
    assert props["MemorySize"] == 1769 and props["Timeout"] == 900
    env = resources["BatchPlanFunction"]["Properties"]["Environment"]["Variables"]
    assert env["BATCH_PART_ROWS"] == {"Ref": "BatchPartRows"}
    assert env["BATCH_PART_BYTES"] == {"Ref": "BatchPartBytes"}
    assert env["BATCH_MAX_CONCURRENCY"] == {"Ref": "BatchMaxConcurrency"}


def test_batch_function_policies_are_scoped_to_bucket_prefixes(resources):
    granted: dict[tuple[str, str], dict[str, set[str]]] = {}
    for name in FUNCTIONS:
        granted.update(s3_grants(name, resources[name]))
    assert granted == ALLOWED_S3


# ----------------------------------------------------------------------------- the state machine
def test_the_state_machine_is_standard_traced_and_logged_with_a_known_name(resources):
    props = resources["BatchStateMachine"]["Properties"]
    assert props["Type"] == "STANDARD" and props["DefinitionUri"] == "statemachine/batch.asl.json"
    assert props["Name"] == {"Fn::Sub": "${AWS::StackName}-batch"}
    assert props["Tracing"] == {"Enabled": True}
    assert props["Logging"]["IncludeExecutionData"] is False


def test_every_substitution_the_definition_names_is_provided(resources):
    names = set(re.findall(r"\$\{([^}]+)\}", ASL.read_text()))
    assert names == set(resources["BatchStateMachine"]["Properties"]["DefinitionSubstitutions"])


def test_the_state_machine_may_run_its_children_read_its_parts_and_invoke_only_its_functions(resources):
    props = resources["BatchStateMachine"]["Properties"]
    invoked = {p["LambdaInvokePolicy"]["FunctionName"]["Ref"] for p in props["Policies"] if "LambdaInvokePolicy" in p}
    assert invoked == set(FUNCTIONS)
    allowed = {
        (a, sub_text(r) if sub_text(r) is not None else json.dumps(r))
        for s in statements(resources["BatchStateMachine"])
        for a in as_list(s["Action"])
        for r in as_list(s["Resource"])
    }
    own = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}"
    assert ("states:StartExecution", f"{own}:stateMachine:${{AWS::StackName}}-batch") in allowed
    assert ("states:DescribeExecution", f"{own}:execution:${{AWS::StackName}}-batch/*") in allowed
    assert ("s3:GetObject", "${BatchBucket.Arn}/output/*/_job/*") in allowed
    assert ("s3:PutObject", "${BatchBucket.Arn}/output/_map/*") in allowed
    s3 = {resource for action, resource in allowed if action.startswith("s3:")}
    assert s3 == {"${BatchBucket.Arn}/output/*/_job/*", "${BatchBucket.Arn}/output/_map/*"}


def test_the_definition_is_plan_then_a_distributed_map_then_a_finalize_that_decides(asl):
    states = asl["States"]
    assert asl["StartAt"] == "Plan" and states["Plan"]["Next"] == "ScoreParts"
    score = states["ScoreParts"]
    assert score["Type"] == "Map" and score["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    reader = score["ItemReader"]
    # a JSON array object: the one S3 reader moto has; no ItemBatcher (moto has none, and parts are the batches)
    assert reader["Resource"] == "arn:aws:states:::s3:getObject" and reader["ReaderConfig"]["InputType"] == "JSON"
    assert "ItemBatcher" not in score
    assert score["MaxConcurrencyPath"] == "$.plan.max_concurrency"
    # every child may fail without failing the map: Finalize always runs and judges from S3 (moto reports
    # failed children as successes anyway); a failing map (e.g. its reader) is caught into Finalize too
    assert score["ToleratedFailurePercentage"] == 100
    assert score["Next"] == "Finalize" and score["Catch"][0]["Next"] == "Finalize"
    assert states["Finalize"]["Next"] == "EveryPartWritten?"
    assert states["Incomplete"] == {"Type": "Fail", "Error": "BatchIncomplete", "CausePath": "$.result.problem"}


def test_transient_errors_are_retried_with_backoff_and_bad_input_is_not(asl):
    task = asl["States"]["ScoreParts"]["ItemProcessor"]["States"]["ScorePart"]
    permanent, transient = task["Retry"]
    assert permanent["MaxAttempts"] == 0
    assert {"BatchInputError", "BatchConflict", "IntegrityError", "ModelLoadError"} <= set(permanent["ErrorEquals"])
    assert transient["ErrorEquals"] == ["States.ALL"]
    assert transient["MaxAttempts"] >= 2 and transient["BackoffRate"] > 1 and transient["JitterStrategy"] == "FULL"
    assert task["Parameters"]["attempt.$"] == "$$.State.RetryCount"
    for name in ("Plan", "Finalize"):
        assert asl["States"][name]["Retry"][-1]["ErrorEquals"] == ["States.ALL"], name


# ----------------------------------------------------------------------------- parameters, alarm, outputs
@pytest.mark.parametrize(
    ("name", "default"),
    [("BatchMaxConcurrency", 40), ("BatchPartRows", 50000), ("BatchPartBytes", 64000000), ("BatchRetentionDays", 30)],
)
def test_batch_parameters(template, name, default):
    assert template["Parameters"][name]["Type"] == "Number"
    assert template["Parameters"][name]["Default"] == default


def test_a_failed_batch_job_alarms(resources):
    alarm = resources["BatchFailuresAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/States", "ExecutionsFailed")
    assert alarm["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": "BatchStateMachine"}}]
    assert alarm["AlarmActions"] == [{"Ref": "AlertsTopic"}] and alarm["OKActions"] == [{"Ref": "AlertsTopic"}]


@pytest.mark.parametrize(
    ("output", "value"),
    [("BatchBucketName", {"Ref": "BatchBucket"}), ("BatchStateMachineArn", {"Ref": "BatchStateMachine"})],
)
def test_batch_outputs(template, output, value):
    assert template["Outputs"][output]["Value"] == value
