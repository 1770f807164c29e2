"""template.yaml: `sam validate --lint`, and the security and API properties we rely on."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from .support import REPO_ROOT, TEMPLATE_PATH, as_list, evaluate, mentions_resource, resources_of_type, sub_text

pytestmark = pytest.mark.infra

REQUIRED_ROUTES = {
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/models"),
    ("GET", "/models/{name}"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("POST", "/predict"),
    ("POST", "/models/{name}/predict"),
}
READ_ONLY_S3_ACTIONS = {"s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "s3:ListBucketVersions"}


@pytest.fixture(scope="module")
def bucket(template) -> dict[str, Any]:
    return template["Resources"]["ModelBucket"]


@pytest.fixture(scope="module")
def predict(template) -> dict[str, Any]:
    return template["Resources"]["PredictFunction"]


@pytest.fixture(scope="module")
def predict_statements(predict) -> list[dict[str, Any]]:
    statements = []
    for policy in as_list(predict["Properties"].get("Policies", [])):
        assert isinstance(policy, dict) and "Statement" in policy, (
            f"PredictFunction policy {policy!r} is not an inline policy document: managed policies and "
            "SAM policy templates cannot be audited here"
        )
        statements.extend(as_list(policy["Statement"]))
    assert statements, "PredictFunction has no policy statements at all"
    return statements


# --- sam validate --lint ------------------------------------------------------------------------


def test_sam_validate_lint_passes(sam_cli, sam_env):
    result = subprocess.run(
        [str(sam_cli), "validate", "--lint", "--template-file", str(TEMPLATE_PATH)],
        cwd=REPO_ROOT,
        env=sam_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"sam validate --lint failed:\n{output}"
    assert "is a valid SAM Template" in output, output


# --- model bucket -------------------------------------------------------------------------------


def test_model_bucket_is_versioned(bucket):
    assert bucket["Properties"]["VersioningConfiguration"]["Status"] == "Enabled"


def test_model_bucket_is_encrypted(bucket):
    rules = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    algorithms = {rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] for rule in rules}
    assert algorithms and algorithms <= {"AES256", "aws:kms", "aws:kms:dsse"}


def test_model_bucket_blocks_public_access(bucket):
    block = bucket["Properties"]["PublicAccessBlockConfiguration"]
    for setting in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
        assert block.get(setting) is True, f"{setting} is not true"


def test_model_bucket_is_retained(bucket):
    # The registry outlives the stack: deleting the stack must not delete the models.
    assert bucket.get("DeletionPolicy") == "Retain"


@pytest.mark.parametrize("bucket_id", ["ModelBucket", "CaptureBucket"])
def test_bucket_policy_denies_plain_http(template, bucket_id):
    policies = [
        res
        for res in resources_of_type(template, "AWS::S3::BucketPolicy").values()
        if res["Properties"]["Bucket"] == {"Ref": bucket_id}
    ]
    assert policies, f"no AWS::S3::BucketPolicy on {bucket_id}"
    statements = [s for p in policies for s in as_list(p["Properties"]["PolicyDocument"]["Statement"])]

    def denies_insecure_transport(statement: dict[str, Any]) -> bool:
        condition = statement.get("Condition", {}).get("Bool", {})
        actions = set(as_list(statement.get("Action", [])))
        resources = as_list(statement.get("Resource", []))
        return (
            statement.get("Effect") == "Deny"
            and statement.get("Principal") in ("*", {"AWS": "*"})
            and str(condition.get("aws:SecureTransport")).lower() == "false"
            and bool(actions & {"s3:*", "*"})
            # both the bucket and its objects
            and any(r == {"Fn::GetAtt": [bucket_id, "Arn"]} for r in resources)
            and any((sub_text(r) or "").endswith("/*") and mentions_resource(r, bucket_id) for r in resources)
        )

    assert any(denies_insecure_transport(s) for s in statements), statements


# --- predict function ---------------------------------------------------------------------------


def test_every_function_runs_python312(template):
    global_runtime = template.get("Globals", {}).get("Function", {}).get("Runtime")
    functions = resources_of_type(template, "AWS::Serverless::Function")
    assert functions
    for name, function in functions.items():
        runtime = function["Properties"].get("Runtime", global_runtime)
        assert runtime == "python3.12", f"{name} runs {runtime}"


def test_predict_function_publishes_live_alias(predict):
    assert predict["Properties"]["AutoPublishAlias"] == "live"


def test_every_function_uses_the_library_and_dependency_layers(template):
    for name, function in resources_of_type(template, "AWS::Serverless::Function").items():
        layers = as_list(template.get("Globals", {}).get("Function", {}).get("Layers", []))
        layers += as_list(function["Properties"].get("Layers", []))
        assert {"Ref": "SklambdaLayer"} in layers, name
        assert {"Ref": "DepsLayer"} in layers, name
        assert {"Ref": "SklearnLayer"} in layers, name  # training, drift statistics, the predict fallback
        assert len(layers) <= 5, f"{name}: Lambda allows at most 5 layers"


@pytest.mark.parametrize("layer", ["SklambdaLayer", "DepsLayer", "SklearnLayer"])
def test_layers_are_built_for_python312_by_their_makefiles(template, layer):
    resource = template["Resources"][layer]
    assert resource["Type"] == "AWS::Serverless::LayerVersion"
    assert "python3.12" in resource["Properties"]["CompatibleRuntimes"]
    assert resource["Properties"]["CompatibleArchitectures"] == ["x86_64"]
    assert resource["Metadata"]["BuildMethod"] == "makefile"
    content = REPO_ROOT / resource["Properties"]["ContentUri"]
    makefile = (content / "Makefile").read_text()
    assert f"build-{layer}:" in makefile, f"{content}/Makefile has no build-{layer} target"


@pytest.mark.parametrize("layer", ["DepsLayer", "SklearnLayer"])
def test_dependency_layers_install_hash_pinned_requirements(template, layer):
    content = REPO_ROOT / template["Resources"][layer]["Properties"]["ContentUri"]
    pins = [line for line in (content / "requirements.txt").read_text().splitlines() if line and line[0].isalpha()]
    assert pins and all("==" in line for line in pins), pins
    assert "--hash=sha256:" in (content / "requirements.txt").read_text()


def test_the_lean_dependency_layer_has_no_scikit_learn_or_scipy(template):
    content = REPO_ROOT / template["Resources"]["DepsLayer"]["Properties"]["ContentUri"]
    names = {line.split("==")[0] for line in (content / "requirements.txt").read_text().splitlines() if "==" in line}
    assert {"numpy", "pydantic", "aws-lambda-powertools"} <= names
    assert not names & {"scikit-learn", "scipy", "joblib", "onnxruntime", "skl2onnx"}, names


def test_snapstart_is_a_parameter_of_the_predict_function(template, predict):
    parameter = template["Parameters"]["PredictSnapStart"]
    assert parameter["Default"] == "None" and set(parameter["AllowedValues"]) == {"None", "PublishedVersions"}
    assert predict["Properties"]["SnapStart"] == {"ApplyOn": {"Ref": "PredictSnapStart"}}
    on = evaluate(predict["Properties"]["SnapStart"], template, {"PredictSnapStart": "PublishedVersions"})
    assert on == {"ApplyOn": "PublishedVersions"}
    assert evaluate(predict["Properties"]["SnapStart"], template) == {"ApplyOn": "None"}
    # SnapStart applies to published versions: the API invokes the auto-published `live` alias.
    assert predict["Properties"]["AutoPublishAlias"] == "live"
    assert template["Globals"]["Function"]["Runtime"] == "python3.12"


def iam_policy_statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(owner, statement) for every identity policy in the template: the inline Policies of each
    function and each IAM role (resource policies, such as key policies, are not IAM policies)."""
    found = []
    for name, resource in template["Resources"].items():
        if resource["Type"] not in ("AWS::Serverless::Function", "AWS::IAM::Role"):
            continue
        for policy in as_list(resource["Properties"].get("Policies", [])):
            assert isinstance(policy, dict), f"{name}: {policy!r} is a managed policy / SAM policy template"
            document = policy.get("PolicyDocument", policy)
            found.extend((name, statement) for statement in as_list(document["Statement"]))
    return found


# Actions AWS does not support resource-level permissions for: `Resource: "*"` is the only option.
UNSCOPABLE_ACTIONS = {
    "cloudwatch:GetMetricStatistics",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}


def test_no_identity_policy_has_wildcards(template):
    statements = iam_policy_statements(template)
    assert {owner for owner, _ in statements} >= {"PredictFunction", "DriftFunction", "FirehoseRole"}
    for owner, statement in statements:
        assert statement["Effect"] == "Allow", (owner, statement)
        assert "NotAction" not in statement and "NotResource" not in statement, (owner, statement)
        for action in as_list(statement["Action"]):
            assert "*" not in action, f"{owner}: wildcard action {action!r}"
        for resource in as_list(statement["Resource"]):
            if resource == "*":
                assert set(as_list(statement["Action"])) <= UNSCOPABLE_ACTIONS, f"{owner}: Resource * in {statement}"
                continue
            text = resource if isinstance(resource, str) else sub_text(resource) or ""
            if text.endswith(".Arn}:*") and set(as_list(statement["Action"])) == {"lambda:InvokeFunction"}:
                # the versions of one function of this stack (the pre-traffic hook invokes the new one)
                function = text.removeprefix("${").removesuffix(".Arn}:*")
                assert template["Resources"][function]["Type"] == "AWS::Serverless::Function", (owner, text)
                continue
            assert not text.endswith(":*") or ":log-stream:" in text, f"{owner}: {resource!r} is too broad"


def test_no_role_gets_managed_policies(template):
    for name, role in resources_of_type(template, "AWS::IAM::Role").items():
        assert not role["Properties"].get("ManagedPolicyArns"), name


def test_predict_policy_has_no_wildcard_actions(predict_statements):
    for statement in predict_statements:
        for action in as_list(statement.get("Action", [])) + as_list(statement.get("NotAction", [])):
            assert "*" not in action, f"wildcard action {action!r} in {statement}"
        assert "NotAction" not in statement and "NotResource" not in statement, statement


def test_predict_policy_reads_only_models_prefix_of_its_bucket(predict_statements):
    s3_statements = [s for s in predict_statements if any(a.startswith("s3:") for a in as_list(s.get("Action", [])))]
    assert s3_statements, "PredictFunction cannot read the model registry"
    for statement in s3_statements:
        actions = set(as_list(statement["Action"]))
        assert statement["Effect"] == "Allow"
        assert actions <= READ_ONLY_S3_ACTIONS, f"not read-only: {sorted(actions - READ_ONLY_S3_ACTIONS)}"
        for resource in as_list(statement["Resource"]):
            assert resource != "*" and mentions_resource(resource, "ModelBucket"), f"{resource!r} is not in ModelBucket"
            text = sub_text(resource)
            if text is not None:  # object ARN
                assert text.endswith("/models/*"), f"object access outside models/: {text}"
            else:  # the bucket ARN itself: listing only, restricted to the models/ prefix
                assert resource == {"Fn::GetAtt": ["ModelBucket", "Arn"]}, resource
                assert actions <= {"s3:ListBucket", "s3:ListBucketVersions"}, actions
                prefixes = [
                    prefix
                    for operator in ("StringLike", "StringEquals")
                    for prefix in as_list(statement.get("Condition", {}).get(operator, {}).get("s3:prefix", []))
                ]
                assert prefixes, f"listing the whole bucket is allowed: {statement}"
                assert all(p.startswith("models/") for p in prefixes), prefixes


def test_predict_function_knows_its_bucket(predict):
    env = predict["Properties"]["Environment"]["Variables"]
    assert env["MODEL_BUCKET"] == {"Ref": "ModelBucket"}


# --- HTTP API -----------------------------------------------------------------------------------


def test_api_authorizer_defaults_to_iam(template):
    assert template["Parameters"]["AuthType"]["Default"] == "AWS_IAM"
    auth = evaluate(template["Resources"]["Api"]["Properties"]["Auth"], template)
    assert auth["EnableIamAuthorizer"] is True
    assert auth["DefaultAuthorizer"] == "AWS_IAM"


def test_api_authorizer_is_switched_by_auth_type(template):
    assert set(template["Parameters"]["AuthType"]["AllowedValues"]) == {"AWS_IAM", "JWT", "NONE"}
    assert template["Parameters"]["AuthType"]["Default"] == "AWS_IAM"
    auth_node = template["Resources"]["Api"]["Properties"]["Auth"]
    iam = evaluate(auth_node, template, {"AuthType": "AWS_IAM"})
    assert iam["DefaultAuthorizer"] == "AWS_IAM" and "Authorizers" not in iam
    jwt = evaluate(auth_node, template, {"AuthType": "JWT", "JwtIssuer": "https://issuer", "JwtAudience": "aud"})
    assert jwt["DefaultAuthorizer"] == "JwtAuthorizer"
    config = jwt["Authorizers"]["JwtAuthorizer"]
    assert config["IdentitySource"] == "$request.header.Authorization"
    assert config["JwtConfiguration"] == {"issuer": "https://issuer", "audience": ["aud"]}
    assert "DefaultAuthorizer" not in evaluate(auth_node, template, {"AuthType": "NONE"})


def test_api_is_throttled(template):
    settings = evaluate(template["Resources"]["Api"]["Properties"].get("DefaultRouteSettings", {}), template)
    assert {"ThrottlingRateLimit", "ThrottlingBurstLimit"} <= set(settings), f"API not throttled: {settings}"
    rate = float(settings["ThrottlingRateLimit"])
    burst = int(settings["ThrottlingBurstLimit"])
    assert 0 < rate <= burst, settings


def test_api_has_every_route(template):
    routes = set()
    for name, function in resources_of_type(template, "AWS::Serverless::Function").items():
        for event_name, event in function["Properties"].get("Events", {}).items():
            if event["Type"] != "HttpApi":
                continue
            props = event["Properties"]
            assert props.get("ApiId") == {"Ref": "Api"}, f"{name}.{event_name} is not on the Api"
            routes.add((props["Method"].upper(), props["Path"]))
    missing = REQUIRED_ROUTES - routes
    assert not missing, f"routes missing from template.yaml: {sorted(missing)}"


# --- outputs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("output", ["ApiUrl", "ModelBucketName"])
def test_outputs_exist(template, output):
    assert template["Outputs"][output]["Value"]


def test_model_bucket_output_is_the_bucket(template):
    assert template["Outputs"]["ModelBucketName"]["Value"] == {"Ref": "ModelBucket"}
