"""State machines, EventBridge rules and Lambda function names, resolved from templates (no network)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from sklambda_dev.local.lambda_api import FunctionRef, parse_function_name
from sklambda_dev.local.template import TemplateError, load_template, substitute_definition

FIXTURE = Path(__file__).resolve().parents[1] / "integration" / "fixtures" / "loop" / "template.yaml"
ARN = "arn:aws:lambda:us-east-1:123456789012:function"


def write(tmp_path: Path, body: str, files: dict[str, str] | None = None) -> Path:
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    path = tmp_path / "template.yaml"
    path.write_text(
        "Transform: AWS::Serverless-2016-10-31\nResources:\n" + textwrap.indent(textwrap.dedent(body), "  ")
    )
    return path


FUNCTION = """
Fn:
  Type: AWS::Serverless::Function
  Properties: {CodeUri: fn/, Handler: app.handler, AutoPublishAlias: live}
Topic:
  Type: AWS::SNS::Topic
"""


def test_fixture_state_machine_and_rules():
    template = load_template(FIXTURE, stack_name="t")
    (machine,) = template.state_machines
    assert (machine.logical_id, machine.name, machine.type) == ("FlowStateMachine", "t-FlowStateMachine", "STANDARD")
    assert machine.arn == "arn:aws:states:us-east-1:123456789012:stateMachine:t-FlowStateMachine"
    assert machine.role_arn == "arn:aws:iam::123456789012:role/t-FlowStateMachineRole"
    assert machine.definition_path == FIXTURE.parent / "flow.asl.json"
    states = machine.definition["States"]
    assert states["Score"]["Parameters"]["FunctionName"] == f"{ARN}:t-ScoreFunction"  # !GetAtt Fn.Arn
    assert states["Decide"]["Resource"] == f"{ARN}:t-DecideFunction:live"  # !Ref Fn.Alias (alias from Globals)
    assert states["Notify"]["Parameters"]["TopicArn"] == "arn:aws:sns:us-east-1:123456789012:t-AlertsTopic"
    assert states["Gate"]["Choices"][0]["NumericGreaterThanEquals"] == 10

    rules = {rule.source: rule for rule in template.rules}
    assert list(rules) == ["AlarmRecordRule", "RecorderFunction.Custom", "FlowStateMachine.SignalAlarm"]
    fired = rules["FlowStateMachine.SignalAlarm"]
    assert fired.name == "t-FlowStateMachineSignalAlarm"
    assert fired.arn == "arn:aws:events:us-east-1:123456789012:rule/t-FlowStateMachineSignalAlarm"
    assert fired.pattern["resources"] == ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:t-SignalAlarm"]
    assert fired.pattern["detail"] == {"state": {"value": ["ALARM"]}}
    ((target),) = fired.targets
    assert (target.kind, target.arn) == ("state_machine", machine.arn)
    custom = rules["RecorderFunction.Custom"]
    assert (custom.targets[0].kind, custom.targets[0].arn) == ("function", f"{ARN}:t-RecorderFunction:live")
    record = rules["AlarmRecordRule"]
    assert record.pattern["detail"] == {"alarmName": ["t-SignalAlarm"]}  # !Ref of an alarm: its name
    assert record.targets[0].input_transformer["InputPathsMap"]["state"] == "$.detail.state.value"


def test_substitutions_are_textual_like_cloudformation():
    text = '{"Seconds": ${Wait}, "Name": "${Name}", "Keep": "${Unknown}"}'
    assert json.loads(substitute_definition(text, {"Wait": 30, "Name": "x"})) == {
        "Seconds": 30,
        "Name": "x",
        "Keep": "${Unknown}",
    }


def test_inline_yaml_and_stepfunctions_definitions(tmp_path):
    path = write(
        tmp_path,
        FUNCTION
        + textwrap.dedent(
            """
        Inline:
          Type: AWS::Serverless::StateMachine
          Properties:
            Name: my-inline
            Type: EXPRESS
            Role: arn:aws:iam::123456789012:role/custom
            Definition:
              StartAt: Call
              States:
                Call: {Type: Task, Resource: "${Target}", End: true}
            DefinitionSubstitutions:
              Target: !GetAtt Fn.Arn
        FromYaml:
          Type: AWS::Serverless::StateMachine
          Properties:
            DefinitionUri: flow.asl.yaml
            DefinitionSubstitutions: {TopicArn: !Ref Topic}
        Plain:
          Type: AWS::StepFunctions::StateMachine
          Properties:
            StateMachineType: STANDARD
            RoleArn: !Sub "arn:aws:iam::${AWS::AccountId}:role/plain"
            DefinitionString: !Sub '{"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": "${AWS::Region}",
              "End": true}}}'
        """
        ),
        {
            "flow.asl.yaml": """
            StartAt: Notify
            States:
              Notify:
                Type: Task
                Resource: arn:aws:states:::sns:publish
                Parameters: {TopicArn: "${TopicArn}", Message: hi}
                End: true
            """
        },
    )
    template = load_template(path, stack_name="s")
    machines = {m.logical_id: m for m in template.state_machines}
    inline = machines["Inline"]
    assert (inline.name, inline.type, inline.role_arn) == (
        "my-inline",
        "EXPRESS",
        "arn:aws:iam::123456789012:role/custom",
    )
    assert inline.definition["States"]["Call"]["Resource"] == f"{ARN}:s-Fn"
    assert machines["FromYaml"].definition["States"]["Notify"]["Parameters"]["TopicArn"].endswith(":s-Topic")
    plain = machines["Plain"]
    assert (plain.type, plain.role_arn) == ("STANDARD", "arn:aws:iam::123456789012:role/plain")
    assert plain.definition["States"]["P"]["Result"] == "us-east-1"
    assert template.state_machine("Plain") is plain
    with pytest.raises(TemplateError):
        template.state_machine("Nope")


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ("DefinitionUri: {Bucket: b, Key: k}", "not S3"),
        ("DefinitionUri: missing.json", "missing.json"),
        ("Definition: {Comment: no states}", "not an Amazon States Language"),
        ("Name: nothing", "no Definition"),
    ],
)
def test_state_machine_errors(tmp_path, properties, message):
    path = write(tmp_path, f"SM:\n  Type: AWS::Serverless::StateMachine\n  Properties:\n    {properties}\n")
    with pytest.raises(TemplateError, match=message):
        _ = load_template(path).state_machines


def test_rule_resources_and_targets(tmp_path):
    path = write(
        tmp_path,
        FUNCTION
        + textwrap.dedent(
            """
        Machine:
          Type: AWS::Serverless::StateMachine
          Properties:
            Definition: {StartAt: P, States: {P: {Type: Pass, End: true}}}
        Rule:
          Type: AWS::Events::Rule
          Properties:
            Name: everything
            State: DISABLED
            EventBusName: custom-bus
            EventPattern: '{"source": ["my.app"]}'
            Targets:
              - {Id: sm, Arn: !Ref Machine, InputPath: $.detail}
              - {Id: fn, Arn: !GetAtt Fn.Arn, Input: '{"fixed": true}'}
              - {Id: alias, Arn: !Ref Fn.Alias}
              - {Id: topic, Arn: !Ref Topic}
              - {Id: queue, Arn: arn:aws:sqs:us-east-1:123456789012:q}
        ScheduleOnly:
          Type: AWS::Events::Rule
          Properties: {ScheduleExpression: rate(1 hour), Targets: [{Id: fn, Arn: !GetAtt Fn.Arn}]}
        """
        ),
    )
    (rule,) = load_template(path, stack_name="s").rules  # a schedule-only rule is not an event rule
    assert (rule.name, rule.enabled, rule.event_bus) == ("everything", False, "custom-bus")
    assert rule.arn == "arn:aws:events:us-east-1:123456789012:rule/custom-bus/everything"
    assert rule.pattern == {"source": ["my.app"]}
    assert [(t.id, t.kind) for t in rule.targets] == [
        ("sm", "state_machine"),
        ("fn", "function"),
        ("alias", "function"),
        ("topic", "topic"),
        ("queue", "unsupported"),
    ]
    assert rule.targets[0].input_path == "$.detail"
    assert rule.targets[1].input == '{"fixed": true}'
    assert rule.targets[2].arn == f"{ARN}:s-Fn:live"


def test_sam_event_without_a_pattern_is_an_error(tmp_path):
    path = write(
        tmp_path,
        """
        Fn:
          Type: AWS::Serverless::Function
          Properties:
            CodeUri: fn/
            Handler: app.handler
            Events:
              Bad: {Type: EventBridgeRule, Properties: {EventBusName: default}}
        """,
    )
    with pytest.raises(TemplateError, match="needs a Pattern"):
        _ = load_template(path).rules


@pytest.mark.parametrize(
    ("name", "qualifier", "expected"),
    [
        ("fn", None, FunctionRef("fn")),
        ("fn:live", None, FunctionRef("fn", "live")),
        ("fn", "live", FunctionRef("fn", "live")),
        ("fn:$LATEST", None, FunctionRef("fn", "$LATEST")),
        ("123456789012:function:fn", None, FunctionRef("fn")),
        ("123456789012:function:fn:7", None, FunctionRef("fn", "7")),
        (f"{ARN}:fn", None, FunctionRef("fn")),
        (f"{ARN}:fn:live", "live", FunctionRef("fn", "live")),
        ("arn:aws:lambda:eu-west-1:123456789012:function:fn", "$LATEST", FunctionRef("fn", "$LATEST")),
        ("a:b:c:d", None, None),
    ],
)
def test_function_names(name, qualifier, expected):
    assert parse_function_name(name, qualifier) == expected


def test_conflicting_qualifiers():
    with pytest.raises(ValueError, match="derived qualifier"):
        parse_function_name("fn:live", "$LATEST")
