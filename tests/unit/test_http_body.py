"""serving.http without a handler: the event read, the body parser's limits (exactly where they bite)
and the error-body builder. The same classes through the real handler: tests/integration/test_hostile_bodies.py.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sklambda.core.errors import InvalidInput, MalformedRequest, SklambdaError
from sklambda.serving import http

SETTINGS = settings(max_examples=300, deadline=None)


def _refused(text: str) -> SklambdaError:
    with pytest.raises(SklambdaError) as caught:
        http.parse_json_body(text)
    return caught.value


def _dumps(value: Any) -> str:
    """json.dumps, for integers past Python's int-string limit too (what a client can send)."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return json.dumps(value)  # ensure_ascii: lone surrogates as \\udXXX escapes
    finally:
        sys.set_int_max_str_digits(limit)


def _event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "rawPath": "/predict",
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": "POST"}},
        "isBase64Encoded": False,
        "body": '{"instances": []}',
    }
    event.update(overrides)
    return event


# ------------------------------------------------------------------------------ the event
def test_an_event_is_read_once_into_method_path_content_type_and_text():
    request = http.read_event(_event(headers={"content-type": " Application/JSON; charset=utf-8"}))
    assert request == http.HttpRequest(
        "POST", "/predict", "application/json; charset=utf-8", '{"instances": []}', problem=None
    )


def test_a_non_json_content_type_is_415_naming_the_header():
    request = http.read_event(_event(headers={"content-type": "text/plain"}))
    assert request.text is None and isinstance(request.problem, http.UnsupportedMediaType)
    assert request.problem.details == [
        {"field": "content-type", "message": "unsupported content type 'text/plain'; send application/json"}
    ]


def test_a_base64_body_is_decoded_and_one_that_is_not_utf8_text_is_400():
    encoded = base64.b64encode('{"a": "é"}'.encode()).decode()
    assert http.read_event(_event(body=encoded, isBase64Encoded=True)).text == '{"a": "é"}'
    for raw in (base64.b64encode(b"\xff\xfe").decode(), "not base64!"):
        problem = http.read_event(_event(body=raw, isBase64Encoded=True)).problem
        assert isinstance(problem, MalformedRequest) and problem.details[0]["field"] == "body"
    huge = "A" * ((http.MAX_BODY_BYTES + 2) // 3 * 4 + 4)
    assert isinstance(http.read_event(_event(body=huge, isBase64Encoded=True)).problem, http.BodyTooLarge)


def test_a_sparse_event_reads_as_empty_values():
    assert http.read_event({}) == http.HttpRequest("", "", "", None, None)
    assert http.read_event({"headers": None, "requestContext": {"http": None}, "body": 7}).text is None


# ------------------------------------------------------------------------------ the parser: any text, a value or a 4xx
@SETTINGS
@given(text=st.one_of(st.text(), st.text(alphabet='[]{}":,0123456789.eE-+ \\u\ufeff\x00tfnalsr')))
def test_any_text_is_a_value_or_a_4xx_never_another_exception(text):
    try:
        http.parse_json_body(text)
    except SklambdaError as err:
        assert int(err.status) in (400, 413, 422) and err.details and err.details[0]["field"], err.to_body()


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(alphabet=st.characters(codec=None)),  # lone surrogates included
        st.integers(0, 6000).map(lambda n: 10**n - 1),  # up to 6,000 digits: past Python's int-string limit
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


def _nesting(value: Any) -> int:
    """How many containers the deepest value sits in (a scalar at the top: 0)."""
    if isinstance(value, dict | list):
        children = list(value.values()) if isinstance(value, dict) else value
        return 1 + max(map(_nesting, children), default=-1) if children else 0
    return 0


def _within_limits(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return abs(value) < 10**http.MAX_INTEGER_DIGITS
    if isinstance(value, float):
        return True
    if isinstance(value, str):
        return http._valid_unicode(value)
    if isinstance(value, dict):
        return all(http._valid_unicode(k) and _within_limits(v) for k, v in value.items())
    return all(map(_within_limits, value))


@SETTINGS
@given(value=json_values, nest=st.integers(0, 260))
def test_a_json_document_within_the_limits_reads_as_json_loads_reads_it(value, nest):
    text = "[" * nest + _dumps(value) + "]" * nest
    if _within_limits(value) and _nesting(value) + nest <= http.MAX_NESTING:
        assert http.parse_json_body(text) == json.loads(text)
        return
    err = _refused(text)
    assert (int(err.status), err.code) in {(413, "body_too_large"), (422, "invalid_input"), (400, "malformed_request")}


# ------------------------------------------------------------------------------ each limit, exactly where it bites
@pytest.mark.parametrize(
    ("opener", "closer", "per_level"),
    [("[", "]", 1), ('{"k":', "}", 1), ('[{"k":', "}]", 2)],
    ids=["arrays", "objects", "mixed"],
)
@pytest.mark.parametrize("inner", ["1", '"x"', "[]", "{}", "null"])
def test_a_value_may_sit_inside_max_nesting_containers_and_no_deeper(opener, closer, per_level, inner):
    levels = http.MAX_NESTING // per_level
    assert http.parse_json_body(opener * levels + inner + closer * levels) is not None
    err = _refused(opener * (levels + 1) + inner + closer * (levels + 1))
    assert isinstance(err, http.BodyTooLarge) and err.details[0]["field"] == "body" and "nested" in err.message


def test_nesting_far_past_python_s_recursion_limit_is_413_with_its_position():
    err = _refused('{"instances": [' + "[" * 100_000 + "]" * 100_000 + "]}")
    assert isinstance(err, http.BodyTooLarge) and f"at position {15 + http.MAX_NESTING - 1}" in err.message


@pytest.mark.parametrize("form", ["{d}", "-{d}", "{d}.5", "{d}e5", "-{d}E-99999"])
def test_a_number_may_have_max_integer_digits_before_its_point_and_no_more(form):
    digits = "7" * http.MAX_INTEGER_DIGITS
    http.parse_json_body('{"instances": [{"age": ' + form.format(d=digits) + "}]}")
    err = _refused('{"instances": [{"age": ' + form.format(d=digits + "7") + "}]}")
    assert isinstance(err, InvalidInput)
    assert err.details == [
        {"field": "instances[0].age", "message": "a number with 4,301 digits before its decimal point; at most 4,300"}
    ]
    assert http.parse_json_body('{"x": 0.' + digits * 3 + "}") == {"x": pytest.approx(0.7777777777777778)}


def test_the_body_may_be_max_body_bytes_of_utf8_and_no_more():
    quoted = 2
    assert len(http.parse_json_body('"' + "x" * (http.MAX_BODY_BYTES - quoted) + '"')) == http.MAX_BODY_BYTES - 2
    for text in ('"' + "x" * (http.MAX_BODY_BYTES - quoted + 1) + '"', '"' + "é" * (http.MAX_BODY_BYTES // 2) + '"'):
        err = _refused(text)
        assert isinstance(err, http.BodyTooLarge) and err.details[0]["field"] == "body"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"instances": [{"plan": "a\\ud800"}]}', "instances[0].plan"),
        ('{"instances": [{"\\udc00": 1}]}', "instances[0].\udc00"),
        ('[1, ["\\udfff"]]', "body[1][0]"),
        ('"\\ud83d"', "body"),
    ],
)
def test_a_lone_surrogate_is_400_naming_the_string_or_key(text, field):
    err = _refused(text)
    assert isinstance(err, MalformedRequest) and err.details[0]["field"] == field and "surrogate" in err.message


def test_a_valid_surrogate_pair_is_read_and_a_raw_lone_surrogate_is_not_utf8_text():
    assert http.parse_json_body('{"a": "\\ud83d\\ude00"}') == {"a": "😀"}
    err = _refused('{"a": "\ud800"}')
    assert isinstance(err, MalformedRequest) and "not UTF-8 text" in err.message and "position 7" in err.message


def test_one_byte_order_mark_is_ignored_duplicate_keys_keep_the_last_and_nul_is_malformed():
    assert http.parse_json_body('\ufeff{"a": 1}') == {"a": 1}
    duplicated = '{"a": 1, "b": 2, "a": 3}'
    assert http.parse_json_body(duplicated) == json.loads(duplicated) == {"a": 3, "b": 2}
    assert http.parse_json_body('{"a\\u0000": "\\u0000"}') == {"a\x00": "\x00"}
    for text in ('\ufeff\ufeff{"a": 1}', '{"a": 1}\x00', '{"a\x00": 1}'):
        assert isinstance(_refused(text), MalformedRequest)


def test_malformed_json_keeps_the_stdlib_s_reason_and_position():
    err = _refused("{nope")
    assert err.message == "body: malformed JSON (Expecting property name enclosed in double quotes at position 1)"


def test_the_cache_parses_a_text_once_and_a_new_text_again():
    cache = http.BodyCache()
    text = '{"instances": [1]}'
    first = cache.parse(text)
    assert cache.parse(text) is first and cache.parse(str(text + " ").strip()) is first  # equal text: no re-parse
    assert cache.parse('{"instances": [2]}') == {"instances": [2]}
    with pytest.raises(MalformedRequest) as one:
        cache.parse("{nope")
    with pytest.raises(MalformedRequest) as again:
        cache.parse("{nope")
    assert one.value is again.value
    cache.clear()
    assert cache.parse(text) == first and cache.parse(text) is not first


# ------------------------------------------------------------------------------ error bodies
@SETTINGS
@given(
    message=st.text(alphabet=st.characters(codec=None), max_size=3000),
    details=st.lists(
        st.fixed_dictionaries(
            {"field": st.text(alphabet=st.characters(codec=None), max_size=500), "message": st.text(max_size=1500)}
        ),
        max_size=40,
    ),
)
def test_every_error_body_is_bounded_valid_unicode_in_the_documented_shape(message, details):
    body = http.error_body(InvalidInput(message, details=details))
    assert body["error"] == "invalid_input" and len(body["message"]) <= http.MAX_MESSAGE_CHARS
    assert set(body) == ({"error", "message", "details"} if details else {"error", "message"})
    for detail in body.get("details", []):
        assert set(detail) == {"field", "message"} and len(detail["field"]) <= http.MAX_FIELD_CHARS
        assert len(detail["message"]) <= http.MAX_MESSAGE_CHARS
    assert len(body.get("details", [])) == min(len(details), http.MAX_DETAILS)
    json.dumps(body, ensure_ascii=False).encode("utf-8")  # no lone surrogate survives
    if message.isascii() and len(message) <= http.MAX_MESSAGE_CHARS:
        assert body["message"] == message


def test_an_echoed_lone_surrogate_is_shown_as_its_escape():
    assert http.error_body(MalformedRequest("key \ud800"))["message"] == "key \\ud800"


def test_validation_errors_become_a_422_naming_each_field_without_the_body_prefix():
    err = http.invalid_request(
        [
            {"loc": ("body", "feedback", 0, "label"), "msg": "Field required"},
            {"loc": ("body",), "msg": "Input should be a valid dictionary"},
        ]
    )
    assert (int(err.status), err.code) == (422, "invalid_request")
    assert err.to_body() == {
        "error": "invalid_request",
        "message": "feedback.0.label: Field required",
        "details": [
            {"field": "feedback.0.label", "message": "Field required"},
            {"field": "body", "message": "Input should be a valid dictionary"},
        ],
    }
