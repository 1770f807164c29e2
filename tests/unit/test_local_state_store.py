"""What the local state keeps, and the SQLite file that keeps it, without moto or sockets."""

from __future__ import annotations

import sqlite3

from sklambda_dev.local.persist import SKLAMBDA_PERSISTED, ObjectStore, PersistRule, StoredObject, clear_state


def _obj(key: str, body: bytes = b"x", bucket: str = "ModelBucket") -> StoredObject:
    return StoredObject(bucket, key, body, "application/json", None, {"by": "test"}, f'"{hash(body)}"')


def test_rules_keep_prefixes_minus_exclusions():
    rule = PersistRule(("models/", "state/"), excluded=("state/retrain/",))
    assert rule.covers("models/demo/aliases/production.json")
    assert rule.covers("state/drift.json")
    assert not rule.covers("state/retrain/demo.lock.json")
    assert not rule.covers("retrain/demo/run-1/data.npz")
    assert PersistRule().covers("anything/at/all")


def test_serve_keeps_the_registry_and_captures_but_not_retrain_locks():
    models, captures = SKLAMBDA_PERSISTED["ModelBucket"], SKLAMBDA_PERSISTED["CaptureBucket"]
    assert models.covers("models/demo/versions/1/manifest.json")
    for key in ("captures/2024/01/01/00/x", "feedback/2024/01/01/00/y", "state/drift.json", "reports/demo/latest.json"):
        assert captures.covers(key), key
    assert not captures.covers("state/retrain/demo.lock.json")  # its execution does not survive a restart


def test_store_keeps_the_latest_write_of_each_key_in_write_order(tmp_path):
    store = ObjectStore(tmp_path / "s3.sqlite3")
    store.put(_obj("models/a", b"1"))
    store.put(_obj("models/b", b"2"))
    store.put(_obj("models/a", b"3"))  # rewritten: now the newest
    store.put(_obj("models/a/b", b"4"))  # a key and a "folder" of the same name, as S3 allows
    store.put(_obj("captures/c", b"5", bucket="CaptureBucket"))
    store.delete("ModelBucket", "models/b")
    kept = list(store.objects("ModelBucket"))
    assert [(o.key, o.body) for o in kept] == [("models/a", b"3"), ("models/a/b", b"4")]
    assert kept[0].metadata == {"by": "test"} and kept[0].content_type == "application/json"
    assert store.etags("CaptureBucket") == {"captures/c": f'"{hash(b"5")}"'}
    store.close()

    # Committed rows are on disk for any other reader (what a killed process leaves).
    with sqlite3.connect(tmp_path / "s3.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM objects").fetchone() == (3,)
    clear_state(tmp_path)
    assert not tmp_path.exists()
