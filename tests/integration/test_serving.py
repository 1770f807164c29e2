"""The serving cache against moto's server: hot swap, integrity refusal, S3 outages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from sklambda.core.errors import BatchTooLarge, InvalidInput, ModelNotFound, ModelUnavailable
from sklambda.lifecycle import training
from sklambda.registry.store import ModelRegistry
from sklambda.serving.service import ModelService
from tests.support.helpers import demo_rows, trained_demo


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingS3:
    """The real client, with a count of alias reads (to prove the re-check interval)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.alias_reads = 0

    def get_object(self, **kwargs: Any) -> Any:
        if "/aliases/" in kwargs["Key"]:
            self.alias_reads += 1
        return self._client.get_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.fixture
def events() -> list[tuple[str, dict[str, Any]]]:
    return []


def _service(registry: ModelRegistry, events, clock=None, check_seconds=30.0) -> ModelService:
    return ModelService(
        registry,
        alias="production",
        check_seconds=check_seconds,
        max_batch_rows=50,
        clock=clock or Clock(),
        on_event=lambda e, f: events.append((e, f)),
    )


def test_a_promoted_version_is_swapped_in_after_the_check_interval(s3, bucket, events):
    counting = CountingS3(s3)
    registry = ModelRegistry(counting, bucket)
    training.publish(registry, "demo", trained_demo(seed=0))
    training.publish(registry, "demo", trained_demo(seed=1))
    registry.promote("demo", "1")
    clock = Clock()
    service = _service(registry, events, clock, check_seconds=30)

    assert service.predict("demo", demo_rows(2)).model.version == "1"
    reads_after_load = counting.alias_reads
    for _ in range(20):
        service.predict("demo", demo_rows(1))
    assert counting.alias_reads == reads_after_load, "no alias read inside the interval"

    registry.promote("demo", "2")
    clock.now += 10
    assert service.predict("demo", demo_rows(1)).model.version == "1", "still inside the interval"
    clock.now += 25
    assert service.predict("demo", demo_rows(1)).model.version == "2"
    assert [e for e, _ in events].count("ModelLoaded") == 2


def test_an_unchanged_alias_costs_one_conditional_get(s3, bucket, events):
    counting = CountingS3(s3)
    registry = ModelRegistry(counting, bucket)
    training.publish(registry, "demo", trained_demo())
    registry.promote("demo", "1")
    clock = Clock()
    service = _service(registry, events, clock, check_seconds=5)
    counting.alias_reads = 0
    service.model("demo")
    clock.now += 6
    service.model("demo")
    assert counting.alias_reads == 2
    assert [e for e, _ in events] == ["ModelLoaded"], "a 304 is not a reload"


@pytest.mark.parametrize("lean", [False, True], ids=["sklearn-artifact", "lean-artifact"])
def test_a_tampered_artifact_is_refused_and_the_old_version_keeps_serving(registry, s3, bucket, events, lean):
    training.publish(registry, "demo", trained_demo(seed=0), lean=lean)
    manifest = training.publish(registry, "demo", trained_demo(seed=1), lean=lean)
    # the file the loader serves: the lean artifact the manifest names, or the canonical joblib
    served = manifest.lean.artifact if lean else "model.joblib"
    assert served is not None and served in manifest.artifacts
    registry.promote("demo", "1")
    clock = Clock()
    service = _service(registry, events, clock, check_seconds=0)
    assert service.model("demo").version == "1"
    assert service.model("demo").artifact == served

    # Someone with write access overwrites v2's served artifact (bucket versioning lets it change).
    s3.put_object(Bucket=bucket, Key=f"models/demo/versions/2/{served}", Body=b"cos\nsystem\n(S'echo pwned'\ntR.")
    registry.promote("demo", "2")
    clock.now += 1

    assert service.predict("demo", demo_rows(1)).model.version == "1"
    failure = [f for e, f in events if e == "ModelLoadFailure"]
    assert failure and failure[0]["error_type"] == "IntegrityError" and failure[0]["serving"] == "1"
    assert "does not match its manifest" in failure[0]["error"]


def test_a_tampered_artifact_at_cold_start_is_a_503_not_a_load(registry, s3, bucket, events):
    training.publish(registry, "demo", trained_demo(), lean=False)
    s3.put_object(Bucket=bucket, Key="models/demo/versions/1/model.joblib", Body=b"not the pickle")
    registry.promote("demo", "1")
    with pytest.raises(ModelUnavailable, match="does not match its manifest"):
        _service(registry, events).model("demo")


def test_a_manifest_from_another_scikit_learn_minor_is_refused_with_a_clear_error(registry, s3, bucket, events):
    manifest = training.publish(registry, "demo", trained_demo(), lean=False)  # the scikit-learn runtime
    key = "models/demo/versions/1/manifest.json"
    doc = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    doc["libraries"]["scikit-learn"] = "0.24.2"
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(doc).encode())
    registry.promote("demo", manifest.version)

    with pytest.raises(ModelUnavailable, match=r"trained with scikit-learn 0\.24\.2, this runtime has"):
        _service(registry, events).model("demo")


def test_unknown_models_are_404(registry, events):
    service = _service(registry, events)
    with pytest.raises(ModelNotFound):
        service.model("ghost")
    with pytest.raises(ModelNotFound):
        service.model("../../secrets")


def test_batch_limits_and_validation(registry, events):
    training.publish(registry, "demo", trained_demo())
    registry.promote("demo", "1")
    service = _service(registry, events)
    with pytest.raises(BatchTooLarge):
        service.predict("demo", demo_rows(51))
    with pytest.raises(InvalidInput):
        service.predict("demo", [])
    with pytest.raises(InvalidInput, match=r"instances\[1\]\.plan: unknown category 'gold'"):
        service.predict("demo", [demo_rows(1)[0], {**demo_rows(1)[0], "plan": "gold"}])


# ----------------------------------------------------------------------------- outages
@pytest.fixture
def flaky_s3() -> Iterator[dict[str, Any]]:
    """A second moto server on its own port that a test can take down and bring back."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    state: dict[str, Any] = {"server": server, "port": port}
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{host}:{port}",
        region_name="us-east-1",
        config=Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1}),
    )
    state["client"] = client

    def down() -> None:
        state["server"].stop()

    def up() -> None:
        state["server"] = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        state["server"].start()

    state["down"], state["up"] = down, up
    yield state
    state["server"].stop()


def test_s3_down_while_warm_keeps_serving_the_cached_model(flaky_s3, events):
    client = flaky_s3["client"]
    client.create_bucket(Bucket="warm-outage")
    registry = ModelRegistry(client, "warm-outage")
    training.publish(registry, "demo", trained_demo())
    registry.promote("demo", "1")
    clock = Clock()
    service = _service(registry, events, clock, check_seconds=1)
    assert service.model("demo").version == "1"

    flaky_s3["down"]()
    try:
        for _ in range(3):
            clock.now += 2
            assert service.predict("demo", demo_rows(1)).model.version == "1"
    finally:
        flaky_s3["up"]()
    assert [e for e, _ in events].count("RegistryUnavailable") == 3


def test_s3_down_at_cold_start_is_a_503_that_recovers(flaky_s3, events):
    client = flaky_s3["client"]
    client.create_bucket(Bucket="cold-outage")
    registry = ModelRegistry(client, "cold-outage")
    training.publish(registry, "demo", trained_demo())
    registry.promote("demo", "1")
    clock = Clock()
    service = _service(registry, events, clock)

    flaky_s3["down"]()
    try:
        with pytest.raises(ModelUnavailable, match="cannot be loaded right now"):
            service.model("demo")
    finally:
        flaky_s3["up"]()
    clock.now += 1.5  # an unloaded model is retried at most once a second
    assert service.model("demo").version == "1"


def test_a_canary_serves_its_share_deterministically_per_request_key(registry, events):
    training.publish(registry, "demo", trained_demo(seed=0))
    training.publish(registry, "demo", trained_demo(seed=1))
    registry.promote("demo", "1")
    registry.set_canary("demo", "2", 0.25)
    service = _service(registry, events)

    keys = [f"{i * 2654435761 % 2**32:08x}" + "0" * 24 for i in range(2000)]
    versions = [service.route("demo", k).version for k in keys]
    share = versions.count("2") / len(versions)
    assert 0.22 < share < 0.28
    assert [service.route("demo", k).version for k in keys[:50]] == versions[:50], "same key, same version"
    served = {service.predict("demo", demo_rows(1)).model.version for _ in range(60)}
    assert served == {"1", "2"}, "answers report the version that served them"


def test_promoting_the_canary_reuses_it_and_a_broken_canary_never_serves(registry, s3, bucket, events):
    training.publish(registry, "demo", trained_demo(seed=0))
    training.publish(registry, "demo", trained_demo(seed=1))
    training.publish(registry, "demo", trained_demo(seed=2))
    registry.promote("demo", "1")
    registry.set_canary("demo", "2", 0.5)
    clock = Clock()
    service = _service(registry, events, clock, check_seconds=0)
    canary = service.route("demo", "00000000")
    assert canary.version == "2"

    registry.promote("demo", "2")
    clock.now += 1
    assert service.model("demo") is canary, "the promoted canary is not loaded again"

    lean_artifact = registry.get_manifest("demo", "3").lean.artifact
    s3.put_object(Bucket=bucket, Key=f"models/demo/versions/3/{lean_artifact}", Body=b"tampered")
    registry.set_canary("demo", "3", 0.5)
    clock.now += 1
    assert {service.route("demo", f"{i:08x}").version for i in range(0, 2**32, 2**28)} == {"2"}
    failures = [f for e, f in events if e == "ModelLoadFailure"]
    assert failures[-1]["role"] == "canary" and failures[-1]["version"] == "3"
