"""The typed per-model documents (GET /models/{name}/openapi.json, /models/{name}/docs) through the real
handler against moto: one property per feature as the validator checks it, the answer typed by the task,
and the document exact — a body it accepts is scored, a body it refuses is a 4xx — for the demo model and
a user's pipeline with string categories, nullable features and string classes."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sklambda.lifecycle import demo
from sklambda.serving.openapi_model import EXACT_INTEGER
from tests.integration.test_predict_handler import handler, published  # noqa: F401 - fixtures
from tests.support.helpers import demo_rows, event_with_body, load_event

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _document(call, name: str) -> dict[str, Any]:
    event = load_event("describe_model.json", rawPath=f"/models/{name}/openapi.json", pathParameters={"name": name})
    event["routeKey"] = "GET /models/{name}/openapi.json"
    status, document, _ = call(event)
    assert status == 200, document
    return document


def _validator(document: dict[str, Any], component: str) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


def _predict(call, name: str, body: Any) -> tuple[int, Any]:
    event = load_event("predict_named.json", rawPath=f"/models/{name}/predict", pathParameters={"name": name})
    event["body"] = json.dumps(body)
    status, answer, _ = call(event)
    return status, answer


def test_the_demo_document_types_every_feature_and_the_answer(handler, published):  # noqa: F811 - fixtures
    document = _document(handler, "demo")
    assert document["openapi"] == "3.1.0" and document["info"]["version"] == "1"
    assert list(document["paths"]) == ["/models/demo/predict"]
    operation = document["paths"]["/models/demo/predict"]["post"]
    assert {"200", "400", "413", "415", "422", "503"} <= set(operation["responses"])
    instance = document["components"]["schemas"]["Instance"]
    assert list(instance["properties"]) == [f.name for f in demo.DEMO_SCHEMA.features]
    assert instance["required"] == [f.name for f in demo.DEMO_SCHEMA.features] and not instance["additionalProperties"]
    age, income, plan = (instance["properties"][n] for n in ("age", "income", "plan"))
    assert (age["type"], age["maximum"]) == ("integer", EXACT_INTEGER) and "Customer age" in age["description"]
    assert income["type"] == "number" and income["maximum"] == 3.4028234663852886e38
    assert plan == {**plan, "type": "string", "enum": demo.PLANS}
    listed = document["components"]["schemas"]["InstanceList"]
    assert listed["minItems"] == listed["maxItems"] == 12 and listed["prefixItems"][8]["enum"] == demo.PLANS
    answer = document["components"]["schemas"]["PredictResponse"]["properties"]
    assert answer["predictions"]["items"] == {"enum": [0, 1]} and answer["classes"]["items"] == {"enum": [0, 1]}
    assert answer["probabilities"]["items"]["minItems"] == 2

    rows = demo_rows(5)
    body = {"instances": [rows[0], list(rows[1].values()), *rows[2:]]}
    _validator(document, "PredictRequest").validate(body)
    status, scored = _predict(handler, "demo", body)
    assert status == 200
    _validator(document, "PredictResponse").validate(scored)
    status, refused = _predict(handler, "demo", {"instances": [{**rows[0], "plan": "gold"}]})
    assert status == 422
    _validator(document, "Error").validate(refused)


def test_the_swagger_ui_of_a_model(handler, published):  # noqa: F811 - fixtures
    event = load_event("docs.json", rawPath="/models/demo/docs", pathParameters={"name": "demo"})
    event["routeKey"] = "GET /models/{name}/docs"
    status, page, headers = handler(event)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "SwaggerUIBundle" in page and "/models/demo/predict" in page and "demo: sklambda model API" in page
    event["queryStringParameters"], event["rawQueryString"] = {"format": "json"}, "format=json"
    status, document, _ = handler(event)
    assert status == 200 and document == _document(handler, "demo")


def test_an_unknown_model_has_no_document(handler, published):  # noqa: F811 - fixtures
    event = load_event("describe_model.json", rawPath="/models/ghost/openapi.json", pathParameters={"name": "ghost"})
    event["routeKey"] = "GET /models/{name}/openapi.json"
    status, answer, _ = handler(event)
    assert status == 404 and answer["error"] == "model_not_found"


# ------------------------------------------------------------------------------ a user's pipeline
@pytest.fixture
def shop(published):  # noqa: F811 - fixtures
    """A pandas pipeline with string categories (one nullable, unknown values ignored), a nullable number,
    names with spaces and slashes, and string classes, published with publish_user_model."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    from sklambda.lifecycle.user_model import publish_user_model

    rng = np.random.default_rng(3)
    n = 400
    frame = pd.DataFrame(
        {
            "basket (EUR)": rng.normal(40, 12, n),
            "tenure/months": rng.integers(0, 60, n),
            "plan": rng.choice(["free", "plus", "pro"], n),
            "region": rng.choice(["north/east", "south west", None], n, p=[0.45, 0.45, 0.1]),
        }
    )
    frame.loc[rng.random(n) < 0.05, "basket (EUR)"] = np.nan
    y = np.where(frame["basket (EUR)"].fillna(40) + np.where(frame["plan"] == "pro", 15, 0) > 45, "churn", "stay")
    pre = ColumnTransformer(
        [
            (
                "num",
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                ["basket (EUR)", "tenure/months"],
            ),
            ("plan", OrdinalEncoder(), ["plan"]),  # unknown plans are refused
            ("region", OneHotEncoder(handle_unknown="ignore"), ["region"]),  # unknown regions are accepted
        ]
    )
    pipeline = Pipeline([("pre", pre), ("model", LogisticRegression(max_iter=1000))]).fit(frame, y)
    manifest = publish_user_model(published, "shop", pipeline, frame, y).manifest
    published.promote("shop", manifest.version)
    return manifest


def test_a_users_pipeline_document(handler, shop):  # noqa: F811 - fixtures
    features = {f.name: f for f in shop.features}
    assert features["region"].nullable and features["region"].unknown_category == "allow"
    assert features["plan"].unknown_category == "error" and features["basket (EUR)"].nullable
    document = _document(handler, "shop")
    properties = document["components"]["schemas"]["Instance"]["properties"]
    assert properties["plan"]["type"] == "string" and properties["plan"]["enum"] == ["free", "plus", "pro"]
    assert properties["region"]["type"] == ["string", "null"] and "enum" not in properties["region"]
    assert "'north/east'" in properties["region"]["description"]
    assert properties["basket (EUR)"]["type"] == ["number", "null"]
    kind = ["integer", "null"] if features["tenure/months"].nullable else "integer"  # imputed: nullable
    assert properties["tenure/months"]["type"] == kind
    required = [f.name for f in shop.features if not f.nullable]
    assert document["components"]["schemas"]["Instance"]["required"] == required and "plan" in required
    answer = document["components"]["schemas"]["PredictResponse"]["properties"]
    assert answer["predictions"]["items"] == {"enum": ["churn", "stay"]}


# ------------------------------------------------------------------------------ exact: accepted iff scored
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**60), 2**60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, -1, 0.5, 1e39, -3.4028234663852886e38, 2**53, 2**53 + 1, 1.0]),
    st.text(max_size=12),
    st.sampled_from(["free", "plus", "pro", "north/east", "south west", "elsewhere", ""]),
    st.lists(st.integers(), max_size=2),
)


def _representable(features: dict[str, Any], row: Any) -> bool:
    """Outside what a JSON Schema can say: an integer literal past ±2**53 for a number is refused, an integral
    float past it for an integer accepted — JSON Schema has one number line (the README says so)."""
    values = row.items() if isinstance(row, dict) else zip(features, row if isinstance(row, list) else [], strict=False)
    for name, value in values:
        spec = features.get(name)
        if (
            spec is None
            or isinstance(value, bool)
            or not isinstance(value, (int, float))
            or abs(value) <= EXACT_INTEGER
        ):
            continue
        if (spec.type == "number" and isinstance(value, int)) or (
            spec.type == "integer" and isinstance(value, float) and value.is_integer()
        ):
            return False
    return True


@st.composite
def _shop_rows(draw: Any, features: dict[str, Any]) -> Any:
    row: dict[str, Any] = {
        "basket (EUR)": draw(st.one_of(st.none(), st.floats(-1e6, 1e6))),
        "tenure/months": draw(st.integers(0, 100)),
        "plan": draw(st.sampled_from(["free", "plus", "pro"])),
        "region": draw(st.sampled_from(["north/east", "south west", None, "elsewhere"])),
    }
    for _ in range(draw(st.integers(0, 2))):
        action = draw(st.sampled_from(["set", "drop", "extra"]))
        name = draw(st.sampled_from(list(features)))
        if action == "set":
            row[name] = draw(_scalars)
        elif action == "drop":
            row.pop(name, None)
        else:
            row[draw(st.text(max_size=6))] = draw(_scalars)
    if draw(st.booleans()):
        return [row.get(name) for name in features] + ([] if draw(st.booleans()) else [draw(_scalars)])
    return row


@given(data=st.data())
@SETTINGS
def test_the_document_accepts_exactly_what_is_scored(handler, shop, data):  # noqa: F811 - fixtures
    document = _document(handler, "shop")
    features = {f.name: f for f in shop.features}
    rows = data.draw(st.lists(_shop_rows(features), min_size=0, max_size=3))
    assume(all(_representable(features, row) for row in rows))
    body = {"instances": rows}
    accepted = _validator(document, "PredictRequest").is_valid(body)
    status, answer = _predict(handler, "shop", body)
    assert (status == 200) == accepted, (status, answer, body)
    if status == 200:
        _validator(document, "PredictResponse").validate(answer)
    else:
        assert 400 <= status < 500
        _validator(document, "Error").validate(answer)


def test_bodies_that_are_not_a_request_are_refused_by_both(handler, published):  # noqa: F811 - fixtures
    document = _document(handler, "demo")
    validator = _validator(document, "PredictRequest")
    for body in ({"instances": []}, {"instances": [{}]}, {"instances": [demo_rows(1)[0]], "x": 1}, {"rows": []}, [1]):
        event = event_with_body("predict_named.json", body)
        status, _, _ = handler(event)
        assert not validator.is_valid(body) and 400 <= status < 500, body
