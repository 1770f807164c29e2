"""Shared by the infra tests: paths, a CloudFormation-aware YAML loader, size accounting."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"

# Lambda's hard limit on function code + all its layers, unzipped. AWS documents it as "250 MB";
# the service enforces "Unzipped size must be smaller than 262144000 bytes" (250 MiB).
LAMBDA_UNZIPPED_LIMIT = 262_144_000

NO_VALUE = object()

# Filled by test_infra_build.py, printed at the end of the run by pytest_terminal_summary.
BUILD_REPORT_KEY = pytest.StashKey[list[str]]()


# --- a CloudFormation-aware YAML loader ---------------------------------------------------------


class CfnYamlLoader(yaml.SafeLoader):
    """SafeLoader that turns short-form intrinsics (!Ref, !Sub, !GetAtt, ...) into their
    long form ({"Ref": ...}, {"Fn::Sub": ...}, {"Fn::GetAtt": [resource, attribute]})."""


def _construct_intrinsic(loader: CfnYamlLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)

    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{tag_suffix}": value}


CfnYamlLoader.add_multi_constructor("!", _construct_intrinsic)


def load_cfn_yaml(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as stream:
        return yaml.load(stream, Loader=CfnYamlLoader)


# --- size accounting ----------------------------------------------------------------------------


def tree_size(path: Path) -> int:
    """Bytes Lambda counts for a directory once unzipped: the sum of its files' sizes."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(root, name)).st_size
    return total


def largest_entries(path: Path, count: int) -> list[tuple[str, int]]:
    """The `count` largest direct children of `path` (files or directories), biggest first."""
    sizes = [(child.name, tree_size(child) if child.is_dir() else child.lstat().st_size) for child in path.iterdir()]
    return sorted(sizes, key=lambda item: item[1], reverse=True)[:count]


# --- template helpers -----------------------------------------------------------------------------


def resources_of_type(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == type_}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def evaluate(node: Any, template: dict[str, Any], overrides: dict[str, str] | None = None) -> Any:
    """Evaluate the intrinsics that depend only on parameters (Ref to a parameter or
    AWS::NoValue, Fn::If, Fn::Equals, Fn::Not, Fn::And, Fn::Or), as CloudFormation would for
    the given parameter values (template defaults otherwise). Anything else is left as is."""
    overrides = overrides or {}
    parameters = template.get("Parameters", {})

    def condition(name: str) -> bool:
        return bool(ev(template["Conditions"][name]))

    def ev(value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in (ev(v) for v in value) if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref" and arg == "AWS::NoValue":
                return NO_VALUE
            if key == "Ref" and arg in parameters:
                return str(overrides.get(arg, parameters[arg].get("Default")))
            if key == "Condition":
                return condition(arg)
            if key == "Fn::If":
                name, if_true, if_false = arg
                return ev(if_true if condition(name) else if_false)
            if key == "Fn::Equals":
                left, right = (ev(v) for v in arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not ev(arg[0])
            if key == "Fn::And":
                return all(ev(v) for v in arg)
            if key == "Fn::Or":
                return any(ev(v) for v in arg)
        return {k: v for k, v in ((k, ev(v)) for k, v in value.items()) if v is not NO_VALUE}

    return ev(node)


def mentions_resource(value: Any, logical_id: str) -> bool:
    """True if an ARN expression is built from `logical_id` (Ref, GetAtt or ${...} in a Sub)."""
    if isinstance(value, dict):
        if value.get("Ref") == logical_id:
            return True
        get_att = value.get("Fn::GetAtt")
        if isinstance(get_att, list) and get_att and get_att[0] == logical_id:
            return True
        sub = value.get("Fn::Sub")
        if sub is not None:
            text = sub if isinstance(sub, str) else sub[0]
            return "${" + logical_id + "}" in text or "${" + logical_id + "." in text
    return False


def sub_text(value: Any) -> str | None:
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    return None
