"""What the S3 data-access modules (registry, capture store, retrain store) share about S3's answers."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

# A conditional write that lost: the object exists (If-None-Match) or changed (If-Match).
PRECONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def key_exists(s3: Any, bucket: str, key: str) -> bool:
    """True unless a listing of the key's prefix shows it absent (a failed listing cannot tell: True)."""
    try:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    except (ClientError, BotoCoreError):
        return True
    return any(o["Key"] == key for o in listed.get("Contents", []))


def is_missing(err: ClientError, s3: Any, bucket: str, key: str) -> bool:
    """Whether a failed GET means the key does not exist. S3 answers 403, not 404, for a missing key
    when the caller may only list some prefixes (our least-privilege policies); a listing tells."""
    code = error_code(err)
    return code in MISSING_CODES or (code in {"AccessDenied", "403"} and not key_exists(s3, bucket, key))
