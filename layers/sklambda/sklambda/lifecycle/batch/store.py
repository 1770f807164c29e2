"""The batch bucket's S3 calls: listings, reads pinned to an ETag, and writes that never overwrite.

Every object a job writes is created with ``If-None-Match: *``. When it already exists (a rerun, a
retried attempt, a concurrent run of the same job), :meth:`BatchStore.put_new` compares contents:
the same bytes are the same result (fine, nothing is written twice), other bytes are a
:class:`BatchConflict`. Input is read with ``If-Match: <ETag>``: a part is never scored from an
object that changed after the job was planned.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sklambda.core.errors import RegistryError
from sklambda.core.s3 import MISSING_CODES, PRECONDITION_CODES, error_code
from sklambda.lifecycle.batch.models import BatchConflict, BatchInputError

READ_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class ListedObject:
    key: str
    etag: str
    size: int


class BatchStore:
    """S3 access for batch jobs in one bucket. The client is injected."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def _fail(self, err: Exception, what: str) -> RegistryError:
        detail = error_code(err) if isinstance(err, ClientError) else str(err)
        return RegistryError(f"could not {what} in s3://{self.bucket}: {detail}")

    # ----------------------------------------------------------------------------- reading
    def list(self, prefix: str) -> list[ListedObject]:
        """Every object under ``prefix`` (all pages), in key order."""
        out: list[ListedObject] = []
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                out.extend(
                    ListedObject(o["Key"], str(o.get("ETag", "")), int(o.get("Size", 0)))
                    for o in page.get("Contents", [])
                )
        except (ClientError, BotoCoreError) as err:
            raise self._fail(err, f"list {prefix}") from err
        return sorted(out, key=lambda o: o.key)

    def head(self, key: str) -> ListedObject | None:
        try:
            answer = self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            if error_code(err) in MISSING_CODES or error_code(err) in {"403", "AccessDenied"}:
                return None
            raise self._fail(err, f"read {key}") from err
        except BotoCoreError as err:
            raise self._fail(err, f"read {key}") from err
        return ListedObject(key, str(answer.get("ETag", "")), int(answer.get("ContentLength", 0)))

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        try:
            body: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as err:
            if error_code(err) in MISSING_CODES:
                return None
            if error_code(err) in {"403", "AccessDenied"} and self.head(key) is None:
                return None
            raise self._fail(err, f"read {key}") from err
        except BotoCoreError as err:
            raise self._fail(err, f"read {key}") from err
        return body

    def get_json(self, key: str) -> Any:
        body = self.get(key)
        return None if body is None else json.loads(body)

    def read_range(self, key: str, start: int, end: int, etag: str) -> bytes:
        """Bytes [start, end) of the input object, only if it still has ``etag``."""
        if end <= start:
            return b""
        try:
            answer = self.s3.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}", IfMatch=etag)
            data: bytes = answer["Body"].read()
        except ClientError as err:
            code = error_code(err)
            if code in PRECONDITION_CODES or code in MISSING_CODES:
                raise BatchInputError(
                    f"s3://{self.bucket}/{key} changed or disappeared after the job was planned (it had ETag {etag}); "
                    "its parts are not scored from other data. Start a new job (a new output prefix) for the new input"
                ) from err
            raise self._fail(err, f"read {key}") from err
        except BotoCoreError as err:
            raise self._fail(err, f"read {key}") from err
        if len(data) != end - start:
            raise RegistryError(f"s3://{self.bucket}/{key}: read {len(data)} bytes of range {start}-{end - 1}")
        return data

    def stream(self, key: str, etag: str, chunk: int = READ_CHUNK) -> Iterator[bytes]:
        """The whole object in chunks, only if it still has ``etag``."""
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key, IfMatch=etag)["Body"]
        except ClientError as err:
            if error_code(err) in PRECONDITION_CODES or error_code(err) in MISSING_CODES:
                raise BatchInputError(f"s3://{self.bucket}/{key} changed while the job was being planned") from err
            raise self._fail(err, f"read {key}") from err
        except BotoCoreError as err:
            raise self._fail(err, f"read {key}") from err
        try:
            while True:
                data = body.read(chunk)
                if not data:
                    return
                yield data
        except BotoCoreError as err:
            raise self._fail(err, f"read {key}") from err
        finally:
            body.close()

    # ----------------------------------------------------------------------------- writing
    def create(self, key: str, body: bytes, content_type: str) -> bool:
        """Create ``key`` unless it exists: True if this call wrote it, False if something was already there."""
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, IfNoneMatch="*")
            return True
        except ClientError as err:
            if error_code(err) in PRECONDITION_CODES:
                return False
            raise self._fail(err, f"write {key}") from err
        except BotoCoreError as err:
            raise self._fail(err, f"write {key}") from err

    def put_new(self, key: str, body: bytes, content_type: str) -> bool:
        """Create ``key``; True if this call wrote it, False if the same bytes were already there.

        Other bytes already there are a BatchConflict: a job's outputs are never overwritten.
        """
        if self.create(key, body, content_type):
            return True
        existing = self.get(key)
        if existing is None:  # lost a race with a delete: try once more
            return self.put_new(key, body, content_type)
        if existing != body:
            raise BatchConflict(
                f"s3://{self.bucket}/{key} already exists with other content ({len(existing):,} bytes, this run "
                f"produced {len(body):,}); a job's outputs are never overwritten. Remove it, or use another output "
                "prefix"
            )
        return False

    def put_json_new(self, key: str, document: Any) -> bool:
        return self.put_new(key, json.dumps(document, indent=1, sort_keys=True).encode(), "application/json")

    def put(self, key: str, body: bytes, content_type: str) -> None:
        """An unconditional write: only for diagnostics (error records), never for results."""
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        except (ClientError, BotoCoreError) as err:
            raise self._fail(err, f"write {key}") from err
