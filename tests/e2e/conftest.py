"""The whole local stack from template.yaml, over real HTTP: gateway → worker process → moto."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from sklambda.lifecycle import training
from sklambda.registry.store import ModelRegistry
from sklambda_dev.local.stack import EmbeddedStack
from tests.support.helpers import ROOT, trained_demo


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[EmbeddedStack]:
    state = tmp_path_factory.mktemp("state") / "local.json"
    with EmbeddedStack(
        ROOT / "template.yaml",
        port=0,
        stack_name="sklambda-e2e",
        parameter_overrides={"AliasCheckSeconds": "1", "MaxBatchRows": "100"},
        state_file=state,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def registry(stack: EmbeddedStack) -> ModelRegistry:
    s3 = boto3.client("s3", endpoint_url=stack.endpoint_url, region_name="us-east-1")
    registry = ModelRegistry(s3, stack.bucket("ModelBucket"))
    if registry.get_alias("demo") is None:
        training.publish(registry, "demo", trained_demo(seed=0))
        registry.promote("demo", "1")
    return registry


@pytest.fixture(scope="module")
def api(stack: EmbeddedStack, registry: ModelRegistry) -> str:
    return stack.api_url
