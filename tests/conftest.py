"""Session-wide fixtures: moto's real server (HTTP) and a fresh registry bucket per test."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `tests.support` importable from every suite

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}

# Powertools reads these when sklambda.core.observability is first imported, which can be while
# pytest collects a test module (before any fixture runs): so they are set here, at import time.
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "sklambda")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "predict")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")


@pytest.fixture(autouse=True, scope="session")
def _no_real_aws() -> Iterator[None]:
    """Never reach a real AWS account from the test suite, whatever the developer's shell has."""
    saved = {k: os.environ.get(k) for k in [*FAKE_CREDENTIALS, "AWS_PROFILE", "AWS_ENDPOINT_URL"]}
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(FAKE_CREDENTIALS)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's server over real HTTP on a free loopback port; yields its endpoint URL."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access line per S3 call otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_server: str):
    import boto3

    return boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")


@pytest.fixture
def bucket(s3) -> str:
    name = f"registry-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


@pytest.fixture
def registry(s3, bucket):
    from sklambda.registry.store import ModelRegistry

    return ModelRegistry(s3, bucket, sleep=lambda _s: None)


@pytest.fixture
def delivery_stream(moto_server: str):
    """Make a DirectPut Firehose stream into a bucket's prefix: ``delivery_stream(name, bucket, prefix)``.

    Streams are deleted after the test: moto, like AWS by default, allows 50 per region, and its backend
    is shared by every emulator in the test process.
    """
    import boto3

    firehose = boto3.client("firehose", endpoint_url=moto_server, region_name="us-east-1")
    made: list[str] = []

    def make(name: str, bucket: str, prefix: str) -> str:
        firehose.create_delivery_stream(
            DeliveryStreamName=name,
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "BucketARN": f"arn:aws:s3:::{bucket}",
                "RoleARN": "arn:aws:iam::123456789012:role/firehose",
                "Prefix": prefix,
            },
        )
        made.append(name)
        return name

    yield make
    for name in made:
        firehose.delete_delivery_stream(DeliveryStreamName=name)
