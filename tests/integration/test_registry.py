"""The S3 registry contract against moto's server: immutable versions, atomic alias moves."""

from __future__ import annotations

import json
import threading

import pytest
from botocore.exceptions import ClientError

from sklambda.core.errors import ModelNotFound, VersionNotFound
from sklambda.lifecycle import training
from sklambda.registry.store import ModelRegistry
from tests.support.helpers import trained_demo


def _publish(registry: ModelRegistry, name: str = "churn"):
    return training.publish(registry, name, trained_demo())


def test_publish_writes_manifest_with_sha256_schema_and_library_versions(registry, s3, bucket):
    manifest = _publish(registry)

    assert manifest.version == "1"
    stored = json.loads(s3.get_object(Bucket=bucket, Key="models/churn/versions/1/manifest.json")["Body"].read())
    artifact = s3.get_object(Bucket=bucket, Key="models/churn/versions/1/model.joblib")["Body"].read()
    from sklambda.registry.store import sha256_hex

    assert stored["artifacts"]["model.joblib"] == {
        "sha256": sha256_hex(artifact),
        "bytes": len(artifact),
        "runtime": "sklearn-joblib",
    }
    assert [f["name"] for f in stored["features"]][:2] == ["age", "income"]
    assert stored["libraries"]["scikit-learn"].count(".") >= 1
    assert stored["classes"] == [0, 1]
    assert stored["metrics"]["holdout"]["accuracy"] > 0.55
    assert stored["params"]["n_estimators"] == 15


def test_versions_sort_in_publish_order_past_nine(registry):
    for _ in range(11):
        registry.publish_version(
            name="many",
            artifacts={"model.joblib": b"x"},
            manifest_fields=_fields(),
        )
    assert [m.version for m in registry.list_versions("many")] == [str(i) for i in range(1, 12)]


def _fields():
    return {"task": "regression", "features": [{"name": "x", "type": "number"}], "libraries": {"scikit-learn": "1.9.1"}}


def test_a_version_is_immutable(registry, s3, bucket):
    _publish(registry)
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="models/churn/versions/1/model.joblib", Body=b"evil", IfNoneMatch="*")
    assert err.value.response["Error"]["Code"] in {"PreconditionFailed", "412"}


def test_an_interrupted_publish_is_skipped_and_never_reused(registry, s3, bucket):
    s3.put_object(Bucket=bucket, Key="models/half/versions/1/model.joblib", Body=b"partial")
    manifest = registry.publish_version(name="half", artifacts={"model.joblib": b"y"}, manifest_fields=_fields())
    assert manifest.version == "2"
    assert [m.version for m in registry.list_versions("half")] == ["2"]


def test_concurrent_publishers_get_distinct_versions(registry):
    results: list[str] = []

    def publish() -> None:
        m = registry.publish_version(name="race", artifacts={"model.joblib": b"z"}, manifest_fields=_fields())
        results.append(m.version)

    threads = [threading.Thread(target=publish) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=int) == [str(i) for i in range(1, 7)]


def test_promote_and_rollback_keep_lineage_and_history(registry):
    for _ in range(3):
        registry.publish_version(name="m", artifacts={"model.joblib": b"a"}, manifest_fields=_fields())

    registry.promote("m", "1")
    registry.promote("m", "2")
    record = registry.promote("m", "3", reason="better auc")
    assert (record.version, record.previous, record.lineage) == ("3", "2", ["1", "2", "3"])

    back = registry.rollback("m", reason="latency regression")
    assert (back.version, back.previous, back.lineage) == ("2", "1", ["1", "2"])
    again = registry.rollback("m")
    assert (again.version, again.previous) == ("1", None)
    with pytest.raises(VersionNotFound):
        registry.rollback("m")

    stored = registry.get_alias("m", "production").record
    assert [(e.action, e.version, e.from_version) for e in stored.history] == [
        ("promote", "1", None),
        ("promote", "2", "1"),
        ("promote", "3", "2"),
        ("rollback", "2", "3"),
        ("rollback", "1", "2"),
    ]
    assert stored.history[3].reason == "latency regression"


def test_promote_refuses_unknown_versions_and_models(registry):
    registry.publish_version(name="m", artifacts={"model.joblib": b"a"}, manifest_fields=_fields())
    with pytest.raises(VersionNotFound):
        registry.promote("m", "7")
    with pytest.raises(VersionNotFound):
        registry.promote("m", "../../etc")
    with pytest.raises(ModelNotFound):
        registry.promote("Not A Name", "1")


def test_concurrent_promotions_lose_no_update(registry):
    """Many writers move the alias at once; every move lands in the history exactly once."""
    for _ in range(8):
        registry.publish_version(name="busy", artifacts={"model.joblib": b"a"}, manifest_fields=_fields())
    barrier = threading.Barrier(8)
    errors: list[Exception] = []

    def promote(version: str) -> None:
        barrier.wait()
        try:
            registry.promote("busy", version, reason=f"writer {version}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=promote, args=(str(v),)) for v in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    record = registry.get_alias("busy", "production").record
    assert sorted(e.version for e in record.history) == [str(v) for v in range(1, 9)]
    assert record.version == record.history[-1].version
    # each move's from_version is the move before it: a linear history, nothing overwritten
    assert [e.from_version for e in record.history[1:]] == [e.version for e in record.history[:-1]]


def test_list_models_and_describe(registry):
    _publish(registry, "alpha")
    _publish(registry, "beta")
    registry.promote("alpha", "1")
    described = {m["name"]: m for m in registry.describe_models()}
    assert set(described) == {"alpha", "beta"}
    assert described["alpha"]["aliases"]["production"]["version"] == "1"
    assert described["beta"]["aliases"] == {}


def test_canary_is_recorded_on_the_alias(registry):
    for _ in range(2):
        registry.publish_version(name="c", artifacts={"model.joblib": b"a"}, manifest_fields=_fields())
    registry.promote("c", "1")
    record = registry.set_canary("c", "2", 0.1)
    assert record.version == "1" and record.canary.version == "2" and record.canary.weight == 0.1
    assert registry.promote("c", "2").canary is None


class PrefixListOnlyS3:
    """S3 as seen under our least-privilege policies: a missing key answers 403, not 404."""

    def __init__(self, real) -> None:
        self.real = real

    def get_object(self, **kwargs):
        try:
            return self.real.get_object(**kwargs)
        except ClientError as err:
            if err.response["Error"]["Code"] == "NoSuchKey":
                raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "GetObject") from err
            raise

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_a_403_for_a_missing_alias_is_read_as_missing_not_as_an_outage(s3, bucket):
    registry = ModelRegistry(PrefixListOnlyS3(s3), bucket)
    assert registry.get_alias("nothing-here") is None
    registry.publish_version(name="m", artifacts={"model.joblib": b"a"}, manifest_fields=_fields())
    assert registry.promote("m", "1").version == "1"


def test_get_artifact_returns_only_bytes_matching_the_manifest(registry, s3, bucket):
    """The one place sha256 is verified: every reader (loader, drift baselines, retrain data) fetches here."""
    from sklambda.core.errors import IntegrityError

    manifest = _publish(registry)
    assert registry.get_json_artifact(manifest, "baseline.json")["features"]
    s3.put_object(Bucket=bucket, Key="models/churn/versions/1/baseline.json", Body=b'{"features": []}')
    with pytest.raises(IntegrityError, match=r"baseline.json does not match its manifest \(sha256"):
        registry.get_json_artifact(manifest, "baseline.json")
    original = registry.get_artifact(manifest, "training.jsonl.gz")
    s3.put_object(Bucket=bucket, Key="models/churn/versions/1/training.jsonl.gz", Body=original + b"\0")
    with pytest.raises(IntegrityError, match="training.jsonl.gz does not match"):
        registry.get_artifact(manifest, "training.jsonl.gz")


def test_a_fitted_estimator_of_ones_own_is_published_through_the_same_path(registry):
    """Bring your own pipeline: publish_version measures the holdout, converts for the lean runtime,
    profiles the baseline and stores the training rows, like a version sklambda trained."""
    from sklambda.lifecycle import demo
    from sklambda.lifecycle.publish import publish_version

    trained = trained_demo()
    columns, y = demo.generate(400, seed=9)
    holdout = demo.to_matrix(columns)
    manifest = publish_version(
        registry,
        "own",
        trained.estimator,
        demo.DEMO_SCHEMA,
        "classification",
        holdout_x=holdout,
        holdout_y=y,
        training_x=trained.reference,
        training_y=trained.reference_labels,
        params={"estimator": "random_forest"},
        description="fitted elsewhere",
    )
    assert manifest.classes == [0, 1] and manifest.status == "candidate" and manifest.description == "fitted elsewhere"
    assert manifest.metrics["holdout_rows"] == 400 and 0.5 < manifest.metrics["holdout"]["accuracy"] <= 1
    assert manifest.lean is not None and manifest.lean.accepted and manifest.lean.parity["rows"] == 400
    assert {"model.joblib", manifest.lean.artifact, "baseline.json", "training.jsonl.gz"} <= set(manifest.artifacts)
    with pytest.raises(ValueError, match="classes_"):
        publish_version(registry, "own", object(), demo.DEMO_SCHEMA, "classification")
