"""`sklambda serve` keeps the registry across restarts, a kill -9 included; `--fresh` starts empty.

The user's path over real processes and HTTP: serve (trains the demo model), publish and move the
alias while it runs, kill -9, serve again on the same folder, Ctrl-C, then serve --fresh.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests

from sklambda.lifecycle import training
from sklambda.registry.store import DEFAULT_ALIAS, ModelRegistry
from sklambda_dev.local.persist import DATABASE
from tests.support.helpers import ROOT, trained_demo
from tests.support.serve import Served, start_serve
from tests.support.wait import wait_for

SAMPLE = json.loads((ROOT / "events/sample_request.json").read_text())
SERVE = ("--rows", "3000", "--trees", "10", "--param", "AliasCheckSeconds=1", "--schedule-interval", "0")
TRAINING = "training the demo model"


@pytest.fixture
def servers() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for served in started:
        served.kill()


def _registry(served: Served) -> ModelRegistry:
    state = json.loads(served.state_file.read_text())
    s3 = boto3.client("s3", endpoint_url=state["endpoint_url"], region_name="us-east-1")
    return ModelRegistry(s3, state["buckets"]["ModelBucket"])


def _served_version(served: Served) -> str:
    r = requests.post(served.api + "/predict", json=SAMPLE, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["model"]["version"]


def _kept_alias_actions(state_dir: Path) -> list[str]:
    """The alias's history as the state folder holds it now (read as after a crash)."""
    if not (state_dir / DATABASE).exists():
        return []
    with sqlite3.connect(state_dir / DATABASE) as db:
        row = db.execute(
            "SELECT body FROM objects WHERE bucket = 'ModelBucket' AND key = ?",
            (ModelRegistry.alias_key("demo", DEFAULT_ALIAS),),
        ).fetchone()
    return [event["action"] for event in json.loads(row[0])["history"]] if row else []


def test_versions_aliases_and_history_survive_a_kill_and_fresh_starts_empty(tmp_path, servers):
    state_file = tmp_path / "local.json"
    state_dir = tmp_path / "state"  # the CLI's default: next to the state file

    first = start_serve(state_file, *SERVE)
    servers.append(first)
    assert TRAINING in first.output and "sklambda is serving demo v1" in first.output
    registry = _registry(first)
    v2 = training.publish(registry, "demo", trained_demo(seed=3))
    assert v2.version == "2"
    registry.promote("demo", "2", reason="state test")
    wait_for(lambda: _served_version(first) == "2", timeout=60, interval=0.5, message="v2 served")
    registry.rollback("demo", reason="state test rollback")
    wait_for(lambda: _served_version(first) == "1", timeout=60, interval=0.5, message="v1 served again")
    before = registry.get_alias("demo")
    assert before is not None
    actions = [e.action for e in before.record.history]
    assert actions == ["promote", "promote", "rollback"]
    # Mirrored while serving: the last move is in the folder before anything stops.
    wait_for(lambda: _kept_alias_actions(state_dir) == actions, message="the rollback in the state folder")
    first.kill()  # kill -9: no exit handler, no final flush

    second = start_serve(state_file, *SERVE)
    servers.append(second)
    assert TRAINING not in second.output, second.output
    assert "sklambda is serving demo v1" in second.output
    registry = _registry(second)
    assert [m.version for m in registry.list_versions("demo")] == ["1", "2"]
    after = registry.get_alias("demo")
    assert after is not None and after.record == before.record  # version, lineage, whole history
    assert after.etag == before.etag  # same bytes: conditional moves read before the restart still hold
    assert _served_version(second) == "1"
    # The restored alias moves with If-Match like any other, and the move is served.
    registry.promote("demo", "2", reason="after the restart")
    wait_for(lambda: _served_version(second) == "2", timeout=60, interval=0.5, message="v2 served after the restart")
    assert second.interrupt() == 0
    assert _kept_alias_actions(state_dir) == ["promote", "promote", "rollback", "promote"]

    fresh = start_serve(state_file, *SERVE, "--fresh")
    servers.append(fresh)
    assert TRAINING in fresh.output and "sklambda is serving demo v1" in fresh.output
    registry = _registry(fresh)
    assert [m.version for m in registry.list_versions("demo")] == ["1"]
    alias = registry.get_alias("demo")
    assert alias is not None and [e.action for e in alias.record.history] == ["promote"]
    assert _served_version(fresh) == "1"
    assert fresh.interrupt() == 0
    assert _kept_alias_actions(state_dir) == ["promote"]  # the folder was cleared, then kept anew
