"""Read template.yaml and resolve it the way CloudFormation would, for a *local* stack.

The SAM template is the single source of truth: the local stack provisions its buckets, wires its
routes and builds each function's environment from it, so local and deployed stacks cannot drift.
This module resolves only what the local stack needs (parameters, pseudo parameters, conditions and
the usual intrinsic functions) and gives every resource a deterministic local physical name.
Resolution is lazy and targeted: a function's ``Policies`` are never resolved, so an intrinsic the
local stack does not understand can only break what actually uses it.

Resources the local stack provisions, translated here from CloudFormation's property shapes to the
boto3 request shapes: S3 buckets (with lifecycle rules), Firehose delivery streams, SNS topics and
subscriptions, CloudWatch alarms, Step Functions state machines (``AWS::Serverless::StateMachine`` and
``AWS::StepFunctions::StateMachine``, definitions with their ``DefinitionSubstitutions`` applied); each
function's ``Schedule`` events; and the EventBridge rules with an event pattern (``AWS::Events::Rule``
resources and the ``EventBridgeRule``/``CloudWatchEvent`` events of functions and state machines).
IAM roles, KMS keys and log groups are not provisioned (moto does not enforce what they control).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "Alarm",
    "Bucket",
    "DeliveryStream",
    "EventRule",
    "Function",
    "FunctionEvent",
    "HttpRoute",
    "RuleTarget",
    "Schedule",
    "StateMachine",
    "Template",
    "TemplateError",
    "load_template",
    "Topic",
    "s3_bucket_name",
]

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"
DEFAULT_STACK_NAME = "sklambda-local"

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
S3_BUCKET = "AWS::S3::Bucket"
DELIVERY_STREAM = "AWS::KinesisFirehose::DeliveryStream"
SNS_TOPIC = "AWS::SNS::Topic"
SNS_SUBSCRIPTION = "AWS::SNS::Subscription"
CLOUDWATCH_ALARM = "AWS::CloudWatch::Alarm"
SERVERLESS_STATE_MACHINE = "AWS::Serverless::StateMachine"
SFN_STATE_MACHINE = "AWS::StepFunctions::StateMachine"
EVENTS_RULE = "AWS::Events::Rule"
# Event sources (of functions and state machines) that are EventBridge rules with an event pattern.
_PATTERN_EVENT_TYPES = ("EventBridgeRule", "CloudWatchEvent")
_LAYER_TYPES = {"AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"}
_HTTP_API_TYPES = {"AWS::Serverless::HttpApi", "AWS::ApiGatewayV2::Api"}

# SAM defaults for AWS::Serverless::Function.
_DEFAULT_TIMEOUT = 3
_DEFAULT_MEMORY = 128


class TemplateError(ValueError):
    """The template cannot be resolved for a local stack (bad override, unknown Ref, ...)."""


class _NoValue:
    """``AWS::NoValue``: removes the property (or list item) that resolves to it."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


# --------------------------------------------------------------------------------------- YAML
class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that understands CloudFormation short tags (``!Ref``, ``!Sub``, ``!GetAtt``...)."""


# CloudFormation keeps unquoted dates as strings; plain YAML would turn them into ``date`` objects.
_CfnLoader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_short_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        logical_id, _, attribute = value.partition(".")
        value = [logical_id, attribute]
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_short_tag)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template (YAML or JSON) into plain long-form intrinsics."""
    with open(path, encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=_CfnLoader)
    if not isinstance(data, dict):
        raise TemplateError(f"{path}: not a CloudFormation template")
    return data


# -------------------------------------------------------------------------------- public model
@dataclass(frozen=True)
class HttpRoute:
    """One ``HttpApi`` event: the gateway routes ``method path`` to ``function``."""

    function: str
    event: str
    method: str  # upper case; "ANY" matches every method
    path: str  # "/models/{name}/predict", "/files/{proxy+}" or "$default"
    payload_format_version: str = "2.0"

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"


@dataclass(frozen=True)
class FunctionEvent:
    """Any event source of a function, exposed raw so later features (Schedule, EventBridge) can use it.

    ``properties`` is resolved when possible; an event whose properties use something the local
    resolver does not support keeps its unresolved properties (``resolved`` is then False) rather
    than breaking the whole stack.
    """

    name: str
    type: str
    properties: dict[str, Any]
    resolved: bool = True


@dataclass(frozen=True)
class Function:
    """An ``AWS::Serverless::Function`` with everything a local worker needs to run it."""

    logical_id: str
    name: str  # physical FunctionName
    arn: str
    code_uri: Path  # absolute directory
    handler: str  # "module.function"
    runtime: str | None
    environment: dict[str, str]  # Globals merged with the function's own (function wins)
    memory_size: int
    timeout: int  # seconds
    layers: tuple[Path, ...]  # local ContentUri directories of the layers it references
    auto_publish_alias: str | None
    events: dict[str, FunctionEvent] = field(default_factory=dict)
    routes: tuple[HttpRoute, ...] = ()
    reserved_concurrency: int | None = None  # ReservedConcurrentExecutions

    def events_of_type(self, event_type: str) -> list[FunctionEvent]:
        return [e for e in self.events.values() if e.type == event_type]


@dataclass(frozen=True)
class Bucket:
    """An ``AWS::S3::Bucket`` with its configuration already translated to boto3 shapes."""

    logical_id: str
    name: str
    arn: str
    versioning: bool
    encryption: dict[str, Any] | None  # put_bucket_encryption ServerSideEncryptionConfiguration
    public_access_block: dict[str, Any] | None
    ownership_controls: dict[str, Any] | None
    properties: dict[str, Any]  # all resolved Properties, for what is not translated yet
    lifecycle: dict[str, Any] | None = None  # put_bucket_lifecycle_configuration LifecycleConfiguration


@dataclass(frozen=True)
class DeliveryStream:
    """An ``AWS::KinesisFirehose::DeliveryStream``: ``create_kwargs`` is a create_delivery_stream request."""

    logical_id: str
    name: str
    arn: str
    stream_type: str  # DirectPut | KinesisStreamAsSource | MSKAsSource
    create_kwargs: dict[str, Any]

    @property
    def s3_destination(self) -> dict[str, Any] | None:
        """The (Extended)S3 destination configuration, if the stream delivers to S3."""
        kwargs = self.create_kwargs
        return kwargs.get("ExtendedS3DestinationConfiguration") or kwargs.get("S3DestinationConfiguration")

    @property
    def bucket_name(self) -> str | None:
        destination = self.s3_destination
        return destination["BucketARN"].split(":::", 1)[-1] if destination else None

    @property
    def prefix(self) -> str:
        destination = self.s3_destination
        return str((destination or {}).get("Prefix") or "")


@dataclass(frozen=True)
class Topic:
    """An ``AWS::SNS::Topic`` with its create_topic attributes and subscriptions (inline and resources)."""

    logical_id: str
    name: str
    arn: str
    attributes: dict[str, str]
    subscriptions: tuple[dict[str, str], ...]  # {"Protocol", "Endpoint"}


@dataclass(frozen=True)
class Alarm:
    """An ``AWS::CloudWatch::Alarm``: ``put_kwargs`` is a PutMetricAlarm request (types coerced)."""

    logical_id: str
    name: str
    arn: str
    put_kwargs: dict[str, Any]


@dataclass(frozen=True)
class Schedule:
    """A function's ``Schedule`` event: the EventBridge rule SAM creates for it.

    ``input`` is the event the target receives when the rule has an ``Input`` (else the standard
    scheduled-event payload is sent). ``enabled`` reflects ``Enabled``/``State``.
    """

    function: str  # logical id
    event: str  # event name in the function's Events
    expression: str  # rate(...) or cron(...) (not honoured locally)
    rule_name: str
    rule_arn: str
    enabled: bool = True
    input: Any = None

    @property
    def key(self) -> str:
        return f"{self.function}.{self.event}"


@dataclass(frozen=True)
class StateMachine:
    """A Step Functions state machine with its definition resolved (substitutions applied)."""

    logical_id: str
    name: str
    arn: str
    type: str  # STANDARD | EXPRESS
    definition: dict[str, Any]
    role_arn: str
    events: dict[str, FunctionEvent] = field(default_factory=dict)  # SAM Events (EventBridgeRule, ...)
    definition_path: Path | None = None  # the DefinitionUri file, if any


@dataclass(frozen=True)
class RuleTarget:
    """One target of an EventBridge rule. ``kind`` is derived from the ARN.

    ``kind``: "state_machine", "function" (the ARN may carry an alias or version), "topic", or
    "unsupported" (delivery is then logged and skipped). At most one of ``input``, ``input_path``,
    ``input_transformer`` is set, as in EventBridge.
    """

    id: str
    arn: str
    kind: str
    input: str | None = None  # a JSON text
    input_path: str | None = None
    input_transformer: dict[str, Any] | None = None  # {"InputPathsMap": {...}, "InputTemplate": "..."}


@dataclass(frozen=True)
class EventRule:
    """An EventBridge rule with an event pattern, from an ``AWS::Events::Rule`` or a SAM event source.

    ``source`` is the logical id of the rule resource, or ``"<Resource>.<Event>"`` for a SAM event.
    """

    source: str
    name: str
    arn: str
    pattern: dict[str, Any]
    targets: tuple[RuleTarget, ...]
    enabled: bool = True
    event_bus: str = "default"


def _target_kind(arn: str) -> str:
    if ":states:" in arn and ":stateMachine:" in arn:
        return "state_machine"
    if ":lambda:" in arn and ":function:" in arn:
        return "function"
    if arn.startswith("arn:aws:sns:") or ":sns:" in arn:
        return "topic"
    return "unsupported"


def _json_value(value: Any, what: str) -> Any:
    """A property given as a JSON text or as a YAML/JSON object (EventPattern, Pattern)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise TemplateError(f"{what}: not valid JSON") from None
    return value


def substitute_definition(text: str, substitutions: Mapping[str, Any]) -> str:
    """``DefinitionSubstitutions``: replace ``${Name}`` in the definition text, as CloudFormation does.

    The replacement is textual (a number substitutes into ``"Seconds": ${Wait}``); a ``${...}``
    that names no substitution is left as it is.
    """

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        return _to_str(substitutions[key]) if key in substitutions else match.group(0)

    return re.sub(r"\$\{([^}]+)\}", replace, text)


def _parse_definition(text: str, what: str, yaml_first: bool = False) -> dict[str, Any]:
    try:
        definition = yaml.safe_load(text) if yaml_first else json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        if yaml_first:
            raise TemplateError(f"{what}: the definition is not valid YAML: {exc}") from None
        try:
            definition = yaml.safe_load(text)
        except yaml.YAMLError:
            raise TemplateError(f"{what}: the definition is not valid JSON: {exc}") from None
    if not isinstance(definition, dict) or "States" not in definition:
        raise TemplateError(f"{what}: the definition is not an Amazon States Language document")
    return definition


def s3_bucket_name(stack_name: str, logical_id: str) -> str:
    """``<stack>-<logicalid>`` lower-cased and squeezed into S3's naming rules (3-63, [a-z0-9.-])."""
    name = re.sub(r"[^a-z0-9.-]+", "-", f"{stack_name}-{logical_id}".lower())
    name = re.sub(r"-{2,}", "-", name).strip(".-")[:63].rstrip(".-")
    return name if len(name) >= 3 else f"{name}-bucket"


# --------------------------------------------------------------------------------- resolution
# Resource types whose Ref is not their name.
_REF_IS_ARN = {
    "AWS::SNS::Topic",
    "AWS::StepFunctions::StateMachine",
    "AWS::Serverless::StateMachine",
    "AWS::Serverless::LayerVersion",
    "AWS::Lambda::LayerVersion",
    "AWS::IAM::ManagedPolicy",
}
# Property that carries an explicit physical name, per type.
_NAME_PROPERTY = {
    S3_BUCKET: "BucketName",
    SERVERLESS_FUNCTION: "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::Serverless::StateMachine": "Name",
    "AWS::Events::Rule": "Name",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::KinesisFirehose::DeliveryStream": "DeliveryStreamName",
    "AWS::IAM::Role": "RoleName",
    "AWS::Serverless::LayerVersion": "LayerName",
    "AWS::Lambda::LayerVersion": "LayerName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::Logs::LogStream": "LogStreamName",
    "AWS::SSM::Parameter": "Name",
}
_INTRINSICS = {"Ref", "Condition"}


def _is_intrinsic(value: Any) -> bool:
    if not isinstance(value, dict) or len(value) != 1:
        return False
    (key,) = value
    if key == "Condition":
        return isinstance(value[key], str)
    return key in _INTRINSICS or key.startswith("Fn::")


def _to_str(value: Any) -> str:
    """CloudFormation's view of a scalar as a string (booleans are lower-case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _sam_merge(global_value: Any, local_value: Any) -> Any:
    """SAM Globals semantics: maps merge (function wins), lists are additive, scalars are replaced."""
    if (
        isinstance(global_value, dict)
        and isinstance(local_value, dict)
        and not _is_intrinsic(global_value)
        and not _is_intrinsic(local_value)
    ):
        merged = dict(global_value)
        for key, value in local_value.items():
            merged[key] = _sam_merge(global_value[key], value) if key in global_value else value
        return merged
    if isinstance(global_value, list) and isinstance(local_value, list):
        return global_value + local_value
    return local_value


# AWS::SNS::Topic properties that are create_topic attributes of the same name.
_TOPIC_ATTRIBUTES = ("DisplayName", "KmsMasterKeyId", "FifoTopic", "ContentBasedDeduplication", "SignatureVersion")
_FIREHOSE_PROPERTIES = (
    "DeliveryStreamEncryptionConfigurationInput",
    "KinesisStreamSourceConfiguration",
    "ExtendedS3DestinationConfiguration",
    "S3DestinationConfiguration",
    "HttpEndpointDestinationConfiguration",
    "Tags",
)
_FIREHOSE_INT_KEYS = {"IntervalInSeconds", "SizeInMBs", "DurationInSeconds"}


def _coerce_ints(value: Any, keys: set[str]) -> Any:
    """Turn the values of ``keys`` (anywhere in ``value``) into ints: a Ref to a Number is a string."""
    if isinstance(value, dict):
        return {
            k: int(v) if k in keys and not isinstance(v, (dict, list)) else _coerce_ints(v, keys)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_coerce_ints(v, keys) for v in value]
    return value


def _dimensions(dimensions: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"Name": str(d["Name"]), "Value": _to_str(d["Value"])} for d in dimensions]


def _metric_data_query(query: dict[str, Any]) -> dict[str, Any]:
    out = dict(query)
    if "Period" in out:
        out["Period"] = int(out["Period"])
    if "ReturnData" in out:
        out["ReturnData"] = _to_str(out["ReturnData"]).lower() == "true"
    stat = out.get("MetricStat")
    if isinstance(stat, dict):
        stat = dict(stat)
        stat["Period"] = int(stat["Period"])
        metric = dict(stat.get("Metric") or {})
        if "Dimensions" in metric:
            metric["Dimensions"] = _dimensions(metric["Dimensions"])
        stat["Metric"] = metric
        out["MetricStat"] = stat
    return out


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """One CloudFormation lifecycle rule in the S3 API's shape (PutBucketLifecycleConfiguration)."""
    out: dict[str, Any] = {"Status": rule.get("Status", "Enabled")}
    if "Id" in rule:
        out["ID"] = rule["Id"]
    conditions: dict[str, Any] = {}
    if "Prefix" in rule:
        conditions["Prefix"] = rule["Prefix"]
    if rule.get("TagFilters"):
        conditions["Tags"] = [{"Key": t["Key"], "Value": t["Value"]} for t in rule["TagFilters"]]
    for key in ("ObjectSizeGreaterThan", "ObjectSizeLessThan"):
        if key in rule:
            conditions[key] = int(rule[key])
    if len(conditions) > 1:
        out["Filter"] = {"And": conditions}
    elif conditions:
        ((key, value),) = conditions.items()
        out["Filter"] = {"Tag": value[0]} if key == "Tags" else {key: value}
    else:
        out["Filter"] = {"Prefix": ""}
    expiration: dict[str, Any] = {}
    if "ExpirationInDays" in rule:
        expiration["Days"] = int(rule["ExpirationInDays"])
    if "ExpirationDate" in rule:
        expiration["Date"] = rule["ExpirationDate"]
    if "ExpiredObjectDeleteMarker" in rule:
        expiration["ExpiredObjectDeleteMarker"] = _to_str(rule["ExpiredObjectDeleteMarker"]).lower() == "true"
    if expiration:
        out["Expiration"] = expiration
    noncurrent = dict(rule.get("NoncurrentVersionExpiration") or {})
    if "NoncurrentVersionExpirationInDays" in rule:
        noncurrent.setdefault("NoncurrentDays", rule["NoncurrentVersionExpirationInDays"])
    if noncurrent:
        out["NoncurrentVersionExpiration"] = {k: int(v) for k, v in noncurrent.items()}
    if "AbortIncompleteMultipartUpload" in rule:
        days = rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
        out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": int(days)}
    transitions = [_transition(t, "Days") for t in rule.get("Transitions") or []]
    if "Transition" in rule:
        transitions.append(_transition(rule["Transition"], "Days"))
    if transitions:
        out["Transitions"] = transitions
    noncurrent_transitions = [_transition(t, "NoncurrentDays") for t in rule.get("NoncurrentVersionTransitions") or []]
    if noncurrent_transitions:
        out["NoncurrentVersionTransitions"] = noncurrent_transitions
    return out


def _transition(transition: dict[str, Any], days_key: str) -> dict[str, Any]:
    out: dict[str, Any] = {"StorageClass": transition["StorageClass"]}
    if "TransitionInDays" in transition:
        out[days_key] = int(transition["TransitionInDays"])
    if "TransitionDate" in transition:
        out["Date"] = transition["TransitionDate"]
    if "NewerNoncurrentVersions" in transition:
        out["NewerNoncurrentVersions"] = int(transition["NewerNoncurrentVersions"])
    return out


class Template:
    """A SAM template resolved for a local stack.

    Physical names are deterministic (``<stack>-<LogicalId>``, buckets lower-cased and S3-valid),
    ARNs use the local region and account, so a resolved environment variable such as
    ``MODEL_BUCKET: !Ref ModelBucket`` names the bucket the emulator actually provisions.
    """

    def __init__(
        self,
        path: str | Path,
        parameter_overrides: Mapping[str, Any] | None = None,
        *,
        stack_name: str = DEFAULT_STACK_NAME,
        region: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> None:
        self.path = Path(path).resolve()
        self.root = self.path.parent
        self.stack_name = stack_name
        self.region = region
        self.account_id = account_id
        self.raw = load_yaml(self.path)
        self.resources: dict[str, dict[str, Any]] = self.raw.get("Resources") or {}
        self.parameters = self._resolve_parameters(dict(parameter_overrides or {}))
        self._conditions: dict[str, bool] = {}

    # ----------------------------------------------------------------------------- parameters
    def _resolve_parameters(self, overrides: dict[str, Any]) -> dict[str, Any]:
        declared: dict[str, dict[str, Any]] = self.raw.get("Parameters") or {}
        unknown = set(overrides) - set(declared)
        if unknown:
            raise TemplateError(f"parameter overrides not declared in the template: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            if name in overrides:
                value = _to_str(overrides[name])
            elif "Default" in spec:
                value = _to_str(spec["Default"])
            else:
                raise TemplateError(f"parameter {name} has no default and no override")
            self._validate_parameter(name, spec, value)
            ptype = str(spec.get("Type", "String"))
            is_list = ptype == "CommaDelimitedList" or ptype.startswith("List<")
            values[name] = [v.strip() for v in value.split(",")] if is_list else value
        return values

    @staticmethod
    def _validate_parameter(name: str, spec: dict[str, Any], value: str) -> None:
        allowed = spec.get("AllowedValues")
        if allowed is not None and value not in [_to_str(a) for a in allowed]:
            raise TemplateError(f"parameter {name}={value!r} not in AllowedValues {allowed}")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and not re.fullmatch(str(pattern), value):
            raise TemplateError(f"parameter {name}={value!r} does not match AllowedPattern {pattern}")
        if spec.get("Type") == "Number":
            try:
                number = float(value)
            except ValueError:
                raise TemplateError(f"parameter {name}={value!r} is not a number") from None
            if "MinValue" in spec and number < float(spec["MinValue"]):
                raise TemplateError(f"parameter {name}={value} is below MinValue {spec['MinValue']}")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                raise TemplateError(f"parameter {name}={value} is above MaxValue {spec['MaxValue']}")
        if "MinLength" in spec and len(value) < int(spec["MinLength"]):
            raise TemplateError(f"parameter {name} is shorter than MinLength {spec['MinLength']}")
        if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
            raise TemplateError(f"parameter {name} is longer than MaxLength {spec['MaxLength']}")

    @property
    def pseudo_parameters(self) -> dict[str, Any]:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": (f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/local"),
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }

    # ----------------------------------------------------------------------------- conditions
    def condition(self, name: str) -> bool:
        """Evaluate (and cache) a named condition from the ``Conditions`` section."""
        if name not in self._conditions:
            conditions = self.raw.get("Conditions") or {}
            if name not in conditions:
                raise TemplateError(f"unknown condition {name}")
            self._conditions[name] = bool(self.resolve(conditions[name]))
        return self._conditions[name]

    def is_active(self, logical_id: str) -> bool:
        """False when the resource carries a ``Condition`` that evaluates to false (not created)."""
        cond = self.resources[logical_id].get("Condition")
        return True if cond is None else self.condition(cond)

    def logical_ids(self, resource_type: str) -> list[str]:
        return [lid for lid, res in self.resources.items() if res.get("Type") == resource_type and self.is_active(lid)]

    # ------------------------------------------------------------------------ names and ARNs
    def resource_type(self, logical_id: str) -> str:
        if logical_id not in self.resources:
            raise TemplateError(f"unknown resource {logical_id}")
        return str(self.resources[logical_id].get("Type", ""))

    def physical_name(self, logical_id: str) -> str:
        """The local physical name: the explicit name property if any, else derived from the stack."""
        rtype = self.resource_type(logical_id)
        prop = _NAME_PROPERTY.get(rtype)
        props = self.resources[logical_id].get("Properties") or {}
        if prop and prop in props:
            value = self.resolve(props[prop])
            if value is not NO_VALUE:
                return _to_str(value)
        if rtype == S3_BUCKET:
            return s3_bucket_name(self.stack_name, logical_id)
        if rtype in _HTTP_API_TYPES:
            return self.api_id(logical_id)
        return f"{self.stack_name}-{logical_id}"[:64]

    def api_id(self, logical_id: str) -> str:
        """A stable 10-character id shaped like a real API Gateway id."""
        digest = hashlib.sha256(f"{self.stack_name}/{logical_id}".encode()).digest()
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        return "".join(alphabet[b % len(alphabet)] for b in digest[:10])

    def arn(self, logical_id: str) -> str:
        rtype = self.resource_type(logical_id)
        name = self.physical_name(logical_id)
        r, a = self.region, self.account_id
        if rtype == S3_BUCKET:
            return f"arn:aws:s3:::{name}"
        if rtype in (SERVERLESS_FUNCTION, "AWS::Lambda::Function"):
            return f"arn:aws:lambda:{r}:{a}:function:{name}"
        if rtype in _LAYER_TYPES:
            return f"arn:aws:lambda:{r}:{a}:layer:{name}:1"
        if rtype in _HTTP_API_TYPES:
            return f"arn:aws:apigateway:{r}::/apis/{name}"
        known = {
            "AWS::SNS::Topic": f"arn:aws:sns:{r}:{a}:{name}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{r}:{a}:{name}",
            "AWS::StepFunctions::StateMachine": f"arn:aws:states:{r}:{a}:stateMachine:{name}",
            "AWS::Serverless::StateMachine": f"arn:aws:states:{r}:{a}:stateMachine:{name}",
            "AWS::Events::Rule": f"arn:aws:events:{r}:{a}:rule/{name}",
            "AWS::CloudWatch::Alarm": f"arn:aws:cloudwatch:{r}:{a}:alarm:{name}",
            "AWS::KinesisFirehose::DeliveryStream": f"arn:aws:firehose:{r}:{a}:deliverystream/{name}",
            "AWS::IAM::Role": f"arn:aws:iam::{a}:role/{name}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{r}:{a}:log-group:{name}:*",
            "AWS::SSM::Parameter": f"arn:aws:ssm:{r}:{a}:parameter/{name.lstrip('/')}",
        }
        if rtype in known:
            return known[rtype]
        service = rtype.split("::")[1].lower() if rtype.count("::") == 2 else "unknown"
        return f"arn:aws:{service}:{r}:{a}:{rtype.split('::')[-1].lower()}/{name}"

    def _ref(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        pseudo = self.pseudo_parameters
        if name in pseudo:
            return pseudo[name]
        base, dot, suffix = name.partition(".")
        if dot and base in self.resources and self.resource_type(base) == SERVERLESS_FUNCTION:
            # SAM's generated sub-resources: `!Ref Fn.Alias` / `!Ref Fn.Version`.
            if suffix == "Alias":
                alias = self.resolve(self._function_properties(base).get("AutoPublishAlias"))
                return f"{self.arn(base)}:{alias or 'live'}"
            if suffix == "Version":
                return f"{self.arn(base)}:$LATEST"
        if name not in self.resources:
            raise TemplateError(f"Ref to unknown parameter or resource {name!r}")
        if not self.is_active(name):
            raise TemplateError(f"Ref to {name!r}, a resource whose condition is false")
        rtype = self.resource_type(name)
        if rtype in _REF_IS_ARN:
            return self.arn(name)
        if rtype == "AWS::SQS::Queue":
            return f"https://sqs.{self.region}.amazonaws.com/{self.account_id}/{self.physical_name(name)}"
        return self.physical_name(name)

    def get_att(self, logical_id: str, attribute: str) -> Any:
        rtype = self.resource_type(logical_id)
        name = self.physical_name(logical_id)
        if attribute == "Arn":
            return self.arn(logical_id)
        if rtype == S3_BUCKET:
            by_attr = {
                "DomainName": f"{name}.s3.amazonaws.com",
                "RegionalDomainName": f"{name}.s3.{self.region}.amazonaws.com",
                "DualStackDomainName": f"{name}.s3.dualstack.{self.region}.amazonaws.com",
                "WebsiteURL": f"http://{name}.s3-website-{self.region}.amazonaws.com",
            }
            if attribute in by_attr:
                return by_attr[attribute]
        if rtype in _HTTP_API_TYPES and attribute == "ApiEndpoint":
            return f"https://{name}.execute-api.{self.region}.amazonaws.com"
        if rtype == "AWS::SQS::Queue" and attribute == "QueueUrl":
            return self._ref(logical_id)
        if attribute.endswith("Name") or attribute == "Id":
            return name
        raise TemplateError(f"Fn::GetAtt {logical_id}.{attribute} is not supported by the local stack")

    # -------------------------------------------------------------------------------- resolve
    def resolve(self, value: Any) -> Any:
        """Resolve every intrinsic function in ``value``; ``AWS::NoValue`` entries are dropped."""
        if isinstance(value, dict):
            if _is_intrinsic(value):
                ((key, arg),) = value.items()
                return self._intrinsic(key, arg)
            out = {}
            for k, v in value.items():
                resolved = self.resolve(v)
                if resolved is not NO_VALUE:
                    out[k] = resolved
            return out
        if isinstance(value, list):
            return [r for r in (self.resolve(v) for v in value) if r is not NO_VALUE]
        return value

    def _intrinsic(self, key: str, arg: Any) -> Any:
        handlers = {
            "Ref": lambda a: self._ref(self.resolve(a)),
            "Condition": lambda a: self.condition(a),
            "Fn::GetAtt": self._fn_get_att,
            "Fn::Sub": self._fn_sub,
            "Fn::If": self._fn_if,
            "Fn::Equals": lambda a: _to_str(self.resolve(a[0])) == _to_str(self.resolve(a[1])),
            "Fn::Not": lambda a: not self._truth(a[0]),
            "Fn::And": lambda a: all(self._truth(c) for c in a),
            "Fn::Or": lambda a: any(self._truth(c) for c in a),
            "Fn::Join": lambda a: _to_str(self.resolve(a[0])).join(_to_str(v) for v in self._as_list(a[1])),
            "Fn::Select": lambda a: self._as_list(a[1])[int(self.resolve(a[0]))],
            "Fn::Split": lambda a: _to_str(self.resolve(a[1])).split(_to_str(self.resolve(a[0]))),
            "Fn::FindInMap": self._fn_find_in_map,
            "Fn::Base64": lambda a: base64.b64encode(_to_str(self.resolve(a)).encode()).decode(),
            "Fn::GetAZs": lambda a: [f"{self.region}{z}" for z in "abc"],
            "Fn::ToJsonString": lambda a: json.dumps(self.resolve(a), separators=(",", ":")),
            "Fn::Length": lambda a: len(self._as_list(a)),
        }
        if key not in handlers:
            raise TemplateError(f"{key} is not supported by the local stack")
        return handlers[key](arg)

    def _truth(self, value: Any) -> bool:
        resolved = self.resolve(value)
        return resolved if isinstance(resolved, bool) else _to_str(resolved).lower() == "true"

    def _as_list(self, value: Any) -> list[Any]:
        resolved = self.resolve(value)
        if not isinstance(resolved, list):
            raise TemplateError(f"expected a list, got {resolved!r}")
        return resolved

    def _fn_get_att(self, arg: Any) -> Any:
        if isinstance(arg, str):
            arg = arg.split(".", 1)
        logical_id, attribute = (self.resolve(a) for a in arg)
        return self.get_att(logical_id, attribute)

    def _fn_if(self, arg: list[Any]) -> Any:
        name, if_true, if_false = arg
        return self.resolve(if_true if self.condition(name) else if_false)

    def _fn_find_in_map(self, arg: list[Any]) -> Any:
        map_name, top, second = (_to_str(self.resolve(a)) for a in arg)
        try:
            return self.resolve(self.raw["Mappings"][map_name][top][second])
        except KeyError:
            raise TemplateError(f"Fn::FindInMap {map_name}/{top}/{second} not found") from None

    def _fn_sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], {k: self.resolve(v) for k, v in (arg[1] or {}).items()}
        else:
            text, variables = arg, {}

        def substitute(match: re.Match[str]) -> str:
            expr = match.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"  # ${!Literal} is an escaped literal
            if expr in variables:
                return _to_str(variables[expr])
            if expr in self.parameters or expr in self.pseudo_parameters or expr in self.resources:
                return _to_str(self._ref(expr))
            if "." in expr:
                logical_id, attribute = expr.split(".", 1)
                return _to_str(self.get_att(logical_id, attribute))
            raise TemplateError(f"Fn::Sub variable ${{{expr}}} cannot be resolved")

        return re.sub(r"\$\{([^}]+)\}", substitute, str(text))

    # ------------------------------------------------------------------------------ resources
    @cached_property
    def buckets(self) -> list[Bucket]:
        return [self._bucket(lid) for lid in self.logical_ids(S3_BUCKET)]

    def bucket(self, logical_id: str) -> Bucket:
        for bucket in self.buckets:
            if bucket.logical_id == logical_id:
                return bucket
        raise TemplateError(f"no S3 bucket {logical_id!r} in {self.path.name}")

    def _bucket(self, logical_id: str) -> Bucket:
        props = self.resolve(self.resources[logical_id].get("Properties") or {})
        versioning = (props.get("VersioningConfiguration") or {}).get("Status") == "Enabled"
        encryption = None
        sse = (props.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration")
        if sse:
            # CloudFormation says ServerSideEncryptionByDefault where the S3 API says Apply...
            rules = []
            for rule in sse:
                out = {k: v for k, v in rule.items() if k != "ServerSideEncryptionByDefault"}
                if "ServerSideEncryptionByDefault" in rule:
                    out["ApplyServerSideEncryptionByDefault"] = rule["ServerSideEncryptionByDefault"]
                rules.append(out)
            encryption = {"Rules": rules}
        lifecycle_rules = (props.get("LifecycleConfiguration") or {}).get("Rules")
        return Bucket(
            logical_id=logical_id,
            name=self.physical_name(logical_id),
            arn=self.arn(logical_id),
            versioning=versioning,
            encryption=encryption,
            public_access_block=props.get("PublicAccessBlockConfiguration"),
            ownership_controls=props.get("OwnershipControls"),
            properties=props,
            lifecycle={"Rules": [_lifecycle_rule(r) for r in lifecycle_rules]} if lifecycle_rules else None,
        )

    # ------------------------------------------------------------------- firehose, SNS, alarms
    @cached_property
    def delivery_streams(self) -> list[DeliveryStream]:
        return [self._delivery_stream(lid) for lid in self.logical_ids(DELIVERY_STREAM)]

    def delivery_stream(self, logical_id: str) -> DeliveryStream:
        for stream in self.delivery_streams:
            if stream.logical_id == logical_id:
                return stream
        raise TemplateError(f"no {DELIVERY_STREAM} {logical_id!r} in {self.path.name}")

    def _delivery_stream(self, logical_id: str) -> DeliveryStream:
        props = self.resolve(self.resources[logical_id].get("Properties") or {})
        name = self.physical_name(logical_id)
        stream_type = str(props.get("DeliveryStreamType") or "DirectPut")
        kwargs: dict[str, Any] = {"DeliveryStreamName": name, "DeliveryStreamType": stream_type}
        # These CloudFormation properties have the API's names and shapes (numbers aside).
        for key in _FIREHOSE_PROPERTIES:
            if key in props:
                kwargs[key] = _coerce_ints(props[key], _FIREHOSE_INT_KEYS)
        if not any(k.endswith("DestinationConfiguration") for k in kwargs):
            raise TemplateError(f"{logical_id}: only S3 and HTTP endpoint destinations are supported locally")
        return DeliveryStream(logical_id, name, self.arn(logical_id), stream_type, kwargs)

    @cached_property
    def topics(self) -> list[Topic]:
        subscriptions: dict[str, list[dict[str, str]]] = {}
        for lid in self.logical_ids(SNS_SUBSCRIPTION):
            props = self.resolve(self.resources[lid].get("Properties") or {})
            subscriptions.setdefault(str(props.get("TopicArn")), []).append(
                {"Protocol": str(props.get("Protocol")), "Endpoint": _to_str(props.get("Endpoint"))}
            )
        return [self._topic(lid, subscriptions) for lid in self.logical_ids(SNS_TOPIC)]

    def topic(self, logical_id: str) -> Topic:
        for topic in self.topics:
            if topic.logical_id == logical_id:
                return topic
        raise TemplateError(f"no {SNS_TOPIC} {logical_id!r} in {self.path.name}")

    def _topic(self, logical_id: str, subscriptions: dict[str, list[dict[str, str]]]) -> Topic:
        props = self.resolve(self.resources[logical_id].get("Properties") or {})
        arn = self.arn(logical_id)
        attributes = {key: _to_str(props[key]) for key in _TOPIC_ATTRIBUTES if key in props}
        inline = [
            {"Protocol": str(sub["Protocol"]), "Endpoint": _to_str(sub["Endpoint"])}
            for sub in props.get("Subscription") or []
        ]
        subs = tuple(inline + subscriptions.get(arn, []))
        return Topic(logical_id, self.physical_name(logical_id), arn, attributes, subs)

    @cached_property
    def alarms(self) -> list[Alarm]:
        return [self._alarm(lid) for lid in self.logical_ids(CLOUDWATCH_ALARM)]

    def alarm(self, logical_id: str) -> Alarm:
        for alarm in self.alarms:
            if alarm.logical_id == logical_id:
                return alarm
        raise TemplateError(f"no {CLOUDWATCH_ALARM} {logical_id!r} in {self.path.name}")

    def _alarm(self, logical_id: str) -> Alarm:
        props = self.resolve(self.resources[logical_id].get("Properties") or {})
        name = self.physical_name(logical_id)
        kwargs: dict[str, Any] = {"AlarmName": name}
        for key, value in props.items():
            if key == "AlarmName":
                continue
            if key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
                kwargs[key] = int(value)
            elif key == "Threshold":
                kwargs[key] = float(value)
            elif key == "ActionsEnabled":
                kwargs[key] = value if isinstance(value, bool) else _to_str(value).lower() == "true"
            elif key == "Dimensions":
                kwargs[key] = _dimensions(value)
            elif key == "Metrics":
                kwargs[key] = [_metric_data_query(q) for q in value]
            else:
                kwargs[key] = value
        return Alarm(logical_id, name, self.arn(logical_id), kwargs)

    # ------------------------------------------------------------------------- state machines
    @cached_property
    def state_machines(self) -> list[StateMachine]:
        ids = [
            lid for lid in self.resources if self.resource_type(lid) in (SERVERLESS_STATE_MACHINE, SFN_STATE_MACHINE)
        ]
        return [self._state_machine(lid) for lid in ids if self.is_active(lid)]

    def state_machine(self, logical_id: str) -> StateMachine:
        for machine in self.state_machines:
            if machine.logical_id == logical_id:
                return machine
        raise TemplateError(f"no state machine {logical_id!r} in {self.path.name}")

    def _state_machine(self, logical_id: str) -> StateMachine:
        raw = self.resources[logical_id].get("Properties") or {}
        serverless = self.resource_type(logical_id) == SERVERLESS_STATE_MACHINE
        substitutions = self.resolve(raw.get("DefinitionSubstitutions") or {})
        if not isinstance(substitutions, dict):
            raise TemplateError(f"{logical_id}: DefinitionSubstitutions must be a map")
        path = None
        uri = self.resolve(raw.get("DefinitionUri")) if serverless else None
        s3_location = None if serverless else raw.get("DefinitionS3Location")
        if "Definition" in raw:
            text, yaml_first = json.dumps(self.resolve(raw["Definition"])), False
        elif not serverless and "DefinitionString" in raw:
            text, yaml_first = _to_str(self.resolve(raw["DefinitionString"])), False
        elif isinstance(uri, str):
            path = (self.root / uri).resolve()
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise TemplateError(f"{logical_id}: DefinitionUri {uri}: {exc.strerror}") from None
            yaml_first = path.suffix.lower() in (".yaml", ".yml")
        elif uri is not None or s3_location is not None:
            raise TemplateError(f"{logical_id}: only a local DefinitionUri file is supported locally (not S3)")
        else:
            raise TemplateError(f"{logical_id}: no Definition")
        definition = _parse_definition(substitute_definition(text, substitutions), logical_id, yaml_first)
        machine_type = _to_str(self.resolve(raw.get("Type" if serverless else "StateMachineType", "STANDARD")))
        role = self.resolve(raw.get("Role" if serverless else "RoleArn"))
        if not isinstance(role, str) or not role:
            # SAM creates "<LogicalId>Role" from Policies; moto only checks the ARN's shape.
            role = f"arn:aws:iam::{self.account_id}:role/{self.stack_name}-{logical_id}Role"[:140]
        events = {}
        if serverless:
            events = {name: self._event(name, spec) for name, spec in (raw.get("Events") or {}).items()}
        return StateMachine(
            logical_id=logical_id,
            name=self.physical_name(logical_id),
            arn=self.arn(logical_id),
            type=machine_type.upper(),
            definition=definition,
            role_arn=role,
            events=events,
            definition_path=path,
        )

    # ---------------------------------------------------------------------- EventBridge rules
    @cached_property
    def rules(self) -> list[EventRule]:
        """Every EventBridge rule with an event pattern: rule resources first, then SAM event sources."""
        result = [rule for lid in self.logical_ids(EVENTS_RULE) if (rule := self._rule_resource(lid)) is not None]
        owners: list[tuple[str, str, dict[str, FunctionEvent]]] = []
        for function in self.functions:
            alias = f":{function.auto_publish_alias}" if function.auto_publish_alias else ""
            owners.append((function.logical_id, function.arn + alias, function.events))
        for machine in self.state_machines:
            owners.append((machine.logical_id, machine.arn, machine.events))
        for logical_id, target_arn, events in owners:
            for event in events.values():
                if event.type in _PATTERN_EVENT_TYPES:
                    result.append(self._sam_rule(logical_id, target_arn, event))
        return result

    def _rule_resource(self, logical_id: str) -> EventRule | None:
        props = self.resolve(self.resources[logical_id].get("Properties") or {})
        if "EventPattern" not in props:
            return None  # a ScheduleExpression-only rule: not run locally
        name = self.physical_name(logical_id)
        targets = tuple(
            RuleTarget(
                id=_to_str(t.get("Id") or f"Target{i}"),
                arn=_to_str(t["Arn"]),
                kind=_target_kind(_to_str(t["Arn"])),
                input=_to_str(t["Input"]) if "Input" in t else None,
                input_path=_to_str(t["InputPath"]) if "InputPath" in t else None,
                input_transformer=t.get("InputTransformer"),
            )
            for i, t in enumerate(props.get("Targets") or [])
        )
        bus = _to_str(props.get("EventBusName") or "default").rsplit("/", 1)[-1]
        return EventRule(
            source=logical_id,
            name=name,
            arn=self._rule_arn(name, bus),
            pattern=_json_value(props["EventPattern"], f"{logical_id}.EventPattern"),
            targets=targets,
            enabled=_to_str(props.get("State", "ENABLED")).upper().startswith("ENABLED"),
            event_bus=bus,
        )

    def _sam_rule(self, owner: str, target_arn: str, event: FunctionEvent) -> EventRule:
        if not event.resolved:
            raise TemplateError(f"{owner}.{event.name}: {event.type} properties cannot be resolved locally")
        props = event.properties
        if "Pattern" not in props:
            raise TemplateError(f"{owner}.{event.name}: {event.type} needs a Pattern")
        name = _to_str(props.get("RuleName") or f"{self.stack_name}-{owner}{event.name}")[:64]
        bus = _to_str(props.get("EventBusName") or "default").rsplit("/", 1)[-1]
        target = RuleTarget(
            id=_to_str((props.get("Target") or {}).get("Id") or f"{owner}{event.name}Target"),
            arn=target_arn,
            kind=_target_kind(target_arn),
            input=_to_str(props["Input"]) if "Input" in props else None,
            input_path=_to_str(props["InputPath"]) if "InputPath" in props else None,
            input_transformer=props.get("InputTransformer"),
        )
        return EventRule(
            source=f"{owner}.{event.name}",
            name=name,
            arn=self._rule_arn(name, bus),
            pattern=_json_value(props["Pattern"], f"{owner}.{event.name}.Pattern"),
            targets=(target,),
            enabled=_to_str(props.get("State", "ENABLED")).upper().startswith("ENABLED"),
            event_bus=bus,
        )

    def _rule_arn(self, name: str, bus: str) -> str:
        path = name if bus == "default" else f"{bus}/{name}"
        return f"arn:aws:events:{self.region}:{self.account_id}:rule/{path}"

    # ------------------------------------------------------------------------------ schedules
    @cached_property
    def schedules(self) -> list[Schedule]:
        """Every function's ``Schedule`` event (EventBridge rule), in template order."""
        result = []
        for function in self.functions:
            for event in function.events_of_type("Schedule"):
                if not event.resolved:
                    raise TemplateError(
                        f"{function.logical_id}.{event.name}: Schedule properties cannot be resolved locally"
                    )
                props = event.properties
                rule_name = _to_str(props.get("Name") or f"{self.stack_name}-{function.logical_id}{event.name}")[:64]
                state = _to_str(props.get("State", "ENABLED")).upper()
                enabled = _to_str(props.get("Enabled", True)).lower() == "true" and state == "ENABLED"
                payload = props.get("Input")
                result.append(
                    Schedule(
                        function=function.logical_id,
                        event=event.name,
                        expression=_to_str(props.get("Schedule")),
                        rule_name=rule_name,
                        rule_arn=f"arn:aws:events:{self.region}:{self.account_id}:rule/{rule_name}",
                        enabled=enabled,
                        input=json.loads(payload) if isinstance(payload, str) else None,
                    )
                )
        return result

    def schedules_of(self, function_logical_id: str) -> list[Schedule]:
        return [s for s in self.schedules if s.function == function_logical_id]

    @cached_property
    def functions(self) -> list[Function]:
        return [self._function(lid) for lid in self.logical_ids(SERVERLESS_FUNCTION)]

    def function(self, logical_id: str) -> Function:
        for function in self.functions:
            if function.logical_id == logical_id:
                return function
        raise TemplateError(f"no AWS::Serverless::Function {logical_id!r} in {self.path.name}")

    @property
    def routes(self) -> list[HttpRoute]:
        return [route for function in self.functions for route in function.routes]

    def _function_properties(self, logical_id: str) -> dict[str, Any]:
        """The function's properties with Globals.Function merged in, still unresolved."""
        globals_fn = (self.raw.get("Globals") or {}).get("Function") or {}
        props = self.resources[logical_id].get("Properties") or {}
        merged = dict(props)
        for key, value in globals_fn.items():
            merged[key] = _sam_merge(value, props[key]) if key in props else value
        return merged

    def _function(self, logical_id: str) -> Function:
        props = self._function_properties(logical_id)

        def get(key: str, default: Any = None) -> Any:
            value = self.resolve(props.get(key, default))
            return default if value is NO_VALUE else value

        code_uri, handler = get("CodeUri"), get("Handler")
        if not handler:
            raise TemplateError(f"{logical_id}: no Handler")
        if not isinstance(code_uri, str):
            raise TemplateError(f"{logical_id}: only a local directory CodeUri is supported locally")
        variables = ((get("Environment") or {}).get("Variables")) or {}
        environment = {k: _to_str(v) for k, v in variables.items() if v is not None}
        layers = tuple(self._local_layer(layer) for layer in props.get("Layers") or [])
        events = {name: self._event(name, spec) for name, spec in (props.get("Events") or {}).items()}
        return Function(
            logical_id=logical_id,
            name=self.physical_name(logical_id),
            arn=self.arn(logical_id),
            code_uri=(self.root / code_uri).resolve(),
            handler=str(handler),
            runtime=get("Runtime"),
            environment=environment,
            memory_size=int(get("MemorySize", _DEFAULT_MEMORY)),
            timeout=int(get("Timeout", _DEFAULT_TIMEOUT)),
            reserved_concurrency=(
                None if get("ReservedConcurrentExecutions") is None else int(get("ReservedConcurrentExecutions"))
            ),
            layers=tuple(p for p in layers if p is not None),
            auto_publish_alias=get("AutoPublishAlias"),
            events=events,
            routes=tuple(self._route(logical_id, e) for e in events.values() if e.type == "HttpApi" and e.resolved),
        )

    def _local_layer(self, layer: Any) -> Path | None:
        """ContentUri of a layer defined in this template (external layer ARNs are ignored)."""
        if not (isinstance(layer, dict) and set(layer) == {"Ref"}):
            return None
        lid = layer["Ref"]
        if lid not in self.resources or self.resource_type(lid) not in _LAYER_TYPES:
            return None
        props = self.resources[lid].get("Properties") or {}
        content = self.resolve(props.get("ContentUri") or props.get("Content"))
        return (self.root / content).resolve() if isinstance(content, str) else None

    def _event(self, name: str, spec: dict[str, Any]) -> FunctionEvent:
        raw_props = spec.get("Properties") or {}
        try:
            return FunctionEvent(name, str(spec.get("Type")), self.resolve(raw_props))
        except TemplateError:
            return FunctionEvent(name, str(spec.get("Type")), raw_props, resolved=False)

    @staticmethod
    def _route(function: str, event: FunctionEvent) -> HttpRoute:
        props = event.properties
        path = props.get("Path")
        method = str(props.get("Method") or "ANY").upper()
        if method in ("X-AMAZON-APIGATEWAY-ANY-METHOD", "*"):
            method = "ANY"
        return HttpRoute(
            function=function,
            event=event.name,
            method=method,
            path="$default" if path in (None, "$default") else str(path),
            payload_format_version=str(props.get("PayloadFormatVersion") or "2.0"),
        )

    # -------------------------------------------------------------------------------- outputs
    def outputs(self) -> dict[str, Any]:
        """Resolved ``Outputs`` whose condition holds (values as the deployed stack would show)."""
        result = {}
        for name, spec in (self.raw.get("Outputs") or {}).items():
            if "Condition" in spec and not self.condition(spec["Condition"]):
                continue
            result[name] = self.resolve(spec.get("Value"))
        return result


def load_template(
    path: str | Path,
    parameter_overrides: Mapping[str, Any] | None = None,
    *,
    stack_name: str = DEFAULT_STACK_NAME,
    region: str = DEFAULT_REGION,
    account_id: str = DEFAULT_ACCOUNT_ID,
) -> Template:
    """Load and validate ``path``; resources are resolved lazily on first access."""
    return Template(path, parameter_overrides, stack_name=stack_name, region=region, account_id=account_id)
