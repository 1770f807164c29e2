"""Cached boto3 client factories, created on first use (never at import time).

Timeouts are short and retries bounded so an unreachable S3 degrades a request quickly instead
of hanging it; callers fall back to what they have cached.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def s3_client() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        config=Config(
            connect_timeout=2,
            read_timeout=10,
            retries={"max_attempts": 3, "mode": "standard"},
            tcp_keepalive=True,
        ),
    )


@cache
def firehose_client() -> Any:
    import boto3
    from botocore.config import Config

    # Retries are done by the capture sink itself (it retries per record and keeps a time budget).
    return boto3.client(
        "firehose",
        config=Config(connect_timeout=1, read_timeout=3, retries={"max_attempts": 1, "mode": "standard"}),
    )


@cache
def cloudwatch_client() -> Any:
    import boto3

    return boto3.client("cloudwatch")
