"""Local state that survives a restart: the objects the stack's buckets hold (under chosen key
prefixes), mirrored into one SQLite file as they are written and put back on the next start.

How changes are seen: each persisted bucket gets an S3 event notification to an SQS queue, both in
moto, so every write is announced whoever made it (the CLI, a function, a Firehose delivery inside
moto). A mirror thread long-polls the queue and copies the object's current state (or its absence)
into the database right away. A kill -9 therefore loses only the writes of the last moment (moto
answered, the mirror had not committed yet), not everything since the start; a clean stop drains
the queue and then reconciles against a listing, because moto announces no delete in a versioned
bucket.

Why SQLite: a commit is atomic, so a kill mid-write leaves the previous state instead of a torn
file, and rows hold any S3 key as is (``a`` next to ``a/b``, ``..``, trailing slashes) where files
could not.

Restoring puts each object's current version back: new version ids, the same bytes, content type
and user metadata, hence the same ETag, so an alias moved with ``If-Match`` before the restart is
moved the same way after it. Noncurrent versions are not kept: the registry never reads them (an
alias's history lives in the alias object itself).
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import BotoCoreError, ClientError

from .template import Bucket

__all__ = ["SKLAMBDA_PERSISTED", "ObjectStore", "PersistRule", "StateMirror", "clear_state", "persisted_buckets"]

log = logging.getLogger(__name__)

DATABASE = "s3.sqlite3"
_NOTIFICATION_ID = "sklambda-local-state"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL,          -- the template's logical id: physical names follow the stack name
    key TEXT NOT NULL,
    body BLOB NOT NULL,
    content_type TEXT,
    content_encoding TEXT,
    metadata TEXT NOT NULL,        -- user metadata, JSON
    etag TEXT NOT NULL,
    mirrored_at REAL NOT NULL,
    PRIMARY KEY (bucket, key)
)
"""


@dataclass(frozen=True)
class PersistRule:
    """Which keys of a bucket are kept: under one of ``prefixes`` and under none of ``excluded``."""

    prefixes: tuple[str, ...] = ("",)
    excluded: tuple[str, ...] = ()

    def covers(self, key: str) -> bool:
        return key.startswith(self.prefixes) and not key.startswith(self.excluded)


# What `sklambda serve` keeps of template.yaml's buckets. Retrain locks are left out: the Step
# Functions execution holding one does not survive a restart, and its lock would block retrains
# for its whole TTL.
SKLAMBDA_PERSISTED: dict[str, PersistRule] = {
    "ModelBucket": PersistRule(("models/",)),
    "CaptureBucket": PersistRule(("captures/", "feedback/", "state/", "reports/"), excluded=("state/retrain/",)),
}


@dataclass(frozen=True)
class StoredObject:
    bucket: str  # logical id
    key: str
    body: bytes
    content_type: str | None
    content_encoding: str | None
    metadata: dict[str, str]
    etag: str


class ObjectStore:
    """The SQLite file: one row per (bucket logical id, key), the object's current state."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        # One connection shared by the mirror thread and stop(); the lock serialises them.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")  # readers (a test, sqlite3 CLI) never block the mirror
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: committed rows survive a killed process
        self._db.execute(_SCHEMA)

    def put(self, obj: StoredObject) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    obj.bucket,
                    obj.key,
                    obj.body,
                    obj.content_type,
                    obj.content_encoding,
                    json.dumps(obj.metadata, sort_keys=True),
                    obj.etag,
                    time.time(),
                ),
            )

    def delete(self, bucket: str, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM objects WHERE bucket = ? AND key = ?", (bucket, key))

    def etags(self, bucket: str) -> dict[str, str]:
        with self._lock:
            rows = self._db.execute("SELECT key, etag FROM objects WHERE bucket = ?", (bucket,)).fetchall()
        return dict(rows)

    def objects(self, bucket: str) -> Iterator[StoredObject]:
        """The bucket's objects in the order they were last written (REPLACE gives a new rowid)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT bucket, key, body, content_type, content_encoding, metadata, etag FROM objects "
                "WHERE bucket = ? ORDER BY rowid",
                (bucket,),
            ).fetchall()
        for b, key, body, content_type, encoding, metadata, etag in rows:
            yield StoredObject(b, key, bytes(body), content_type, encoding, json.loads(metadata), etag)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def clear_state(directory: Path) -> None:
    """Forget everything kept in ``directory`` (``sklambda serve --fresh``)."""
    if directory.exists():
        shutil.rmtree(directory)
        log.info("cleared the local state in %s", directory)


class StateMirror:
    """Restores the kept objects into freshly provisioned buckets, then mirrors every change.

    ``buckets`` pairs each template bucket with what is kept of it. ``s3`` and ``sqs`` are clients
    of moto itself (not of the AWS endpoint, whose fault injection must not stop the mirror).
    """

    def __init__(
        self,
        directory: Path,
        buckets: Iterable[tuple[Bucket, PersistRule]],
        *,
        s3: Any,
        sqs: Any,
        queue_name: str,
        poll_seconds: int = 1,
    ) -> None:
        self.directory = directory
        self.store = ObjectStore(directory / DATABASE)
        self._buckets = {bucket.name: (bucket, rule) for bucket, rule in buckets}
        self._s3 = s3
        self._sqs = sqs
        self._queue_name = queue_name
        self._queue_url: str | None = None
        self._poll_seconds = poll_seconds
        self._drain_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.mirrored = 0  # objects copied (or removed) since the start

    # ---------------------------------------------------------------------------- restore
    def restore(self) -> dict[str, int]:
        """Put every kept object back (before start(): no notification for them); count per logical id."""
        restored: dict[str, int] = {}
        for bucket, rule in self._buckets.values():
            # Kept under an older rule, no longer covered: left in the file, not restored.
            objects = [obj for obj in self.store.objects(bucket.logical_id) if rule.covers(obj.key)]
            # Captures pile up (moto applies no lifecycle expiry): a few puts in flight, not one.
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda obj, name=bucket.name: self._put_back(name, obj), objects))
            restored[bucket.logical_id] = len(objects)
            if objects:
                log.info("restored %d object(s) into s3://%s from %s", len(objects), bucket.name, self.store.path)
        return restored

    def _put_back(self, bucket_name: str, obj: StoredObject) -> None:
        kwargs: dict[str, Any] = {"Bucket": bucket_name, "Key": obj.key, "Body": obj.body}
        if obj.content_type:
            kwargs["ContentType"] = obj.content_type
        if obj.content_encoding:
            kwargs["ContentEncoding"] = obj.content_encoding
        if obj.metadata:
            kwargs["Metadata"] = obj.metadata
        self._s3.put_object(**kwargs)

    # ---------------------------------------------------------------------------- mirror
    def start(self) -> StateMirror:
        self._queue_url = self._sqs.create_queue(QueueName=self._queue_name)["QueueUrl"]
        arn = self._sqs.get_queue_attributes(QueueUrl=self._queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        for name in self._buckets:
            config = self._notification_config(name)
            config["QueueConfigurations"] = [
                *config.get("QueueConfigurations", []),
                {"Id": _NOTIFICATION_ID, "QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]},
            ]
            self._s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration=config)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="sklambda-state-mirror", daemon=True)
        self._thread.start()
        log.info("local state kept in %s (%s)", self.store.path, ", ".join(sorted(self._buckets)))
        return self

    def flush(self) -> None:
        """Mirror every change announced so far (returns once the queue is empty)."""
        if self._queue_url is None:
            return
        while self._drain(wait_seconds=0):
            pass

    def stop(self) -> None:
        """Mirror what is left, reconcile with the buckets, undo the notifications. Idempotent."""
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join()
        self._thread = None
        try:
            self.flush()
            self._reconcile()
            for name in self._buckets:
                config = self._notification_config(name)
                config["QueueConfigurations"] = [
                    c for c in config.get("QueueConfigurations", []) if c.get("Id") != _NOTIFICATION_ID
                ]
                self._s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration=config)
            if self._queue_url:
                self._sqs.delete_queue(QueueUrl=self._queue_url)
        except (BotoCoreError, ClientError):
            log.exception("could not finish mirroring the local state into %s", self.store.path)
        finally:
            self.store.close()

    def _notification_config(self, bucket_name: str) -> dict[str, Any]:
        config = self._s3.get_bucket_notification_configuration(Bucket=bucket_name)
        config.pop("ResponseMetadata", None)
        return {k: v for k, v in config.items() if v}

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._drain(wait_seconds=self._poll_seconds)
            except (BotoCoreError, ClientError, sqlite3.Error):
                if not self._stopping.is_set():
                    log.exception("mirroring the local state failed; retrying")
                    self._stopping.wait(1.0)

    def _drain(self, wait_seconds: int) -> int:
        """Receive one batch of notifications and mirror the objects they name; how many messages."""
        with self._drain_lock:
            messages = self._sqs.receive_message(
                QueueUrl=self._queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
            ).get("Messages", [])
            for message in messages:
                for bucket_name, key in _notified_objects(message["Body"]):
                    self.mirror(bucket_name, key)
            if messages:
                self._sqs.delete_message_batch(
                    QueueUrl=self._queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
                )
            return len(messages)

    def mirror(self, bucket_name: str, key: str) -> None:
        """Copy the object's current state (or its absence) into the store, if it is kept."""
        found = self._buckets.get(bucket_name)
        if found is None or not found[1].covers(key):
            return
        bucket = found[0]
        try:
            response = self._s3.get_object(Bucket=bucket_name, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                raise
            self.store.delete(bucket.logical_id, key)
        else:
            self.store.put(
                StoredObject(
                    bucket=bucket.logical_id,
                    key=key,
                    body=response["Body"].read(),
                    content_type=response.get("ContentType"),
                    content_encoding=response.get("ContentEncoding"),
                    metadata=dict(response.get("Metadata") or {}),
                    etag=response["ETag"],
                )
            )
        self.mirrored += 1

    def _reconcile(self) -> None:
        """Make the store equal the buckets' kept keys (catches what no notification announced)."""
        for bucket, rule in self._buckets.values():
            live: dict[str, str] = {}
            for prefix in rule.prefixes:
                for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=bucket.name, Prefix=prefix):
                    live.update({o["Key"]: o["ETag"] for o in page.get("Contents", []) if rule.covers(o["Key"])})
            kept = self.store.etags(bucket.logical_id)
            for key in kept.keys() - live.keys():
                self.store.delete(bucket.logical_id, key)
            for key, etag in live.items():
                if kept.get(key) != etag:
                    self.mirror(bucket.name, key)


def _notified_objects(body: str) -> Iterator[tuple[str, str]]:
    """(bucket, key) of each record of an S3 event notification (a test event has none)."""
    try:
        records = json.loads(body).get("Records") or []
    except (ValueError, AttributeError):
        return
    for record in records:
        s3 = record.get("s3") or {}
        name, key = (s3.get("bucket") or {}).get("name"), (s3.get("object") or {}).get("key")
        if isinstance(name, str) and isinstance(key, str):
            yield name, unquote_plus(key)  # S3 notifications URL-encode keys (spaces as '+')


def persisted_buckets(
    buckets: Iterable[Bucket], rules: Mapping[str, PersistRule] | None
) -> list[tuple[Bucket, PersistRule]]:
    """Pair the template's buckets with their rule; ``rules=None`` keeps every bucket whole."""
    if rules is None:
        return [(bucket, PersistRule()) for bucket in buckets]
    return [(bucket, rules[bucket.logical_id]) for bucket in buckets if bucket.logical_id in rules]
