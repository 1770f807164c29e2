"""The lean artifact format and the parity gate itself: malformed artifacts, rows only the adversarial
set catches, refusals on both sides, and the request path's imports."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

from sklambda.lifecycle import lean
from sklambda.registry.features import FeatureSchema, FeatureSpec
from sklambda.serving import lean as runtime

DIABETES = load_diabetes()
SCHEMA = FeatureSchema(features=[FeatureSpec(name=n, type="number", nullable=True) for n in DIABETES.feature_names])


def _pipeline():
    x = DIABETES.data.copy()
    x[np.random.default_rng(0).random(x.shape) < 0.1] = np.nan
    pipeline = make_pipeline(SimpleImputer(add_indicator=True), MinMaxScaler(clip=True), LinearRegression())
    return pipeline.fit(x[:350], DIABETES.target[:350]), x[350:]


def _members(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        header = json.loads(npz["header"].tobytes())
        return header, {k: npz[k] for k in npz.files if k != "header"}


def _rewrite(header: dict, arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    raw = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(buffer, header=raw, **arrays)
    return buffer.getvalue()


def test_the_artifact_is_json_plus_numeric_arrays_and_round_trips():
    pipeline, rows = _pipeline()
    data = lean.build(pipeline, SCHEMA, "regression")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            with archive.open(name) as member:
                assert member.read(6) == b"\x93NUMPY", name
    header, arrays = _members(data)
    assert header["runtime"] == "sklambda-lean" and header["format"] == runtime.FORMAT
    assert [s["kind"] for s in header["steps"]] == ["simple_imputer", "minmax_scaler"]
    assert all(key.split("/")[0] in {"s0", "s1", "est"} for key in arrays)
    model = runtime.load(_rewrite(header, arrays))
    assert np.array_equal(model.predict(rows), pipeline.predict(rows))
    with pytest.raises(ValueError, match="only numeric arrays"):
        runtime.dump(header, {"s0/x": np.array(["a"], dtype=object)})


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda h, a: h.update(format=99), "format 99 is not supported"),
        (lambda h, a: h.update(runtime="sklambda-trees"), "is not supported"),
        (lambda h, a: h["steps"][0].update(kind="quantum_imputer"), "unknown step kind 'quantum_imputer'"),
        (lambda h, a: h["estimator"].update(kind="oracle"), "unknown estimator kind 'oracle'"),
        (lambda h, a: h["steps"][1].update(n_in=3), "does not take"),
        (lambda h, a: a.update({"s1/scale": a["s1/scale"][:4]}), "scale must be"),
        (lambda h, a: a.pop("est/coef"), "missing arrays"),
        (lambda h, a: h.pop("estimator"), "header lacks"),
        (lambda h, a: h["steps"][0].update(indicator=[99]), "indicator columns outside"),
        (lambda h, a: h.update(task="ranking"), "unknown task"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_malformed_artifact_is_a_clear_lean_format_error(tamper, message):
    pipeline, _ = _pipeline()
    header, arrays = _members(lean.build(pipeline, SCHEMA, "regression"))
    tamper(header, arrays)
    with pytest.raises(runtime.LeanFormatError, match=message):
        runtime.load(_rewrite(header, arrays))


def test_garbage_and_pickles_are_refused():
    for data in (b"", b"PK\x03\x04 not an archive", b"\x80\x04\x95 a pickle"):
        with pytest.raises(runtime.LeanFormatError, match="not a sklambda-lean artifact"):
            runtime.load(data)
    buffer = io.BytesIO()
    np.savez(buffer, header=np.frombuffer(b"{}", dtype=np.uint8), evil=np.array([object()], dtype=object))
    with pytest.raises(runtime.LeanFormatError):
        runtime.load(buffer.getvalue())


def test_the_request_path_imports_numpy_only():
    code = (
        "import sys, sklambda.serving.lean as lean; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'pandas', 'joblib'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


class _WrongAtTheEdges:
    """A lean estimator that is right on ordinary rows and wrong where an input is exactly zero."""

    def __init__(self, inner, column: int) -> None:
        self.inner, self.column = inner, column

    def predict(self, x):
        out = np.array(self.inner.predict(x), copy=True)
        out[x[:, self.column] == 0.0] += 1.0
        return out


def test_adversarial_rows_catch_what_held_out_rows_miss():
    pipeline = make_pipeline(StandardScaler(), LinearRegression()).fit(DIABETES.data[:350], DIABETES.target[:350])
    schema = FeatureSchema(features=[FeatureSpec(name=n, type="number") for n in DIABETES.feature_names])
    rows = DIABETES.data[350:]
    model = runtime.load(lean.build(pipeline, schema, "regression"))
    scaler_mean = pipeline[0].mean_
    model.estimator = _WrongAtTheEdges(model.estimator, column=2)  # x == mean -> scaled 0
    quiet = lean.parity(pipeline, model, rows, "regression", schema=schema)
    assert quiet["passed"], "held-out rows never sit exactly on the mean"
    edges = lean.checks.adversarial_rows(schema, rows, {2: {float(scaler_mean[2])}})
    assert float(scaler_mean[2]) in edges[:, 2].tolist()
    caught = lean.parity(pipeline, model, rows, "regression", schema=schema, adversarial=edges)
    assert not caught["passed"] and caught["failure"] == "values differ" and caught["max_abs_diff"] >= 1 / 400


def test_the_walk_reads_boundaries_off_the_parts():
    pipeline, rows = _pipeline()
    header, arrays, walk = lean._walk(pipeline, SCHEMA, "regression", lean.checks.matrix_for(SCHEMA, rows))
    scaler = pipeline[1]
    for j in range(10):
        assert float(scaler.data_min_[j]) in walk.boundaries[j] and float(scaler.data_max_[j]) in walk.boundaries[j]
    conversion = lean.convert(pipeline, SCHEMA, "regression", rows)
    # per column: NaN, 0, +-1e300, the imputed mean, the scaler's min and max
    assert conversion.accepted and conversion.parity["adversarial_rows"] >= 10 * 7


def test_rows_scikit_learn_refuses_must_be_refused_by_the_lean_runtime_too():
    schema = FeatureSchema(
        features=[
            FeatureSpec(name="colour", type="category", categories=["red", "blue"], unknown_category="allow"),
            FeatureSpec(name="size", type="number"),
        ]
    )
    x = np.array([["red", 1.0], ["blue", 2.0], ["red", 3.0], ["blue", 0.5]] * 10, dtype=object)
    y = np.array([0, 1, 0, 1] * 10)
    prep = ColumnTransformer([("c", OneHotEncoder(handle_unknown="error"), [0]), ("n", "passthrough", [1])])
    pipeline = make_pipeline(prep, LogisticRegression()).fit(x, y)
    model = runtime.load(lean.build(pipeline, schema, "classification"))
    unknown = lean.checks.matrix_for(schema, [["green", 1.0]])
    honest = lean.parity(pipeline, model, x, "classification", schema=schema, adversarial=unknown)
    assert honest["passed"] and honest["refused_rows"] == 1
    model.steps[0].branches[0].steps[0].tables[0].unknown = 0  # now answers what scikit-learn refuses
    lenient = lean.parity(pipeline, model, x, "classification", schema=schema, adversarial=unknown)
    assert not lenient["passed"] and "answers 1 rows scikit-learn refuses" in lenient["failure"]
