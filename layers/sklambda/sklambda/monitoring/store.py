"""S3 access for the drift job: captured objects, the job's durable state, and its reports.

Layout in the capture bucket::

    captures/YYYY/MM/DD/HH/<firehose object>      newline-delimited JSON, gzip or plain
    state/drift.json                              the job's watermark and pending aggregates
    reports/<model>/<run id>/report.json|.html    one report per model per run
    reports/<model>/latest.json                   pointer to the newest report

Firehose writes ``captures/`` with its own ``YYYY/MM/DD/HH/`` (UTC, delivery time) partitions when
the prefix has no expressions; per-model prefixes would need dynamic partitioning, which costs
extra per GB and object and cannot be emulated locally. Records carry their model, so one drift
run serves every model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sklambda.core.errors import RegistryError
from sklambda.core.s3 import PRECONDITION_CODES, error_code, is_missing
from sklambda.monitoring.reader import Prefetch, object_pieces, split_lines

CAPTURE_PREFIX = "captures/"
STATE_KEY = "state/drift.json"
REPORT_PREFIX = "reports/"


def hour_prefix(hour: datetime) -> str:
    return f"{CAPTURE_PREFIX}{hour:%Y/%m/%d/%H}/"


def hour_of_key(key: str) -> str | None:
    """``captures/2026/11/23/06/x`` → ``2026-11-23T06``; None for keys outside the layout."""
    parts = key[len(CAPTURE_PREFIX) :].split("/")
    if not key.startswith(CAPTURE_PREFIX) or len(parts) < 5 or not all(p.isdigit() for p in parts[:4]):
        return None
    return f"{parts[0]}-{parts[1]}-{parts[2]}T{parts[3]}"


class CaptureStore:
    """Lists and reads capture objects, and keeps the drift job's state and reports."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def fresh(self) -> CaptureStore:
        """The same bucket through a new S3 client of the same endpoint, region and configuration
        (a forked reader process must not share the parent's connections)."""
        import botocore.session

        meta = self.s3.meta
        client = botocore.session.get_session().create_client(
            meta.service_model.service_name,
            region_name=meta.region_name,
            endpoint_url=meta.endpoint_url,
            config=meta.config,
        )
        return CaptureStore(client, self.bucket)

    def _wrap(self, action: str, err: Exception) -> RegistryError:
        detail = error_code(err) if isinstance(err, ClientError) else repr(err)
        return RegistryError(f"could not {action} in s3://{self.bucket}: {detail}")

    # ------------------------------------------------------------- captures
    def list_capture_keys(self, start: datetime, end: datetime) -> list[str]:
        """Every capture object in the hourly partitions from ``start`` to ``end`` (inclusive)."""
        return self.list_hourly_keys(CAPTURE_PREFIX, start, end)

    def list_hourly_keys(self, prefix: str, start: datetime, end: datetime) -> list[str]:
        """Every object under ``<prefix>YYYY/MM/DD/HH/`` for the hours from ``start`` to ``end``
        (Firehose's partitions: ``captures/`` and ``feedback/``)."""
        keys: list[str] = []
        hour = start.replace(minute=0, second=0, microsecond=0)
        paginator = self.s3.get_paginator("list_objects_v2")
        while hour <= end:
            try:
                for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{prefix}{hour:%Y/%m/%d/%H}/"):
                    keys.extend(o["Key"] for o in page.get("Contents", []))
            except (ClientError, BotoCoreError) as err:
                raise self._wrap(f"list {prefix}", err) from err
            hour += timedelta(hours=1)
        return keys

    def read_lines(self, key: str) -> Iterator[bytes]:
        """The object's non-blank lines, decompressing gzip (Firehose GZIP) transparently; streamed
        (the object is read and inflated in pieces, never held whole)."""
        return split_lines(self.read_pieces(key))

    def read_pieces(self, key: str) -> Iterator[bytes]:
        """The object's text in pieces of at most ``reader.PIECE_BYTES``, read and inflated incrementally."""
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
        except (ClientError, BotoCoreError) as err:
            raise self._wrap(f"read {key}", err) from err
        try:
            yield from object_pieces(body)
        except (ClientError, BotoCoreError) as err:
            raise self._wrap(f"read {key}", err) from err
        finally:
            body.close()

    def read_objects(self, keys: Iterable[str], *, prefetch: bool = True) -> Iterator[tuple[str, Iterator[bytes]]]:
        """``(key, lines)`` for each object in order. With ``prefetch`` a background thread fetches and
        inflates ahead (S3 latency and zlib overlap the caller's decoding, memory stays bounded)."""
        keys = list(keys)
        if not prefetch:
            for key in keys:
                yield key, self.read_lines(key)
            return
        marker = object()

        def tagged() -> Iterator[Any]:
            for key in keys:
                yield marker, key
                yield from self.read_pieces(key)

        stream = iter(Prefetch(tagged()))
        pending: Any = next(stream, None)
        while pending is not None:
            _, key = pending
            pending = None

            def pieces() -> Iterator[bytes]:
                nonlocal pending
                for item in stream:
                    if isinstance(item, tuple) and item and item[0] is marker:
                        pending = item
                        return
                    yield item

            lines = pieces()
            yield key, split_lines(lines)
            for _ in lines:  # the caller stopped early: skip to the next object
                pass

    # ---------------------------------------------------------------- state
    def load_state(self) -> tuple[dict[str, Any], str | None]:
        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=STATE_KEY)
        except ClientError as err:
            if is_missing(err, self.s3, self.bucket, STATE_KEY):
                return {}, None
            raise self._wrap("read the drift state", err) from err
        except BotoCoreError as err:
            raise self._wrap("read the drift state", err) from err
        return json.loads(obj["Body"].read()), obj["ETag"]

    def save_state(self, state: dict[str, Any], etag: str | None) -> bool:
        """Conditional write: False if another run committed first (then this run must not count)."""
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=STATE_KEY,
                Body=json.dumps(state, separators=(",", ":")).encode(),
                ContentType="application/json",
                **condition,
            )
        except ClientError as err:
            if error_code(err) in PRECONDITION_CODES:
                return False
            raise self._wrap("write the drift state", err) from err
        except BotoCoreError as err:
            raise self._wrap("write the drift state", err) from err
        return True

    # -------------------------------------------------------------- reports
    def write_report(self, model: str, run_id: str, report: dict[str, Any], html: str) -> str:
        base = f"{REPORT_PREFIX}{model}/{run_id}/"
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=base + "report.json",
                ContentType="application/json",
                Body=json.dumps(report, indent=1, default=str).encode(),
            )
            self.s3.put_object(
                Bucket=self.bucket, Key=base + "report.html", ContentType="text/html; charset=utf-8", Body=html.encode()
            )
        except (ClientError, BotoCoreError) as err:
            raise self._wrap(f"write the report for {model}", err) from err
        return base

    def point_latest(self, model: str, pointer: dict[str, Any]) -> None:
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=f"{REPORT_PREFIX}{model}/latest.json",
                ContentType="application/json",
                Body=json.dumps(pointer).encode(),
            )
        except (ClientError, BotoCoreError) as err:
            raise self._wrap(f"update the latest report of {model}", err) from err

    def latest_report(self, model: str, kind: str = "json") -> tuple[dict[str, Any], bytes] | None:
        try:
            pointer = json.loads(
                self.s3.get_object(Bucket=self.bucket, Key=f"{REPORT_PREFIX}{model}/latest.json")["Body"].read()
            )
            body = self.s3.get_object(Bucket=self.bucket, Key=f"{pointer['prefix']}report.{kind}")["Body"].read()
        except ClientError as err:
            if error_code(err) in {"NoSuchKey", "404"}:
                return None
            raise self._wrap(f"read the latest report of {model}", err) from err
        return pointer, body
