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
