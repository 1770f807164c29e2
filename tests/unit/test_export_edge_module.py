"""The edge module generator and the bundle's parts, without a registry: the generated ``sklambda_edge.py`` is the
lean runtime's own code (imports aside) and imports numpy and the standard library only; it answers exactly as
``sklambda.serving.lean`` on real converted pipelines; its schema reader and validator agree with the API's; the
boundaries read from an artifact are the ones scikit-learn's estimators compare with."""

from __future__ import annotations

import ast
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

from sklambda.core.errors import InvalidInput
from sklambda.lifecycle import lean
from sklambda.lifecycle.export import (
    ROOT,
    EdgeBuildError,
    build_edge_module,
    edge_imports,
    lean_boundaries,
    load_edge_module,
)
from sklambda.lifecycle.lean.forests import float32_floor, split_points
from sklambda.registry.features import FeatureSchema, FeatureSpec
from sklambda.serving import lean as runtime
from sklambda.serving.validation import InstanceValidator

RUNTIME_MODULES = [
    "serving/lean/base.py",
    "serving/lean/preprocessing.py",
    "serving/lean/linear.py",
    "serving/lean/forests.py",
    "serving/lean/__init__.py",
    "serving/adapters.py",
    "serving/validation.py",
    "core/errors.py",
]


@pytest.fixture(scope="module")
def generated():
    return build_edge_module()


@pytest.fixture(scope="module")
def edge(generated, tmp_path_factory):
    path = tmp_path_factory.mktemp("edge") / "sklambda_edge.py"
    path.write_text(generated.text)
    return load_edge_module(path)


def test_the_generated_module_imports_numpy_and_the_standard_library_only(generated):
    tree = ast.parse(generated.text)
    imported = edge_imports(tree)
    assert "numpy" in imported
    assert imported - {"numpy"} <= set(sys.stdlib_module_names), imported
    for name in ("sklambda", "sklearn", "scipy", "pydantic", "pandas", "joblib"):
        assert name not in imported
    assert "TYPE_CHECKING:" not in generated.text  # the template's stand-in imports are replaced by the code itself


def test_the_generated_module_is_the_library_code_imports_aside(generated):
    """One definition of the arithmetic: every top-level function and class of the runtime modules appears verbatim
    (an import between inlined modules inside a function becomes a comment, the name being global there)."""
    library = ROOT / "sklambda"
    for relative in RUNTIME_MODULES:
        path = library / relative
        text = path.read_text()
        assert f"sklambda/{relative}" in generated.sources, relative
        for node in ast.parse(text).body:
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                continue
            segment = ast.get_source_segment(text, node, padded=True)
            assert segment is not None
            if node.decorator_list:
                first = node.decorator_list[0]
                segment = "\n".join(text.splitlines()[first.lineno - 1 : node.end_lineno])
            expected = re.sub(r"^(\s*)(from sklambda\.\S+ import .+)$", r"\1# inlined: \2", segment, flags=re.MULTILINE)
            assert expected in generated.text, f"{relative}: {node.name} is not copied verbatim"


def test_the_generated_module_registers_every_runtime_kind(edge):
    assert set(edge.STEPS) == set(runtime.STEPS)
    assert set(edge.ESTIMATORS) == set(runtime.ESTIMATORS)
    assert edge.ARTIFACT == runtime.ARTIFACT and edge.RUNTIME == runtime.RUNTIME and edge.FORMAT == runtime.FORMAT


def _mixed(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    size = rng.normal(100, 30, n)
    size[rng.random(n) < 0.1] = np.nan
    rooms = rng.integers(1, 8, n).astype(float)
    city = rng.choice(["a", "b", "c"], n).astype(object)
    city[rng.random(n) < 0.1] = None
    x = np.column_stack([size.astype(object), rooms.astype(object), city])
    y = ((np.nan_to_num(size) > 100) ^ (city == "a")).astype(int)
    schema = FeatureSchema(
        features=[
            FeatureSpec(name="size", type="number", nullable=True),
            FeatureSpec(name="rooms", type="integer"),
            FeatureSpec(name="city", type="category", categories=["a", "b", "c"], nullable=True,
                        unknown_category="allow"),
        ]
    )  # fmt: skip
    return x, y, schema


def _pipelines():
    x, y, schema = _mixed()
    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), [0, 1]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), [2]),
        ]
    )
    logistic = make_pipeline(pre, LogisticRegression(max_iter=1000)).fit(x, y)
    numeric = np.asarray(x[:, :2], dtype=float)
    numeric_schema = FeatureSchema(features=schema.features[:2])
    forest = RandomForestClassifier(n_estimators=2, max_depth=3, random_state=0).fit(numeric, y)
    hgb = HistGradientBoostingRegressor(max_iter=3, max_leaf_nodes=4, random_state=0).fit(numeric, numeric[:, 1] * 2.0)
    minmax = make_pipeline(SimpleImputer(), MinMaxScaler(), LogisticRegression()).fit(numeric, y)
    return {
        "logistic": (logistic, schema, "classification", x),
        "forest": (forest, numeric_schema, "classification", numeric),
        "hgb": (hgb, numeric_schema, "regression", numeric),
        "minmax": (minmax, numeric_schema, "classification", numeric),
    }


@pytest.fixture(scope="module")
def converted():
    out = {}
    for name, (estimator, schema, task, rows) in _pipelines().items():
        conversion = lean.convert(estimator, schema, task, rows[:200])
        assert conversion.accepted, conversion.reason
        out[name] = (estimator, schema, task, rows, conversion.artifact)
    return out


@pytest.mark.parametrize("name", ["logistic", "forest", "hgb", "minmax"])
def test_the_edge_runtime_answers_bit_for_bit_as_the_served_one(edge, converted, name):
    _, schema, task, rows, artifact = converted[name]
    served, local = runtime.load(artifact), edge.load(artifact)
    matrix = InstanceValidator(schema).to_matrix([dict(zip(schema.names, r, strict=True)) for r in _json(rows)])
    assert np.array_equal(served.predict(matrix), local.predict(matrix))
    if task == "classification":
        assert np.array_equal(served.predict_proba(matrix), local.predict_proba(matrix))
        assert np.array_equal(served.predict_proba(matrix[:1]), local.predict_proba(matrix[:1]))


def _json(rows: np.ndarray) -> list[list]:
    return [[None if isinstance(v, float) and math.isnan(v) else v for v in row] for row in rows.tolist()]


def test_the_edge_schema_reader_and_validator_agree_with_the_api(edge, converted):
    _, schema, _, rows, _ = converted["logistic"]
    local_schema = edge.FeatureSchema(schema.model_dump(mode="json", exclude_none=True))
    assert local_schema.names == schema.names and local_schema.all_numeric == schema.all_numeric
    api, local = InstanceValidator(schema), edge.InstanceValidator(local_schema)
    good = dict(zip(schema.names, _json(rows)[0], strict=True))
    bad_batches = [
        [{**good, "rooms": 1.5}],
        [{**good, "size": "big"}],
        [{**good, "rooms": None}],
        [{**good, "city": 3}],
        [{k: v for k, v in good.items() if k != "rooms"}],
        [{**good, "floor": 2}],
        [[1.0, 2]],
        ["row"],
        [{**good, "size": float("inf")}, {**good, "rooms": True}],
    ]
    for batch in bad_batches:
        with pytest.raises(InvalidInput) as expected:
            api.to_matrix(batch)
        with pytest.raises(edge.InvalidInput) as got:
            local.to_matrix(batch)
        assert got.value.to_body() == expected.value.to_body()
    same = [good, {**good, "city": "elsewhere"}, {**good, "size": None, "city": None}]
    assert np.array_equal(api.to_matrix(same).astype(str), local.to_matrix(same).astype(str))


def test_every_feature_field_is_read_by_the_edge_or_known_to_be_metadata(edge):
    """A new FeatureSpec field (a bound, a format) must be taught to the edge reader, or exports refuse."""
    from sklambda.lifecycle.export import SCHEMA_METADATA, edge_schema

    assert set(FeatureSpec.model_fields) <= set(edge.FEATURE_KEYS) | SCHEMA_METADATA
    features = [FeatureSpec(name="plan", type="category", categories=["a"], unknown_category="allow", nullable=True)]
    written = edge_schema(features)
    assert edge.FeatureSchema(written).features[0].unknown_category == "allow"
    assert FeatureSchema.model_validate(written) == FeatureSchema(features=features)


@pytest.mark.parametrize(
    "features, problem",
    [
        ([{"name": "a", "type": "category"}], "non-empty list of string categories"),
        ([{"name": "a", "type": "number", "categories": ["x"]}], "cannot list categories"),
        ([{"name": "a", "type": "number", "colour": "red"}], "unknown keys"),
        ([{"name": "a", "type": "number"}, {"name": "a", "type": "integer"}], "twice"),
        ([{"name": "bad\nname", "type": "number"}], "control character"),
        ([{"name": "a", "type": "text"}], "'type' must be one of"),
        ([{"name": "a", "type": "number", "nullable": "maybe"}], "'nullable'"),
        ([], "no features"),
    ],
)
def test_a_schema_the_registry_would_refuse_is_refused_by_the_edge_reader_too(edge, features, problem):
    with pytest.raises(ValueError):
        FeatureSchema.model_validate({"features": features})
    with pytest.raises(edge.BundleError, match=re.escape(problem)):
        edge.FeatureSchema({"features": features})


def _header_and_arrays(artifact: bytes):
    import io
    import json

    with np.load(io.BytesIO(artifact), allow_pickle=False) as npz:
        return json.loads(npz["header"].tobytes()), {k: npz[k] for k in npz.files if k != "header"}


def test_boundaries_are_the_thresholds_the_trees_compare_with_and_the_next_value_above(converted):
    forest, _, _, _, artifact = converted["forest"]
    found = lean_boundaries(*_header_and_arrays(artifact))
    assert split_points(forest)
    for column, threshold in split_points(forest):  # two small trees: fewer splits than the per-column cap
        on = float(float32_floor(np.asarray([threshold]))[0])
        above = float(np.nextafter(np.float32(on), np.float32(np.inf)))
        assert on in found[column] and above in found[column]
    hgb, _, _, _, artifact = converted["hgb"]
    found = lean_boundaries(*_header_and_arrays(artifact))
    assert split_points(hgb)
    for column, threshold in split_points(hgb):  # float64 thresholds, compared as they are
        assert threshold in found[column] and float(np.nextafter(threshold, np.inf)) in found[column]


def test_boundaries_follow_scalers_and_imputers_back_to_the_request_columns(converted):
    logistic, _, _, _, artifact = converted["logistic"]
    found = lean_boundaries(*_header_and_arrays(artifact))
    imputer, scaler = logistic[0].named_transformers_["num"]
    for column in (0, 1):
        assert imputer.statistics_[column] in found[column] and scaler.mean_[column] in found[column]
    assert found[2] == []  # categories are probed by name, not by number
    minmax, _, _, _, artifact = converted["minmax"]
    found = lean_boundaries(*_header_and_arrays(artifact))
    scaled = minmax[1]
    for column in (0, 1):  # where the scaled value is 0 and 1: the fitted range
        assert min(abs(v - scaled.data_min_[column]) for v in found[column]) <= 1e-9 * max(1, scaled.data_max_[column])
        assert min(abs(v - scaled.data_max_[column]) for v in found[column]) <= 1e-9 * max(1, scaled.data_max_[column])


def test_stored_answers_compare_labels_by_type_and_values_within_tolerance(edge):
    assert edge.compare_answer({"prediction": 1, "probabilities": [0.25, 0.75]}, 1, [0.25, 0.75], "classification") == 0
    assert edge.compare_answer({"prediction": 1}, True, None, "classification") == math.inf  # JSON types differ
    assert edge.compare_answer({"prediction": "a", "probabilities": ["NaN"]}, "a", [math.nan], "classification") == 0
    assert edge.compare_answer({"prediction": 200.0}, 200.0 + 2e-7, None, "regression") == pytest.approx(1e-9)
    assert edge.compare_answer({"prediction": "Infinity"}, math.inf, None, "regression") == 0
    assert edge.encode_number(-math.inf) == "-Infinity" and edge.decode_number("-Infinity") == -math.inf


# ----------------------------------------------------------------------------- the generator's refusals
def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "src"
    for name, text in {"edgepkg/__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


TEMPLATE = '''"""t"""
from __future__ import annotations
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from edgepkg.a import f
def main() -> int:
    return f()
'''


@pytest.mark.parametrize(
    "a, extra, problem",
    [
        ("import pandas\ndef f():\n    return 1\n", {}, "neither numpy nor the standard library"),
        ("from edgepkg.b import g\ndef f():\n    return g()\ndef g():\n    return 2\n",
         {"edgepkg/b.py": "def g():\n    return 3\n"}, "is bound by both"),
        ("from edgepkg import b\ndef f():\n    return b.g()\n", {"edgepkg/b.py": "def g():\n    return 3\n"},
         "as a namespace"),
        ("from edgepkg.b import g\ndef f():\n    return g()\n", {"edgepkg/b.py": "from edgepkg.a import f\ng = f\n"},
         "import cycle"),
        ("import edgepkg.b\ndef f():\n    return 1\n", {"edgepkg/b.py": ""}, "from-imports only"),
        ("from edgepkg.b import g as h\ndef f():\n    return h()\n", {"edgepkg/b.py": "def g():\n    return 3\n"},
         "one namespace has one name"),
        ("from edgepkg.b import missing\ndef f():\n    return 1\n", {"edgepkg/b.py": "x = 1\n"}, "nothing defines it"),
    ],
)  # fmt: skip
def test_the_generator_refuses_what_one_numpy_only_namespace_cannot_hold(tmp_path, a, extra, problem):
    root = _package(tmp_path, {"edgepkg/t.py": TEMPLATE, "edgepkg/a.py": a, **extra})
    with pytest.raises(EdgeBuildError, match=re.escape(problem)):
        build_edge_module(root=root, template="edgepkg.t", package="edgepkg", provided={})


def test_the_generator_inlines_a_clean_package_into_one_working_module(tmp_path):
    a = (
        '"""A."""\nfrom __future__ import annotations\nimport math\nfrom edgepkg.b import g\n\n'
        "def f():\n    from edgepkg.b import g\n    return g() + math.floor(1.5)\n"
    )
    b = '"""B."""\nimport math\n__all__ = ["g"]\n\ndef g():\n    return math.ceil(1.5)\n'
    root = _package(tmp_path, {"edgepkg/t.py": TEMPLATE, "edgepkg/a.py": a, "edgepkg/b.py": b})
    built = build_edge_module(root=root, template="edgepkg.t", package="edgepkg", provided={})
    assert list(built.sources) == ["edgepkg/b.py", "edgepkg/a.py", "edgepkg/t.py"]  # each after what it imports
    assert built.text.count("import math") == 1 and "edgepkg" not in "".join(
        line for line in built.text.splitlines() if line.startswith(("import", "from"))
    )
    path = tmp_path / "one.py"
    path.write_text(built.text)
    assert load_edge_module(path).main() == 3
