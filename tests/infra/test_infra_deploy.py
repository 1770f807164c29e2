"""Safe code deploys: the predict function's `live` alias moves through CodeDeploy (SAM
DeploymentPreference), rolled back by the predict alarms, behind a pre-traffic hook."""

from __future__ import annotations

import tomllib

import pytest

from .support import REPO_ROOT, as_list, evaluate, sub_text

pytestmark = pytest.mark.infra

SAM_DEPLOYMENT_TYPES = {
    "Canary10Percent5Minutes",
    "Canary10Percent10Minutes",
    "Canary10Percent15Minutes",
    "Canary10Percent30Minutes",
    "Linear10PercentEvery1Minute",
    "Linear10PercentEvery2Minutes",
    "Linear10PercentEvery3Minutes",
    "Linear10PercentEvery10Minutes",
    "AllAtOnce",
}


@pytest.fixture(scope="module")
def preference(template):
    return template["Resources"]["PredictFunction"]["Properties"]["DeploymentPreference"]


@pytest.fixture(scope="module")
def hook(template):
    return template["Resources"]["PreTrafficHookFunction"]


def test_deployment_type_is_a_parameter(template, preference):
    parameter = template["Parameters"]["DeploymentType"]
    assert set(parameter["AllowedValues"]) == SAM_DEPLOYMENT_TYPES
    assert parameter["Default"] == "Canary10Percent5Minutes"
    assert preference["Type"] == {"Ref": "DeploymentType"}
    assert evaluate(preference["Type"], template, {"DeploymentType": "AllAtOnce"}) == "AllAtOnce"


def test_predict_alarms_roll_the_deployment_back(template, preference):
    alarms = [a["Ref"] for a in preference["Alarms"]]
    assert alarms == ["PredictErrorsAlarm", "PredictLatencyAlarm", "Api5xxAlarm"]
    for alarm in alarms:
        assert template["Resources"][alarm]["Type"] == "AWS::CloudWatch::Alarm"


def test_pre_traffic_hook_is_wired(template, preference, hook):
    assert template["Resources"]["PredictFunction"]["Properties"]["AutoPublishAlias"] == "live"
    assert preference["Hooks"] == {"PreTraffic": {"Ref": "PreTrafficHookFunction"}}
    props = hook["Properties"]
    # SAM's CodeDeploy service role may only invoke functions named CodeDeployHook_*.
    assert sub_text(props["FunctionName"]).startswith("CodeDeployHook_")
    assert props["DeploymentPreference"] == {"Enabled": False}
    assert "AutoPublishAlias" not in props
    env = props["Environment"]["Variables"]
    assert env["TARGET_FUNCTION"] == {"Ref": "PredictFunction.Version"}
    assert env["MODEL_BUCKET"] == {"Ref": "ModelBucket"}
    assert env["DEFAULT_MODEL"] == {"Ref": "DefaultModelName"}
    assert env["MODEL_ALIAS"] == {"Ref": "ModelAlias"}
    assert (REPO_ROOT / props["CodeUri"] / "app.py").is_file()
    assert (REPO_ROOT / props["CodeUri"] / "samples" / "demo.json").is_file()


def test_hook_policy_is_least_privilege(hook):
    statements = {s["Sid"]: s for p in hook["Properties"]["Policies"] for s in as_list(p["Statement"])}
    assert set(statements) == {"ReportHookStatus", "InvokeNewPredictVersion", "ReadModelRegistry", "ListModelRegistry"}
    report = statements["ReportHookStatus"]
    assert report["Action"] == ["codedeploy:PutLifecycleEventHookExecutionStatus"]
    assert sub_text(report["Resource"]) == (
        "arn:${AWS::Partition}:codedeploy:${AWS::Region}:${AWS::AccountId}:deploymentgroup:"
        "${ServerlessDeploymentApplication}/*"
    )
    invoke = statements["InvokeNewPredictVersion"]
    assert invoke["Action"] == ["lambda:InvokeFunction"]
    assert sub_text(invoke["Resource"]) == "${PredictFunction.Arn}:*"
    assert statements["ReadModelRegistry"]["Action"] == ["s3:GetObject"]
    assert sub_text(statements["ReadModelRegistry"]["Resource"]) == "${ModelBucket.Arn}/models/*"


def test_hook_sample_rows_match_the_documented_request():
    sample = (REPO_ROOT / "events" / "sample_request.json").read_text()
    assert (REPO_ROOT / "functions" / "pretraffic" / "samples" / "demo.json").read_text() == sample


def test_samconfig_sets_the_deployment_type_per_environment(template):
    import shlex

    with (REPO_ROOT / "samconfig.toml").open("rb") as stream:
        config = tomllib.load(stream)

    def overrides(env: str, command: str) -> dict[str, str]:
        items = config[env][command]["parameters"]["parameter_overrides"]
        return dict(item.split("=", 1) for item in shlex.split(" ".join(items)))

    assert overrides("dev", "deploy")["DeploymentType"] == "AllAtOnce"
    assert overrides("dev", "sync")["DeploymentType"] == "AllAtOnce"
    assert overrides("prod", "deploy")["DeploymentType"] == "Canary10Percent10Minutes"
    assert "DeploymentType" not in config["default"]["deploy"]["parameters"].get("parameter_overrides", [])
