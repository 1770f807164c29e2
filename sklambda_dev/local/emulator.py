"""moto's server, in-process, as the local AWS: every boto3 client is pointed at it by endpoint URL.

moto runs S3, CloudWatch, Firehose, SSM, SNS and Step Functions over real HTTP, so the handlers
use their ordinary boto3 code paths (signing, retries, serialisation) against it; only the
endpoint URL and fake credentials differ from AWS.

moto keeps its state in process-global backends: two emulators in one process share their
resources, and a ``moto.mock_aws`` context exiting in the same process resets them.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Iterable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from .template import DEFAULT_REGION, Alarm, Bucket, DeliveryStream, StateMachine, Topic

__all__ = ["FAKE_CREDENTIALS", "Emulator", "emulator_env"]

log = logging.getLogger(__name__)

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def emulator_env(endpoint_url: str, region: str = DEFAULT_REGION) -> dict[str, str]:
    """Environment variables that make any boto3 client (any process) talk to the emulator."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        **FAKE_CREDENTIALS,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }


class Emulator:
    """A moto ``ThreadedMotoServer`` on 127.0.0.1, plus helpers to provision template resources."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, region: str = DEFAULT_REGION) -> None:
        self.host = host
        self.region = region
        self._requested_port = port
        self._server: Any = None
        self._port: int | None = None
        self._session = boto3.session.Session(
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
            region_name=region,
        )

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> Emulator:
        from moto.server import ThreadedMotoServer  # heavy import: only when a stack starts

        # werkzeug logs every request to stderr unless its logger already has a level.
        werkzeug_log = logging.getLogger("werkzeug")
        if werkzeug_log.level == logging.NOTSET:
            werkzeug_log.setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address=self.host, port=self._requested_port, verbose=False)
        self._server.start()
        self._port = self._server.get_host_and_port()[1]
        log.info("AWS emulator (moto) listening on %s", self.endpoint_url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("emulator not started")
        return self._port

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """See :func:`emulator_env`."""
        return emulator_env(self.endpoint_url, self.region)

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for the emulator that ignores the caller's AWS profile and environment."""
        kwargs.setdefault("config", Config(retries={"max_attempts": 2, "mode": "standard"}))
        kwargs.setdefault("endpoint_url", self.endpoint_url)
        return self._session.client(service, **kwargs)

    # ---------------------------------------------------------------------------- provisioning
    def provision_buckets(self, buckets: Iterable[Bucket]) -> None:
        """Create each bucket with the versioning, encryption and access settings it declares.

        Bucket policies are not applied: moto does not enforce them, and the local endpoint is
        plain HTTP, which the template's DenyInsecureTransport statement would refuse anyway.
        """
        s3 = self.client("s3")
        for bucket in buckets:
            kwargs: dict[str, Any] = {"Bucket": bucket.name}
            if self.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            try:
                s3.create_bucket(**kwargs)
            except ClientError as exc:  # already there: moto state is process-global
                if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
            if bucket.versioning:
                s3.put_bucket_versioning(Bucket=bucket.name, VersioningConfiguration={"Status": "Enabled"})
            if bucket.encryption:
                s3.put_bucket_encryption(Bucket=bucket.name, ServerSideEncryptionConfiguration=bucket.encryption)
            if bucket.public_access_block:
                s3.put_public_access_block(
                    Bucket=bucket.name, PublicAccessBlockConfiguration=bucket.public_access_block
                )
            if bucket.ownership_controls:
                s3.put_bucket_ownership_controls(Bucket=bucket.name, OwnershipControls=bucket.ownership_controls)
            if bucket.lifecycle:  # stored, never applied: moto does not expire objects
                s3.put_bucket_lifecycle_configuration(Bucket=bucket.name, LifecycleConfiguration=bucket.lifecycle)
            log.info(
                "provisioned s3://%s (%s; versioning %s)",
                bucket.name,
                bucket.logical_id,
                "on" if bucket.versioning else "off",
            )

    def provision_delivery_streams(self, streams: Iterable[DeliveryStream]) -> None:
        """Create each Firehose delivery stream as declared (an existing one is replaced).

        moto delivers synchronously: each PutRecordBatch becomes one uncompressed object at
        ``<Prefix>YYYY/MM/DD/HH/<stream>-<version>-<timestamp>-<uuid>`` in the destination bucket
        (no buffering, no GZIP, no error output); roles and log groups are not checked.
        """
        firehose = self.client("firehose")
        for stream in streams:
            try:
                firehose.create_delivery_stream(**stream.create_kwargs)
            except ClientError as exc:  # moto state is process-global: a previous stack's stream
                if exc.response["Error"]["Code"] != "ResourceInUseException":
                    raise
                firehose.delete_delivery_stream(DeliveryStreamName=stream.name)
                firehose.create_delivery_stream(**stream.create_kwargs)
            destination = f"s3://{stream.bucket_name}/{stream.prefix}" if stream.bucket_name else "a non-S3 destination"
            log.info("provisioned Firehose stream %s (%s) into %s", stream.name, stream.logical_id, destination)

    def provision_topics(self, topics: Iterable[Topic]) -> None:
        """Create each SNS topic (idempotent) and its subscriptions (moto delivers nothing to email)."""
        sns = self.client("sns")
        for topic in topics:
            arn = sns.create_topic(Name=topic.name, Attributes=topic.attributes)["TopicArn"]
            if arn != topic.arn:
                log.warning("SNS topic %s got ARN %s, the template resolves it to %s", topic.logical_id, arn, topic.arn)
            existing = {
                (sub["Protocol"], sub["Endpoint"])
                for sub in sns.list_subscriptions_by_topic(TopicArn=arn).get("Subscriptions", [])
            }
            for sub in topic.subscriptions:
                if (sub["Protocol"], sub["Endpoint"]) not in existing:
                    sns.subscribe(TopicArn=arn, Protocol=sub["Protocol"], Endpoint=sub["Endpoint"])
            log.info("provisioned SNS topic %s (%s)", arn, topic.logical_id)

    def provision_alarms(self, alarms: Iterable[Alarm]) -> None:
        """PutMetricAlarm for each alarm, then INSUFFICIENT_DATA as a new CloudWatch alarm starts.

        moto stores alarms but never evaluates them (and creates them in OK); the local stack's
        alarm evaluator (``alarms.py``) does.
        """
        cloudwatch = self.client("cloudwatch")
        for alarm in alarms:
            cloudwatch.put_metric_alarm(**alarm.put_kwargs)
            cloudwatch.set_alarm_state(
                AlarmName=alarm.name, StateValue="INSUFFICIENT_DATA", StateReason="Unchecked: Initial alarm creation"
            )
            log.info("provisioned CloudWatch alarm %s (%s)", alarm.name, alarm.logical_id)

    def enable_step_functions(self) -> None:
        """Make moto's Step Functions execute definitions (its ASL interpreter) instead of faking runs.

        Process-wide, like every moto setting; must precede creating state machines (moto keeps
        executing and non-executing state machines in separate stores).
        """
        request = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/config",
            data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def provision_state_machines(self, machines: Iterable[StateMachine]) -> None:
        """Create each state machine (or update its definition when moto already has one by that name)."""
        sfn = self.client("stepfunctions")
        for machine in machines:
            definition = json.dumps(machine.definition)
            try:
                sfn.create_state_machine(
                    name=machine.name, definition=definition, roleArn=machine.role_arn, type=machine.type
                )
            except ClientError as exc:  # moto state is process-global: a previous stack's machine
                if exc.response["Error"]["Code"] != "StateMachineAlreadyExists":
                    raise
                sfn.update_state_machine(stateMachineArn=machine.arn, definition=definition, roleArn=machine.role_arn)
            source = machine.definition_path.name if machine.definition_path else "inline definition"
            log.info("provisioned %s state machine %s (%s, %s)", machine.type, machine.name, machine.logical_id, source)
