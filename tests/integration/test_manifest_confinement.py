"""A manifest can only name files inside its own version's prefix of the configured bucket.

A pickle is code execution, so where an artifact is read from matters as much as its sha256: a
manifest that names ``../../other/model.joblib``, ``s3://evil/x`` or an absolute key (with a
matching sha256 of a planted pickle) must be refused before anything is fetched. Proved end to
end through ModelService (cold and warm) and load_version, against moto's S3 server.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from sklambda.core.errors import InvalidManifest, ModelUnavailable
from sklambda.lifecycle import training
from sklambda.registry.manifest import ArtifactRef, Manifest
from sklambda.registry.store import ModelRegistry, sha256_hex
from sklambda.serving.loader import load_version
from sklambda.serving.service import ModelService
from tests.support.helpers import demo_rows, trained_demo

HOSTILE_NAMES = [
    "../../other/model.joblib",
    "../1/model.joblib",
    "s3://evil/x",
    "/models/demo/versions/1/model.joblib",
    "models/other/versions/1/model.joblib",
    "sub/model.joblib",
    "model.joblib\n",
    "..",
]
PLANTED = b"cos\nsystem\n(S'echo pwned'\ntR."


class RecordingS3:
    """The real client, recording every object read (bucket, key)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.reads: list[tuple[str, str]] = []

    def get_object(self, **kwargs: Any) -> Any:
        self.reads.append((kwargs["Bucket"], kwargs["Key"]))
        return self._client.get_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _rewrite_manifest(s3, bucket: str, version: str, hostile: str, *, lean: bool) -> None:
    """Point the version's served artifact at `hostile`, with a sha256 that matches a planted pickle."""
    key = f"models/demo/versions/{version}/manifest.json"
    doc = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    ref = {"sha256": sha256_hex(PLANTED), "bytes": len(PLANTED), "runtime": "sklearn-joblib"}
    if lean:
        ref["runtime"] = doc["artifacts"][doc["lean"]["artifact"]]["runtime"]
        doc["lean"]["artifact"] = hostile
    else:
        doc["primary_artifact"] = hostile
    doc["artifacts"][hostile] = ref
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(doc).encode())


@pytest.fixture
def planted(s3, bucket) -> str:
    """The planted pickle, wherever a hostile name could resolve to."""
    s3.create_bucket(Bucket="evil")
    s3.put_object(Bucket="evil", Key="x", Body=PLANTED)
    for key in ("models/other/model.joblib", "models/other/versions/1/model.joblib", "other/model.joblib"):
        s3.put_object(Bucket=bucket, Key=key, Body=PLANTED)
    return "evil"


def _allowed(key: str) -> bool:
    return key.endswith("/manifest.json") or "/aliases/" in key


@pytest.mark.parametrize("lean", [False, True], ids=["primary-artifact", "lean-artifact"])
@pytest.mark.parametrize("hostile", HOSTILE_NAMES)
def test_a_cold_start_refuses_a_manifest_pointing_outside_its_prefix_before_any_fetch(
    s3, bucket, planted, hostile, lean
):
    manifest = training.publish(ModelRegistry(s3, bucket), "demo", trained_demo(), lean=lean)
    assert (manifest.lean is not None and manifest.lean.accepted) is lean
    ModelRegistry(s3, bucket).promote("demo", "1")
    _rewrite_manifest(s3, bucket, "1", hostile, lean=lean)  # after promotion: nothing re-checks it but the loader
    recording = RecordingS3(s3)
    registry = ModelRegistry(recording, bucket)
    events: list[tuple[str, dict[str, Any]]] = []
    service = ModelService(
        registry,
        alias="production",
        check_seconds=30,
        max_batch_rows=50,
        clock=Clock(),
        on_event=lambda e, f: events.append((e, f)),
    )

    with pytest.raises(ModelUnavailable, match="is invalid"):
        service.model("demo")

    assert all(b == bucket and _allowed(k) for b, k in recording.reads), recording.reads
    failure = [f for e, f in events if e == "ModelLoadFailure"]
    assert failure and failure[0]["error_type"] == "InvalidManifest" and failure[0]["permanent"] is True


def test_a_warm_service_keeps_serving_when_the_next_manifest_points_outside(s3, bucket, planted):
    registry = ModelRegistry(RecordingS3(s3), bucket)
    training.publish(registry, "demo", trained_demo(seed=0), lean=False)
    training.publish(registry, "demo", trained_demo(seed=1), lean=False)
    registry.promote("demo", "1")
    clock = Clock()
    events: list[tuple[str, dict[str, Any]]] = []
    service = ModelService(
        registry,
        alias="production",
        check_seconds=0,
        max_batch_rows=50,
        clock=clock,
        on_event=lambda e, f: events.append((e, f)),
    )
    assert service.model("demo").version == "1"

    registry.promote("demo", "2")
    _rewrite_manifest(s3, bucket, "2", "s3://evil/x", lean=False)
    registry.s3.reads.clear()
    clock.now += 1

    assert service.predict("demo", demo_rows(2)).model.version == "1"
    assert all(_allowed(k) for _b, k in registry.s3.reads), registry.s3.reads
    failure = [f for e, f in events if e == "ModelLoadFailure"]
    assert failure and failure[0]["error_type"] == "InvalidManifest" and failure[0]["serving"] == "1"

    # Permanent: the same alias is not re-read into another attempt on every request.
    registry.s3.reads.clear()
    clock.now += 1
    assert service.predict("demo", demo_rows(1)).model.version == "1"
    assert not any(k.endswith("/manifest.json") for _b, k in registry.s3.reads)


@pytest.mark.parametrize("hostile", HOSTILE_NAMES)
def test_load_version_refuses_an_unvalidated_manifest_naming_a_foreign_key(s3, bucket, planted, hostile):
    """Defence in depth: even a Manifest built without validation cannot make the loader fetch
    anything outside the version's prefix."""
    registry = ModelRegistry(s3, bucket)
    manifest = training.publish(registry, "demo", trained_demo(), lean=False)
    ref = ArtifactRef.model_construct(sha256=sha256_hex(PLANTED), bytes=len(PLANTED), runtime="sklearn-joblib")
    forged = Manifest.model_construct(
        **{**dict(manifest), "primary_artifact": hostile, "artifacts": {hostile: ref}, "lean": None}
    )
    recording = RecordingS3(s3)

    with pytest.raises(InvalidManifest, match="not a file in the version's own prefix"):
        load_version(ModelRegistry(recording, bucket), forged)
    assert recording.reads == []
