"""A fan-out drift run (monitoring/fanout.py) against moto's S3, the Step Functions part played in
order by the test: plan → every child (the batch handler's logic) → reduce. It must give the same
answer as one invocation, bit for bit, commit once, and fail without committing when a partial is
missing. (The same definition runs on moto's interpreter in tests/e2e/test_drift_fanout.py.)"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from sklambda.lifecycle import training
from sklambda.monitoring.drift import DriftConfig
from sklambda.monitoring.drift_job import ConcurrentRun, DriftJob, RunSummary, read_batch
from sklambda.monitoring.fanout import (
    BatchRequest,
    Fanout,
    FanoutRun,
    FanoutStore,
    MissingPartials,
    partial_key,
)
from sklambda.monitoring.store import STATE_KEY, CaptureStore
from sklambda.registry.store import ModelRegistry
from tests.integration.test_drift_job import capture_lines
from tests.support.helpers import trained_demo

NOW = datetime(2026, 11, 23, 12, 30, tzinfo=UTC)


@pytest.fixture
def world(s3, bucket):
    registry = ModelRegistry(s3, bucket)
    training.publish(registry, "demo", trained_demo())
    training.publish(registry, "demo", trained_demo())  # v2: stays below the minimum (pending)

    def lookup(model, version):
        try:
            return registry.get_json_artifact(registry.get_manifest(model, version), "baseline.json")
        except Exception:
            return None

    def capture_bucket() -> str:
        name = f"{bucket}-cap-{uuid.uuid4().hex[:6]}"
        s3.create_bucket(Bucket=name)
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    objects = []
    for i in range(7):
        lines = capture_lines(250, drift=0.8 if i % 2 else 0.0, seed=100 + i)
        lines += capture_lines(20, drift=0.0, seed=200 + i, version="2")
        lines += capture_lines(5, drift=0.0, seed=300 + i, model="ghost")  # no baseline: skipped
        lines += [b"{not json", b'{"model":"demo","version":"1","features":{"age":"old","zz":1}}']
        hour = NOW - timedelta(hours=i % 3)
        objects.append((f"captures/{hour:%Y/%m/%d/%H}/obj-{i:02d}", b"\n".join(lines) + b"\n"))
    return {"s3": s3, "lookup": lookup, "capture_bucket": capture_bucket, "objects": objects}


def _job(world, capture_bucket: str, fanout: Fanout | None = None) -> DriftJob:
    return DriftJob(
        CaptureStore(world["s3"], capture_bucket),
        world["lookup"],
        DriftConfig(min_rows=500),
        lookback_hours=48,
        clock=lambda: NOW,
        fanout=fanout,
    )


class StepFunctionsByHand:
    """Plays DriftStateMachine: records the started run; ``children`` then ``reduce`` run its steps."""

    def __init__(self, world, capture_bucket: str, max_objects: int) -> None:
        self.world, self.bucket = world, capture_bucket
        self.started: list[FanoutRun] = []
        self.fanout = Fanout(
            FanoutStore(world["s3"], capture_bucket), max_objects=max_objects, start=self.start, status=self.status
        )
        self.job = _job(world, capture_bucket, self.fanout)

    def start(self, name: str, run: FanoutRun) -> str:
        assert name == run.run_id
        self.started.append(FanoutRun.model_validate_json(run.model_dump_json()))  # through JSON, as SFN does
        return f"arn:aws:states:us-east-1:123456789012:execution:test-drift:{name}"

    def status(self, name: str) -> str:
        return "RUNNING" if any(r.run_id == name for r in self.started) else "ABSENT"

    def children(self, run: FanoutRun, skip: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        items = json.loads(self.world["s3"].get_object(Bucket=run.bucket, Key=run.batches_key)["Body"].read())
        for item in items:
            if item["index"] in skip:
                continue
            request = BatchRequest.model_validate({"run_id": run.run_id, "batch": item})
            child = _job(self.world, self.bucket)  # a fresh process: its own reader and caches
            self.fanout.store.write_partial(read_batch(child, request))

    def reduce(self, run: FanoutRun, published: list | None = None):
        return _job(self.world, self.bucket, self.fanout).run(
            resume=run, publish=(published.append if published is not None else None)
        )


def _put_objects(world, capture_bucket: str) -> None:
    for key, body in world["objects"]:
        world["s3"].put_object(Bucket=capture_bucket, Key=key, Body=body)


def _report(s3, bucket: str, prefix: str) -> dict:
    report = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "report.json")["Body"].read())
    return {k: v for k, v in report.items() if k not in ("run_id", "generated_at")}


def _state(s3, bucket: str) -> dict:
    state = json.loads(s3.get_object(Bucket=bucket, Key=STATE_KEY)["Body"].read())
    return {k: v for k, v in state.items() if k != "last_run"}


def test_a_fanned_out_run_gives_the_same_answer_as_one_invocation_bit_for_bit(world):
    single_bucket, fan_bucket = world["capture_bucket"](), world["capture_bucket"]()
    _put_objects(world, single_bucket)
    _put_objects(world, fan_bucket)
    single = _job(world, single_bucket).run()

    sfn = StepFunctionsByHand(world, fan_bucket, max_objects=2)
    planned = sfn.job.run()
    assert planned.fanout and planned.fanout["status"] == "started" and planned.fanout["batches"] == 4
    assert planned.objects_read == 0 and planned.outcomes == [], "the plan reads nothing"
    (run,) = sfn.started
    assert (
        json.loads(world["s3"].get_object(Bucket=fan_bucket, Key=STATE_KEY)["Body"].read())["fanout"]["run_id"]
        == run.run_id
    )
    sfn.children(run)
    published: list = []
    reduced = sfn.reduce(run, published)

    assert len(published) == 1 and reduced.run_id == run.run_id == planned.run_id
    for field in (
        "objects_read",
        "lines_read",
        "rows_counted",
        "bad_lines",
        "skipped_rows",
        "window_start",
        "window_end",
    ):
        assert getattr(reduced, field) == getattr(single, field), field
    assert single.objects_read == 7 and sum(single.bad_lines.values()) == 7 and sum(single.skipped_rows.values()) == 35
    assert [(o.model, o.version, o.rows, o.status) for o in reduced.outcomes] == [
        (o.model, o.version, o.rows, o.status) for o in single.outcomes
    ]
    assert {o.status for o in single.outcomes} == {"evaluated", "pending"}
    for mine, theirs in zip(reduced.outcomes, single.outcomes, strict=True):
        assert (mine.result.to_dict() if mine.result else None) == (theirs.result.to_dict() if theirs.result else None)
        if mine.report_prefix:
            assert _report(world["s3"], fan_bucket, mine.report_prefix) == _report(
                world["s3"], single_bucket, theirs.report_prefix
            )
    assert _state(world["s3"], fan_bucket) == _state(world["s3"], single_bucket), "watermark and pending, bit for bit"
    assert "fanout" not in _state(world["s3"], fan_bucket), "the commit dropped the lease"

    # Committed once: a retried reduce does nothing, a new scheduled run finds nothing unread.
    again = sfn.reduce(run, published)
    assert again.fanout == {"run_id": run.run_id, "status": "already_committed"} and len(published) == 1
    assert sfn.job.run().rows_counted == 0 and len(sfn.started) == 1


def test_a_missing_partial_fails_the_run_commits_nothing_and_releases_the_lease(world):
    fan_bucket = world["capture_bucket"]()
    _put_objects(world, fan_bucket)
    sfn = StepFunctionsByHand(world, fan_bucket, max_objects=3)
    sfn.job.run()
    (run,) = sfn.started
    sfn.children(run, skip={1})  # one child failed: moto's map would still say SUCCEEDED
    published: list = []
    with pytest.raises(MissingPartials, match="batch 1"):
        sfn.reduce(run, published)
    state = json.loads(world["s3"].get_object(Bucket=fan_bucket, Key=STATE_KEY)["Body"].read())
    assert "fanout" not in state and not state.get("processed") and published == []
    assert CaptureStore(world["s3"], fan_bucket).latest_report("demo") is None

    # A partial that does not name its batch's keys counts as missing too.
    sfn2 = StepFunctionsByHand(world, fan_bucket, max_objects=3)
    sfn2.job.run()
    run2 = sfn2.started[0]
    sfn2.children(run2)
    key = partial_key(run2.run_id, 0)
    doc = json.loads(world["s3"].get_object(Bucket=fan_bucket, Key=key)["Body"].read())
    doc["keys"] = doc["keys"][:-1]
    world["s3"].put_object(Bucket=fan_bucket, Key=key, Body=json.dumps(doc).encode())
    with pytest.raises(MissingPartials, match="batch 0"):
        sfn2.reduce(run2)

    # Nothing was lost: one invocation reads every object.
    assert _job(world, fan_bucket).run().objects_read == 7


def test_runs_during_a_live_fan_out_do_nothing_and_a_lost_lease_discards_the_reduce(world):
    fan_bucket = world["capture_bucket"]()
    _put_objects(world, fan_bucket)
    sfn = StepFunctionsByHand(world, fan_bucket, max_objects=2)
    sfn.job.run()
    (run,) = sfn.started
    during = sfn.job.run()
    assert during.fanout and during.fanout["status"] == "in_flight" and during.objects_read == 0
    assert len(sfn.started) == 1, "no second execution while the first runs"

    # The execution died (say, aborted): the next scheduled run takes over with a new plan...
    sfn.started.clear()
    takeover = sfn.job.run()
    assert takeover.fanout and takeover.fanout["status"] == "started" and takeover.run_id != run.run_id
    # ...and the old execution's reduce, had it still come, publishes nothing.
    sfn.children(run)
    published: list = []
    with pytest.raises(ConcurrentRun):
        sfn.reduce(run, published)
    assert published == []
    (new_run,) = sfn.started
    sfn.children(new_run)
    assert sfn.reduce(new_run, published).objects_read == 7 and len(published) == 1


def test_small_windows_are_read_by_the_invocation_itself(world):
    fan_bucket = world["capture_bucket"]()
    _put_objects(world, fan_bucket)
    sfn = StepFunctionsByHand(world, fan_bucket, max_objects=7)
    summary = sfn.job.run()
    assert summary.fanout is None and summary.objects_read == 7 and sfn.started == []


def test_forked_reader_processes_read_s3_with_their_own_clients_and_count_the_same(world):
    bucket = world["capture_bucket"]()
    _put_objects(world, bucket)
    store = CaptureStore(world["s3"], bucket)
    keys = [key for key, _ in world["objects"]]

    def count(processes: int) -> tuple:
        job = DriftJob(store, world["lookup"], DriftConfig())
        aggregates: dict = {}
        summary = RunSummary(run_id="x", started_at="", window_start="", window_end="")
        job.read_keys(keys, aggregates, summary, processes=processes)
        return summary.to_dict(), {k: a.to_dict() for k, a in aggregates.items()}

    one = count(1)
    assert count(2) == one and one[0]["objects_read"] == 7  # 7 objects: 3 + 4 between two workers
    assert one[0]["rows_counted"] > 0 and one[1]
    assert store.fresh().s3 is not store.s3
