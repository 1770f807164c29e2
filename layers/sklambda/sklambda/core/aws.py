"""Cached AWS client factories, created on first use (never at import time).

Timeouts are short and retries bounded so an unreachable S3 degrades a request quickly instead
of hanging it; callers fall back to what they have cached.

Clients come from one botocore session, which is what ``boto3.client`` does underneath (same
environment, credentials, endpoint and configuration), without importing boto3 and s3transfer
(about 40 ms of a cold start) for the low-level clients we use.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def _session() -> Any:
    import botocore.session

    return botocore.session.get_session()


def _client(service: str, **kwargs: Any) -> Any:
    """``boto3.client(service, **kwargs)``, on the shared botocore session."""
    return _session().create_client(service, **kwargs)


@cache
def s3_client() -> Any:
    from botocore.config import Config

    return _client(
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
    from botocore.config import Config

    # Retries are done by the capture sink itself (it retries per record and keeps a time budget).
    return _client(
        "firehose",
        config=Config(connect_timeout=1, read_timeout=3, retries={"max_attempts": 1, "mode": "standard"}),
    )


@cache
def cloudwatch_client() -> Any:
    return _client("cloudwatch")


@cache
def lambda_client() -> Any:
    from botocore.config import Config

    # A synchronous invoke waits for the function (its Timeout plus a cold start): no short read timeout.
    return _client("lambda", config=Config(connect_timeout=2, read_timeout=90, retries={"max_attempts": 2}))


@cache
def codedeploy_client() -> Any:
    return _client("codedeploy")
