"""Edge export end to end: real published versions (the demo forest and bring-your-own pipelines through
``publish_user_model``) exported from moto's S3, then checked and asked for predictions by ``sklambda_edge.py`` in
a fresh virtual environment that holds numpy and nothing else, answers compared with the served runtime's."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from sklambda.lifecycle import schemas, training
from sklambda.lifecycle.export import ExportRefused, export_version
from sklambda.lifecycle.lean.forests import float32_floor, split_points
from sklambda.lifecycle.user_model import publish_user_model
from sklambda.registry.features import FeatureSchema
from sklambda.registry.store import ModelRegistry
from sklambda.serving import lean
from sklambda.serving.loader import load_version
from tests.support.helpers import ROOT, trained_demo
from tests.unit.test_schemas import _mixed, _mixed_pipeline

UV = ROOT / ".venv" / "bin" / "uv"
FORBIDDEN = ("sklambda", "sklearn", "scipy", "pydantic", "pandas", "joblib")


# ----------------------------------------------------------------------------- a python with numpy only
@pytest.fixture(scope="session")
def edge_python(tmp_path_factory) -> Path:
    """A fresh virtual environment with numpy alone (numpy from the package registry, the version tested here)."""
    venv = tmp_path_factory.mktemp("edge-venv") / "venv"
    pin = f"numpy=={np.__version__}"
    if UV.exists():
        subprocess.run([str(UV), "venv", "--quiet", str(venv)], check=True, timeout=300)
        subprocess.run(
            [str(UV), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), pin],
            check=True,
            timeout=600,
        )
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", pin], check=True, timeout=600)
    python = venv / "bin" / "python"
    probe = "import importlib.util, json; print(json.dumps([m for m in %r if importlib.util.find_spec(m)]))"
    found = subprocess.run([str(python), "-I", "-c", probe % (FORBIDDEN,)], capture_output=True, text=True, check=True)
    assert json.loads(found.stdout) == [], f"the edge venv is not numpy-only: {found.stdout}"
    return python


def edge(python: Path, bundle: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -I sklambda_edge.py ARGS`` in the bundle directory, with an empty environment."""
    return subprocess.run(
        [str(python), "-I", "sklambda_edge.py", *args],
        cwd=bundle,
        env={"PATH": "/usr/bin:/bin", "HOME": str(bundle)},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


# ----------------------------------------------------------------------------- published versions
def _instances(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in frame.astype(object).where(frame.notna(), None).to_dict("records")
    ]


@dataclass
class Published:
    name: str
    manifest: Any
    estimator: Any  # the user's fitted object (the demo: its pipeline)
    rows: list[Any]  # request rows the tests send: held-out style, nulls included where the data has them


def _frame(loader: Any, columns: int | None = None) -> tuple[pd.DataFrame, Any]:
    data = loader(as_frame=True)
    frame = data.data if columns is None else data.data.iloc[:, :columns]
    return frame.copy(), data.target


def _publish_all(registry: ModelRegistry) -> dict[str, Published]:
    out: dict[str, Published] = {}

    trained = trained_demo()
    manifest = training.publish(registry, "demo", trained)
    registry.promote("demo", manifest.version)
    demo_rows = [dict(zip(manifest.schema.names, row, strict=True)) for row in trained.holdout[:40].tolist()]
    out["demo"] = Published("demo", manifest, trained.estimator, demo_rows)

    def byom(name: str, estimator: Any, frame: pd.DataFrame, y: Any, **kwargs: Any) -> None:
        estimator.fit(frame, y)
        published = publish_user_model(registry, name, estimator, frame, y, **kwargs)
        assert published.runtime == "sklambda-lean", published.manifest.lean
        out[name] = Published(name, published.manifest, estimator, _instances(frame.head(40)))

    wine, wine_y = _frame(load_wine)
    byom("scaled-logreg", make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), wine, wine_y)
    mixed, mixed_y = _mixed()
    byom("onehot-strings", _mixed_pipeline(), mixed, mixed_y)
    cancer, cancer_y = _frame(load_breast_cancer, 8)
    holes = cancer.copy()
    holes.iloc[::7, 1] = np.nan
    holes.iloc[::5, 4] = np.nan
    byom("hgb-nan", HistGradientBoostingClassifier(max_iter=25, random_state=0), holes, cancer_y)
    # A column the schema says may be null although GradientBoosting takes no NaN: the model refuses those rows.
    schema = schemas.schema_from_data(cancer)
    nullable = FeatureSchema(
        features=[f.model_copy(update={"nullable": i == 2}) for i, f in enumerate(schema.features)]
    )
    gbm = GradientBoostingClassifier(n_estimators=25, max_depth=3, random_state=0)
    byom("gbm", gbm, cancer, cancer_y, schema=nullable)
    byom("tree", DecisionTreeClassifier(max_depth=5, random_state=0), wine, wine_y)
    diabetes, diabetes_y = _frame(load_diabetes)
    byom("ridge-regressor", make_pipeline(StandardScaler(), Ridge()), diabetes, diabetes_y)
    return out


@pytest.fixture(scope="module")
def world(moto_server, tmp_path_factory) -> tuple[ModelRegistry, dict[str, Published], dict[str, Path]]:
    """Every pipeline type published once in its own bucket, and each exported into its own directory."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    bucket = f"export-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    registry = ModelRegistry(s3, bucket, sleep=lambda _s: None)
    published = _publish_all(registry)
    root = tmp_path_factory.mktemp("bundles")
    bundles = {}
    for name, item in published.items():
        version = None if name == "demo" else item.manifest.version  # the demo through its production alias
        bundles[name] = export_version(registry, name, root / name, version=version).directory
    return registry, published, bundles


NAMES = ["demo", "scaled-logreg", "onehot-strings", "hgb-nan", "gbm", "tree", "ridge-regressor"]


def _certificate(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / "certificate.json").read_text())


def _served(registry: ModelRegistry, manifest: Any, rows: list[Any]) -> tuple[list[Any], list[list[float]] | None]:
    loaded = load_version(registry, manifest)
    return loaded.predict(loaded.validator.to_matrix(rows))


# ----------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("name", NAMES)
def test_check_and_predict_in_a_numpy_only_venv_answer_as_the_served_runtime(world, edge_python, name, tmp_path):
    registry, published, bundles = world
    bundle, item = bundles[name], published[name]
    assert sorted(p.name for p in bundle.iterdir()) == [
        "certificate.json",
        "features.json",
        "model.lean.npz",
        "sklambda_edge.py",
    ]
    checked = edge(edge_python, bundle, "check", "--exact")
    assert checked.returncode == 0, checked.stderr
    assert "check passed" in checked.stdout and "bit-identical" in checked.stdout

    golden = [c["row"] for c in _certificate(bundle)["golden"]["cases"] if "refused" not in c["expect"]]
    rows = item.rows + golden
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps({"instances": rows}))
    answered = edge(edge_python, bundle, "predict", str(rows_file))
    assert answered.returncode == 0, answered.stderr
    body = json.loads(answered.stdout)
    predictions, probabilities = _served(registry, item.manifest, rows)
    assert body["model"] == {"name": name, "version": item.manifest.version}
    assert body["predictions"] == predictions
    assert body.get("probabilities") == probabilities
    assert body.get("classes") == (item.manifest.classes if probabilities is not None else None)
    assert len(predictions) == len(rows) > 40

    as_lists = [[row[n] for n in item.manifest.schema.names] for row in item.rows]
    listed = edge(edge_python, bundle, "predict", "-", stdin=json.dumps(as_lists))
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["predictions"] == _served(registry, item.manifest, as_lists)[0]


def test_the_edge_process_imports_numpy_and_the_bundle_module_only(world, edge_python):
    _, published, bundles = world
    bundle = bundles["onehot-strings"]
    script = (
        "import json, sys; sys.path.insert(0, '.'); import sklambda_edge as e; m = e.load_bundle('.'); "
        f"m.predict({published['onehot-strings'].rows[:5]!r}); "
        "loaded = {n.split('.')[0] for n in sys.modules} - set(sys.stdlib_module_names) - {'__main__'}; "
        "print(json.dumps(sorted(loaded)))"
    )
    done = subprocess.run(
        [str(edge_python), "-I", "-c", script], cwd=bundle, capture_output=True, text=True, timeout=120, env={}
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["numpy", "sklambda_edge"]


def test_golden_rows_probe_nulls_unknown_categories_and_the_split_thresholds(world):
    _, published, bundles = world
    mixed = _certificate(bundles["onehot-strings"])["golden"]
    rows = [c["row"] for c in mixed["cases"] if c["from"] != "invalid"]
    assert any(r["income/month"] is None for r in rows) and any(r["region"] is None for r in rows)
    assert any(r["plan"] not in ("basic", "pro", "team") for r in rows)  # plan allows unknown values
    assert {r["plan"] for r in rows} >= {"basic", "pro", "team"}
    scaler = published["onehot-strings"].estimator.named_steps["pre"].named_transformers_["num"][-1]
    assert set(scaler.mean_.tolist()) <= set(mixed["boundaries"]["Age (years)"] + mixed["boundaries"]["income/month"])

    tree = published["tree"]
    golden = _certificate(bundles["tree"])["golden"]
    names = tree.manifest.schema.names
    values = {n: {c["row"][n] for c in golden["cases"] if isinstance(c["row"], dict) and n in c["row"]} for n in names}
    thresholds: dict[str, set[float]] = {}
    for column, threshold in split_points(tree.estimator):
        thresholds.setdefault(names[column], set()).add(threshold)
    kinds = {f.name: f.type for f in tree.manifest.features}
    assert any(kinds[n] == "number" for n in thresholds)
    for name, found in thresholds.items():
        # scikit-learn compares float32(x) <= t, so the boundary is the largest float32 t32 <= t and the next above it
        as_compared = float32_floor(np.asarray(sorted(found))).astype(np.float64)
        above = np.nextafter(as_compared.astype(np.float32), np.float32(np.inf)).astype(np.float64)
        if kinds[name] == "integer":  # an integer column is probed on the integers either side of each threshold
            sides = {math.floor(t) for t in as_compared.tolist()} | {math.ceil(t) for t in above.tolist()}
            assert sides & values[name], f"no golden row beside a threshold of {name}"
            continue
        on = set(as_compared.tolist()) & values[name]
        assert on, f"no golden row on a threshold of {name}"
        assert set(above[np.isin(as_compared, list(on))].tolist()) <= values[name]

    hgb = published["hgb-nan"]
    golden = _certificate(bundles["hgb-nan"])["golden"]
    names = hgb.manifest.schema.names
    probed = {n: {c["row"][n] for c in golden["cases"] if isinstance(c["row"], dict)} for n in names}
    hgb_thresholds = split_points(hgb.estimator)
    assert any(t in probed[names[c]] for c, t in hgb_thresholds)  # HGB compares in float64: the thresholds themselves
    assert any(c["row"][names[1]] is None for c in golden["cases"] if isinstance(c["row"], dict))


def test_rows_the_served_runtime_refuses_are_refused_on_the_edge_too(world, edge_python, tmp_path):
    registry, published, bundles = world
    golden = _certificate(bundles["gbm"])["golden"]
    refused = [c for c in golden["cases"] if c["expect"].get("refused") == "model"]
    assert refused and all("NaN" in c["expect"]["message"] for c in refused)
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([refused[0]["row"]]))
    done = edge(edge_python, bundles["gbm"], "predict", str(rows))
    assert done.returncode == 1 and json.loads(done.stderr)["error"] == "model_refused"
    invalid = [c for c in golden["cases"] if c["from"] == "invalid"]
    rows.write_text(json.dumps([invalid[0]["row"]]))
    done = edge(edge_python, bundles["gbm"], "predict", str(rows))
    error = json.loads(done.stderr)
    assert done.returncode == 2 and error["error"] == "invalid_input"
    assert error["details"][0] == {"field": invalid[0]["expect"]["field"], "message": invalid[0]["expect"]["message"]}


def _copy(bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / bundle.name
    shutil.copytree(bundle, target)
    return target


def _rewrite_certificate(bundle: Path, change: Any, *, redigest: bool) -> None:
    from sklambda.lifecycle import edge_runtime

    certificate = _certificate(bundle)
    change(certificate)
    if redigest:
        certificate["golden"]["sha256"] = edge_runtime.golden_digest(certificate["golden"])
    (bundle / "certificate.json").write_text(json.dumps(certificate))


def test_a_tampered_artifact_schema_or_runtime_fails_the_check(world, edge_python, tmp_path):
    _, _, bundles = world
    for file, change in [
        ("model.lean.npz", lambda b: b[:-1] + bytes([b[-1] ^ 1])),
        ("features.json", lambda b: b.replace(b'"nullable": false', b'"nullable": true', 1)),
        ("sklambda_edge.py", lambda b: b + b"\n# an edit\n"),
    ]:
        bundle = _copy(bundles["scaled-logreg"], tmp_path / file)
        path = bundle / file
        path.write_bytes(change(path.read_bytes()))
        done = edge(edge_python, bundle, "check")
        assert done.returncode == 1, done.stdout
        assert "check FAILED" in done.stderr and file in done.stderr
        assert "sha256" in done.stderr or "bytes" in done.stderr
        if file != "sklambda_edge.py":
            predict = edge(edge_python, bundle, "predict", "-", stdin="[]")
            assert predict.returncode == 1 and f"refusing to load {file}" in predict.stderr


def test_a_tampered_golden_row_fails_the_check_with_or_without_a_new_digest(world, edge_python, tmp_path):
    _, _, bundles = world

    def nudge(certificate: dict[str, Any]) -> None:
        case = next(c for c in certificate["golden"]["cases"] if "probabilities" in c["expect"])
        case["expect"]["probabilities"][0] += 1e-6

    bundle = _copy(bundles["demo"], tmp_path / "plain")
    _rewrite_certificate(bundle, nudge, redigest=False)
    done = edge(edge_python, bundle, "check")
    assert done.returncode == 1 and "golden rows were altered" in done.stderr

    bundle = _copy(bundles["demo"], tmp_path / "redigested")
    _rewrite_certificate(bundle, nudge, redigest=True)
    done = edge(edge_python, bundle, "check")
    assert done.returncode == 1 and "golden rows differ" in done.stderr and "difference 1e-06" in done.stderr

    def relabel(certificate: dict[str, Any]) -> None:
        case = next(c for c in certificate["golden"]["cases"] if "refused" not in c["expect"])
        case["expect"]["prediction"] = 1 - case["expect"]["prediction"]
        case.pop("expect_in_batch", None)

    bundle = _copy(bundles["demo"], tmp_path / "relabelled")
    _rewrite_certificate(bundle, relabel, redigest=True)
    done = edge(edge_python, bundle, "check")
    assert done.returncode == 1 and "golden row" in done.stderr and "expected" in done.stderr


def test_a_rehashed_altered_model_still_fails_on_the_golden_rows(world, edge_python, tmp_path):
    """Hashes only say the bytes are the certified ones; the golden rows say the model still answers the same."""
    import hashlib
    import io

    _, _, bundles = world
    bundle = _copy(bundles["ridge-regressor"], tmp_path / "altered")
    with np.load(io.BytesIO((bundle / "model.lean.npz").read_bytes()), allow_pickle=False) as npz:
        header = json.loads(npz["header"].tobytes())
        arrays = {k: npz[k] for k in npz.files if k != "header"}
    arrays["est/intercept"] = arrays["est/intercept"] + 1e-3
    altered = lean.dump({k: v for k, v in header.items() if k not in ("format", "runtime")}, arrays)
    (bundle / "model.lean.npz").write_bytes(altered)

    def rehash(certificate: dict[str, Any]) -> None:
        certificate["files"]["model.lean.npz"] = {"sha256": hashlib.sha256(altered).hexdigest(), "bytes": len(altered)}

    _rewrite_certificate(bundle, rehash, redigest=False)
    done = edge(edge_python, bundle, "check")
    assert done.returncode == 1 and "golden rows differ" in done.stderr


def test_a_version_the_lean_runtime_does_not_serve_is_refused_with_its_reason(world, tmp_path):
    registry, _, _ = world
    wine, wine_y = _frame(load_wine)
    knn = make_pipeline(StandardScaler(), KNeighborsClassifier()).fit(wine, wine_y)
    manifest = publish_user_model(registry, "wine-knn", knn, wine, wine_y).manifest
    assert manifest.lean is not None and not manifest.lean.accepted and manifest.lean.reason
    with pytest.raises(ExportRefused) as refused:
        export_version(registry, "wine-knn", tmp_path / "knn", version=manifest.version)
    assert "not lean-served" in refused.value.message and manifest.lean.reason in refused.value.message
    assert not (tmp_path / "knn").exists()


def test_without_training_rows_the_golden_rows_start_from_the_schema(world, edge_python, tmp_path):
    registry, published, _ = world
    item = published["onehot-strings"]
    bundle = export_version(
        registry, item.name, tmp_path / "synthetic", version=item.manifest.version, data_rows=False
    ).directory
    golden = _certificate(bundle)["golden"]
    assert golden["base_rows"] == "schema" and golden["counts"]["from_schema"] == 1
    given = {json.dumps(r, sort_keys=True) for r in item.rows}
    assert not any(json.dumps(c["row"], sort_keys=True) in given for c in golden["cases"])
    assert edge(edge_python, bundle, "check").returncode == 0
    with pytest.raises(ExportRefused, match="already holds"):
        export_version(registry, item.name, bundle, version=item.manifest.version)


def test_the_cli_exports_the_production_version_and_refuses_what_it_cannot(world, edge_python, moto_server, tmp_path):
    registry, published, _ = world
    state = tmp_path / "local.json"
    state.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "endpoint_url": moto_server,
                "api_url": None,
                "buckets": {"ModelBucket": registry.bucket},
            }
        )
    )
    env = {**os.environ, "SKLAMBDA_STATE_FILE": str(state)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sklambda_dev.cli", *args], env=env, capture_output=True, text=True, timeout=300
        )

    done = cli("export", "demo", str(tmp_path / "demo-bundle"))
    assert done.returncode == 0, done.stderr
    assert f"exported demo v{published['demo'].manifest.version}" in done.stdout and "certificate.json" in done.stdout
    assert edge(edge_python, tmp_path / "demo-bundle", "check").returncode == 0
    done = cli("export", "tree", str(tmp_path / "tree-bundle"))
    assert done.returncode == 1 and "no 'production' alias" in done.stderr
    done = cli("export", "tree", str(tmp_path / "tree-bundle"), "--version", published["tree"].manifest.version)
    assert done.returncode == 0, done.stderr
