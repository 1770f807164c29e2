"""Property tests: whatever a client sends, the real predict handler (in-process, against moto) never
answers a 5xx, and every answer is the documented JSON shape.

Bodies are built from the OpenAPI request schema (``instances``: objects or lists) around the demo
model's real features, with arbitrary JSON mixed in at every level, plus arbitrary JSON documents,
raw text, and arbitrary content types; feedback bodies likewise. Beyond tests/unit/test_schema.py
(the validator alone), this drives the whole handler: fast path, resolver, error table.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sklambda.lifecycle import demo
from tests.integration.test_predict_handler import feedback_ready, handler, published  # noqa: F401 - fixtures
from tests.support.helpers import demo_rows, event_with_body

FEATURES = [f.name for f in demo.DEMO_SCHEMA.features]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["basic", "premium", "north", "", "NaN", "1e400", "-0"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
valid_row = st.integers(0, 10_000).map(lambda seed: demo_rows(1, seed=seed)[0])


@st.composite
def instance(draw: Any) -> Any:
    """A row as the schema allows it (object or list), valid or mutated at one place, or any JSON."""
    row = dict(draw(valid_row))
    kind = draw(st.sampled_from(["valid", "mutate", "drop", "extra", "list", "short_list", "any"]))
    if kind == "mutate":
        row[draw(st.sampled_from(FEATURES))] = draw(json_values)
    elif kind == "drop":
        row.pop(draw(st.sampled_from(FEATURES)))
    elif kind == "extra":
        row[draw(st.text(max_size=10))] = draw(json_values)
    elif kind == "list":
        return [row[name] for name in FEATURES]
    elif kind == "short_list":
        return [row[name] for name in FEATURES][: draw(st.integers(0, len(FEATURES) + 1))]
    elif kind == "any":
        return draw(json_values)
    return row


predict_bodies = st.one_of(
    st.fixed_dictionaries({"instances": st.lists(instance(), max_size=30)}),
    st.fixed_dictionaries({"instances": st.lists(instance(), max_size=3)}, optional={"extra": json_values}),
    json_values,
)


def _assert_documented(status: int, body: Any) -> None:
    assert status < 500, body
    assert isinstance(body, dict), body
    if status >= 400:
        assert {"error", "message"} <= set(body) and isinstance(body["message"], str), body
        for detail in body.get("details") or []:
            assert set(detail) == {"field", "message"}, body


@SETTINGS
@given(body=predict_bodies, path=st.sampled_from(["/predict", "/models/demo/predict"]))
def test_no_predict_body_gets_a_5xx(handler, published, body, path):  # noqa: F811 - fixtures
    event = event_with_body("predict_default.json", body)
    event["rawPath"] = path
    status, answer, _ = handler(event)
    _assert_documented(status, answer)
    if status == 200:
        assert len(answer["predictions"]) == len(answer["prediction_ids"]) == len(body["instances"])


@SETTINGS
@given(
    raw=st.one_of(st.text(max_size=200), st.binary(max_size=50).map(lambda b: b.decode("latin-1"))),
    content_type=st.one_of(
        st.just("application/json"),
        st.text(max_size=40),
        st.sampled_from(["multipart/form-data", "text/plain; charset=utf-8", "application/json; charset=latin-1"]),
    ),
)
def test_no_raw_body_or_content_type_gets_a_5xx(handler, published, raw, content_type):  # noqa: F811
    event = event_with_body("predict_default.json", raw, raw=True)
    event["headers"] = {**event.get("headers", {}), "content-type": content_type}
    status, answer, _ = handler(event)
    _assert_documented(status, answer)


feedback_items = st.fixed_dictionaries(
    {"prediction_id": st.one_of(st.text(max_size=60), json_values), "label": json_values}
)
feedback_bodies = st.one_of(
    feedback_items,
    st.fixed_dictionaries({"feedback": st.lists(feedback_items | json_values, max_size=5)}),
    st.dictionaries(st.sampled_from(["prediction_id", "label", "feedback", "x"]), json_values, max_size=3),
    json_values,
)


@SETTINGS
@given(body=feedback_bodies)
def test_no_feedback_body_gets_a_5xx(feedback_ready, body):  # noqa: F811 - fixtures
    status, answer, _ = feedback_ready(event_with_body("feedback.json", body))
    _assert_documented(status, answer)
    assert status in (202, 400, 404, 413, 422), answer
