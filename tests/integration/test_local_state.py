"""Kept local state over a real moto: writes mirrored into state_dir while the stack runs (by the
CLI side, by a function, by a Firehose delivery inside moto), put back on the next start.

moto's backends are process-wide, so the second stack of each test has another stack name (other
physical bucket names): what it finds can only have come from state_dir, by logical id. A restart
in a new process (kill -9 included) is tests/e2e/test_serve_state.py.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest
import requests

from sklambda_dev.local import EmbeddedStack
from sklambda_dev.local.persist import DATABASE, PersistRule
from tests.support.wait import wait_for

TEMPLATE = Path(__file__).parent / "fixtures" / "template.yaml"
KEEP = {"DataBucket": PersistRule(("kept/", "events/"), excluded=("kept/tmp/",))}


def _stack(state_dir: Path, **kwargs) -> EmbeddedStack:
    name = f"state-{uuid.uuid4().hex[:6]}"
    return EmbeddedStack(
        TEMPLATE, port=0, stack_name=name, state_dir=state_dir, persist=KEEP, alarm_interval=None, **kwargs
    )


def _kept(state_dir: Path) -> dict[str, bytes]:
    """What the file holds right now, read by another connection (as after a crash)."""
    with sqlite3.connect(state_dir / DATABASE) as db:
        return dict(db.execute("SELECT key, body FROM objects WHERE bucket = 'DataBucket'").fetchall())


def _keys(stack: EmbeddedStack, prefix: str = "") -> list[str]:
    listed = stack.client("s3").list_objects_v2(Bucket=stack.bucket("DataBucket"), Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def test_writes_are_kept_as_they_happen_and_restored_on_the_next_start(tmp_path):
    state = tmp_path / "state"
    with _stack(state) as first:
        s3, bucket = first.client("s3"), first.bucket("DataBucket")
        assert first.state()["state_dir"] == str(state)
        assert s3.get_bucket_notification_configuration(Bucket=bucket)["QueueConfigurations"]
        s3.put_object(Bucket=bucket, Key="kept/a.json", Body=b'{"v": 1}')
        s3.put_object(
            Bucket=bucket, Key="kept/a.json", Body=b'{"v": 2}', ContentType="application/json", Metadata={"by": "test"}
        )
        s3.put_object(Bucket=bucket, Key="kept/with space+plus.txt", Body=b"odd key")
        s3.put_object(Bucket=bucket, Key="kept/tmp/scratch", Body=b"excluded")
        s3.put_object(Bucket=bucket, Key="elsewhere/x", Body=b"not covered")
        # A function's write, and a Firehose delivery made inside moto, are announced too.
        assert requests.post(f"{first.api_url}/echo", params={"s3": "kept/by-echo.txt"}, json={}, timeout=60).ok
        firehose = first.client("firehose")
        firehose.put_record_batch(DeliveryStreamName=first.stream("EventsStream"), Records=[{"Data": b"row\n"}])
        (delivered,) = _keys(first, "events/")

        # Mirrored while running (not at stop): what a kill -9 now would leave behind.
        expected = {"kept/a.json", "kept/with space+plus.txt", "kept/by-echo.txt", delivered}

        def all_kept() -> dict[str, bytes] | None:
            kept = _kept(state)
            return kept if kept.keys() == expected else None

        kept = wait_for(all_kept, message=f"{expected} in state_dir")
        assert kept["kept/a.json"] == b'{"v": 2}' and kept["kept/by-echo.txt"] == b"from-echo"
        assert kept[delivered] == b"row\n"
        etag = s3.head_object(Bucket=bucket, Key="kept/a.json")["ETag"]

    with _stack(state) as second:
        assert second.restored == {"DataBucket": 4}
        s3, bucket = second.client("s3"), second.bucket("DataBucket")
        assert _keys(second) == sorted(expected)
        got = s3.get_object(Bucket=bucket, Key="kept/a.json")
        assert got["Body"].read() == b'{"v": 2}'
        assert (got["ContentType"], got["Metadata"]) == ("application/json", {"by": "test"})
        assert got["ETag"] == etag  # same bytes, same ETag: a conditional move read before still applies
        assert s3.get_object(Bucket=bucket, Key="kept/with space+plus.txt")["Body"].read() == b"odd key"
        # Versioning still on; If-Match moves of a restored object work and are kept in turn.
        moved = s3.put_object(Bucket=bucket, Key="kept/a.json", Body=b'{"v": 3}', IfMatch=etag)
        assert moved["VersionId"] != "null"
        with pytest.raises(s3.exceptions.ClientError, match="PreconditionFailed"):
            s3.put_object(Bucket=bucket, Key="kept/a.json", Body=b'{"v": "lost update"}', IfMatch=etag)
        s3.put_object(Bucket=bucket, Key="kept/gone.txt", Body=b"soon deleted")
        wait_for(lambda: "kept/gone.txt" in _kept(state), message="kept/gone.txt in state_dir")
        s3.delete_object(Bucket=bucket, Key="kept/gone.txt")  # a delete marker: moto announces nothing

    kept = _kept(state)  # a clean stop reconciles with a listing
    assert kept["kept/a.json"] == b'{"v": 3}'
    assert "kept/gone.txt" not in kept

    with _stack(state, fresh=True) as fresh:
        assert fresh.restored == {"DataBucket": 0}
        assert _keys(fresh) == []
    assert _kept(state) == {}


def test_without_a_state_dir_nothing_is_kept_or_announced(tmp_path):
    with EmbeddedStack(TEMPLATE, port=0, stack_name=f"nostate-{uuid.uuid4().hex[:6]}", alarm_interval=None) as stack:
        assert stack.restored == {}
        config = stack.client("s3").get_bucket_notification_configuration(Bucket=stack.bucket("DataBucket"))
        assert not config.get("QueueConfigurations")  # with a state_dir there is one (test above)
        assert stack.state()["state_dir"] is None
