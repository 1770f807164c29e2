"""Small shared helpers: load recorded events, a Lambda-like context, a quickly trained demo model."""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from sklambda.lifecycle import demo, training

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"


def load_event(name: str, **overrides: Any) -> dict[str, Any]:
    """A recorded payload-2.0 event from events/, with top-level keys replaced."""
    event = json.loads((EVENTS / name).read_text())
    event.update(overrides)
    return event


def event_with_body(name: str, body: Any, *, raw: bool = False) -> dict[str, Any]:
    event = load_event(name)
    event["body"] = body if raw else json.dumps(body)
    return event


@dataclass
class FakeLambdaContext:
    """The attributes Powertools reads from a Lambda context."""

    function_name: str = "sklambda-predict"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:sklambda-predict"
    aws_request_id: str = ""
    log_group_name: str = "/aws/lambda/sklambda-predict"
    log_stream_name: str = "local"

    def __post_init__(self) -> None:
        self.aws_request_id = self.aws_request_id or str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@cache
def _trained(seed: int, trees: int) -> training.TrainedModel:
    columns, y = demo.generate(3000, seed=seed)
    return training.train(
        demo.to_matrix(columns),
        y,
        demo.DEMO_SCHEMA,
        task="classification",
        target=demo.TARGET,
        params={"n_estimators": trees, "max_depth": 8, "random_state": seed},
    )


def trained_demo(seed: int = 0, trees: int = 15) -> training.TrainedModel:
    """A small demo classifier, trained once per (seed, trees) per test session."""
    return copy.copy(_trained(seed, trees))


def demo_rows(n: int, *, seed: int = 123, drift: float = 0.0) -> list[dict[str, Any]]:
    columns, _ = demo.generate(n, seed=seed, drift=drift)
    return demo.to_instances(columns)
