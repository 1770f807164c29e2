"""Hostile bodies: JSON (or near-JSON) whose shape or size, not its meaning, is the attack.

Hypothesis builds the body TEXT (many of these cannot come out of json.dumps: 5,000-digit literals,
lone surrogate escapes, raw NULs) from abusive atoms and wrappers that compose: nesting thousands
deep, integers with thousands of digits, floats past 1e308, lone UTF-16 surrogates in strings and
keys, megabyte strings and keys, arrays of millions of items, duplicate keys, a BOM, NULs. Each is
placed where a client could put it (a whole body, a row, a feature value, a key, an extra member, a
feedback id or label) and sent to every route that reads a body through the real ``lambda_handler``
against moto with the published demo model.

Whatever arrives, the answer is a documented status, never an exception; its body is strict JSON
(no NaN/Infinity, valid Unicode), small enough for Lambda's 6 MB response limit, and every 4xx has
the error JSON with details naming a field. Limits are checked exactly where they bite: 413 past
the body size or nesting depth, 422 naming the field for an over-long number, 400 naming the field
for a lone surrogate; anything within the limits gets the same answer as its tame equivalent.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sklambda.serving import http
from tests.integration.test_predict_handler import feedback_ready, handler, published  # noqa: F401 - fixtures
from tests.support.helpers import demo_rows, load_event

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
BUDGET = 8 * 1024 * 1024  # the largest body a strategy builds: past MAX_BODY_BYTES, under what moto-free tests afford
LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024
ROUTES = ["/predict", "/models/demo/predict", "/feedback"]
ROW = demo_rows(1)[0]


def _sizes(small: int, large: int) -> st.SearchStrategy[int]:
    """Sizes across scales, with the limits' boundaries drawn often."""
    return st.one_of(
        st.integers(0, small),
        st.integers(small, large),
        st.sampled_from([http.MAX_NESTING - 1, http.MAX_NESTING, http.MAX_NESTING + 1, 999, 1000, 1001]),
        st.sampled_from([http.MAX_INTEGER_DIGITS - 1, http.MAX_INTEGER_DIGITS, http.MAX_INTEGER_DIGITS + 1]),
    )


# ------------------------------------------------------------------------------ atoms (JSON text)
def _digits(n: int) -> str:
    return ("123456789" * (n // 9 + 1))[:n] if n else "0"


big_numbers = st.builds(
    lambda sign, n, form: sign + form.format(d=_digits(n)),
    st.sampled_from(["", "-"]),
    _sizes(40, 30_000),
    st.sampled_from(["{d}", "{d}.5", "{d}e5", "{d}E-99999", "0.{d}", "1.{d}e400", "{d}.0e-400"]),
)
extreme_floats = st.sampled_from(
    ["1e400", "-1e400", "1E+99999999999", "NaN", "Infinity", "-Infinity"]  # not finite
    + ["1e39", "-3.5e38", "1.7976931348623157e308", "3.4028236e38"]  # finite, past float32 (what trees score)
    + ["1e-400", "-0", "3.4028234663852886e38", "-1e38"]  # ordinary values
)
escape = st.integers(0, 0xFFFF).map(lambda cp: f"\\u{cp:04x}")
surrogate_escape = st.integers(0xD800, 0xDFFF).map(lambda cp: f"\\u{cp:04x}")
valid_pair = st.builds(
    lambda hi, lo: f"\\u{hi:04x}\\u{lo:04x}", st.integers(0xD800, 0xDBFF), st.integers(0xDC00, 0xDFFF)
)
string_parts = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters='"\\'), max_size=8),
    escape,
    surrogate_escape,
    valid_pair,
    st.sampled_from(["\\u0000", "\\n", "\\\\", '\\"', "\\/", "\x00", "\x1f", "\ufeff", "\ud800", "\udfff"]),
)
strings = st.one_of(
    st.lists(string_parts, max_size=6).map(lambda parts: '"' + "".join(parts) + '"'),
    st.builds(lambda n, part: '"' + part * n + '"', _sizes(100, 7_000_000), st.sampled_from(["x", "é", "😀"])),
)
atoms = st.one_of(
    big_numbers,
    extreme_floats,
    strings,
    st.sampled_from(["null", "true", "false", "0", "{}", "[]", '""', "1.5"]),
    st.sampled_from(["", "[", "{", '{"a"}', "[1,]", "01", "+1", "nul", "\x00", "\ufeff1"]),  # near-JSON
)


# ------------------------------------------------------------------------------ wrappers that compose
def _nest(inner: str, depth: int, style: str) -> str:
    opener, closer = {"array": ("[", "]"), "object": ('{"k":', "}"), "mixed": ('[{"k":', "}]")}[style]
    depth = min(depth, BUDGET // (len(opener) + len(closer)))
    return opener * depth + inner + closer * depth


def _repeat(inner: str, count: int) -> str:
    count = max(1, min(count, BUDGET // (len(inner) + 1)))
    return "[" + ",".join([inner] * count) + "]"


def _members(key: str, value: str, duplicates: int) -> str:
    return "{" + ",".join([f"{key}:{value}"] * (duplicates + 1)) + "}"


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(_nest, inner, _sizes(300, 60_000), st.sampled_from(["array", "object", "mixed"])),
        st.builds(_repeat, inner, _sizes(1000, 3_000_000)),
        st.builds(_members, strings, inner, st.integers(0, 3)),
    )


fragments = st.recursive(atoms, _extend, max_leaves=4).filter(lambda text: len(text) <= BUDGET)


# ------------------------------------------------------------------------------ where a client puts them
PREDICT_SLOTS = {
    "body": "{f}",
    "instances": '{{"instances": {f}}}',
    "row": '{{"instances": [{f}]}}',
    "value": '{{"instances": [{row}]}}',
    "key": '{{"instances": [{{{f}: 1}}]}}',
    "extra": '{{"instances": [{row_plain}], "extra": {f}}}',
}
FEEDBACK_SLOTS = {
    "body": "{f}",
    "prediction_id": '{{"prediction_id": {f}, "label": 1}}',
    "label": '{{"prediction_id": "{pid}", "label": {f}}}',
    "item": '{{"feedback": [{{"prediction_id": "{pid}", "label": {f}}}]}}',
    "feedback": '{{"feedback": {f}}}',
    "key": "{{{f}: 1}}",
}


def _value_row(value: str) -> str:
    row = dict(ROW)
    row.pop("age")
    return '{"age": ' + value + ", " + json.dumps(row)[1:]


def place(slot: str, fragment: str, route: str, pid: str) -> str:
    template = (FEEDBACK_SLOTS if route == "/feedback" else PREDICT_SLOTS)[slot]
    return template.format(f=fragment, row=_value_row(fragment), row_plain=json.dumps(ROW), pid=pid)


WRAPS = [("", ""), ("\ufeff", ""), (" \n\t", "\r\n"), ("", "\x00"), ("\ufeff\ufeff", "")]


@st.composite
def hostile_requests(draw: Any, fragment: st.SearchStrategy[str] = fragments) -> tuple[str, str, tuple[str, str], str]:
    """(route, slot, (prefix, suffix) around the body, fragment)."""
    route = draw(st.sampled_from(ROUTES))
    slot = draw(st.sampled_from(sorted(FEEDBACK_SLOTS if route == "/feedback" else PREDICT_SLOTS)))
    return route, slot, draw(st.sampled_from(WRAPS)), draw(fragment)


# --------------------------------------------------------------------------- the handler; every answer's invariants
@pytest.fixture
def send(feedback_ready):  # noqa: F811 - fixture
    """POST a raw body to a route; the answer checked against the invariants every answer keeps."""
    issued: dict[str, str] = {}

    def issued_id() -> str:
        if not issued:
            _, body, _ = feedback_ready(load_event("predict_default.json"))
            issued["pid"] = body["prediction_ids"][0]
        return issued["pid"]

    def send_event(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        status, answer, headers = feedback_ready(event)
        assert_documented(status, answer, headers)
        return status, answer

    def post(route: str, body: str) -> tuple[int, dict[str, Any]]:
        event = load_event("feedback.json" if route == "/feedback" else "predict_default.json")
        event["rawPath"] = route
        event["requestContext"]["http"]["path"] = route
        event["body"] = body
        return send_event(event)

    post.issued_id = issued_id  # type: ignore[attr-defined]
    post.event = send_event  # type: ignore[attr-defined]
    return post


def _reject_constant(name: str) -> Any:
    raise AssertionError(f"non-standard JSON constant {name} in an answer")


def _strings_in(value: Any) -> list[str]:
    found, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            found.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def assert_documented(status: int, answer: Any, headers: dict[str, str]) -> None:
    assert status in (200, 202, 400, 404, 413, 415, 422), (status, str(answer)[:500])
    raw = json.dumps(answer)  # the handler fixture parsed it; re-check it strictly below
    assert len(raw) < (LAMBDA_RESPONSE_LIMIT if status < 400 else 64 * 1024), (status, raw[:300])
    json.loads(raw, parse_constant=_reject_constant)
    for text in _strings_in(answer):
        text.encode("utf-8")  # valid Unicode: strict clients (I-JSON, RFC 7493) refuse a lone surrogate escape
    assert isinstance(answer, dict), answer
    if status >= 400:
        assert {"error", "message", "details"} <= set(answer), answer
        assert isinstance(answer["message"], str) and answer["details"], answer
        for detail in answer["details"]:
            assert set(detail) == {"field", "message"} and all(isinstance(v, str) for v in detail.values()), answer


# ------------------------------------------------------------------------------ every hostile body: a documented answer
@SETTINGS
@given(request=hostile_requests())
def test_no_hostile_body_escapes_or_gets_a_5xx(send, request):
    route, slot, (prefix, suffix), fragment = request
    body = prefix + place(slot, fragment, route, send.issued_id()) + suffix
    status, answer = send(route, body)
    event(f"{status} {answer.get('error', '')}")  # --hypothesis-show-statistics: which answers the mix reached
    event(f"body of 10^{len(body.encode('utf-8', 'surrogatepass')).bit_length() * 3 // 10} bytes")


# ------------------------------------------------------------------------------ each class where its limit bites
# Containers around the slot a fragment goes in (a value in {"instances": [{"age": F}]} sits inside 3).
ENCLOSING = {"body": 0, "instances": 1, "row": 2, "value": 3, "extra": 1, "prediction_id": 1, "label": 1, "item": 3}
VALUE_SLOTS = ["body", "instances", "row", "value", "extra", "prediction_id", "label", "item", "feedback"]
FIELD = {
    "body": "body",
    "instances": "instances",
    "row": "instances[0]",
    "value": "instances[0].age",
    "extra": "extra",
    "prediction_id": "prediction_id",
    "label": "label",
    "item": "feedback[0].label",
    "feedback": "feedback",
}


@st.composite
def slotted(draw: Any, fragment: st.SearchStrategy[str], slots: list[str]) -> tuple[str, str, str]:
    route = draw(st.sampled_from(ROUTES))
    allowed = FEEDBACK_SLOTS if route == "/feedback" else PREDICT_SLOTS
    slot = draw(st.sampled_from([s for s in slots if s in allowed]))
    return route, slot, draw(fragment)


nestings = st.tuples(
    st.sampled_from(["1", '"x"', "null", "[]", "{}"]),
    _sizes(300, 60_000),
    st.sampled_from(["array", "object", "mixed"]),
)


@SETTINGS
@given(request=slotted(st.just(""), list(ENCLOSING)), nesting=nestings)
def test_nesting_past_the_limit_is_413_and_within_it_is_answered(send, request, nesting):
    route, slot, _ = request
    inner, depth, style = nesting
    body = place(slot, _nest(inner, depth, style), route, send.issued_id())
    if len(body) > http.MAX_BODY_BYTES:
        return  # the size limit answers first (test_bodies_past_the_size_limit_are_413)
    levels = ENCLOSING[slot] + depth * (2 if style == "mixed" else 1)
    status, answer = send(route, body)
    if levels > http.MAX_NESTING:
        assert (status, answer["error"]) == (413, "body_too_large"), answer
        assert answer["details"][0]["field"] == "body" and "nested" in answer["message"], answer
    else:
        assert answer.get("error") != "body_too_large", answer


long_numbers = st.builds(
    lambda sign, n, form: (n, sign + form.format(d=_digits(n))),
    st.sampled_from(["", "-"]),
    _sizes(40, 30_000),
    st.sampled_from(["{d}", "{d}.5", "{d}e5", "{d}E-99999", "{d}.0e-400"]),
)


@SETTINGS
@given(request=slotted(st.just(""), VALUE_SLOTS), number=long_numbers)
def test_integers_past_python_s_digit_limit_are_422_naming_the_field(send, request, number):
    route, slot, _ = request
    digits, literal = number
    status, answer = send(route, place(slot, literal, route, send.issued_id()))
    if digits > http.MAX_INTEGER_DIGITS:
        assert (status, answer["error"]) == (422, "invalid_input"), answer
        assert answer["details"][0]["field"] == FIELD[slot] and "digits" in answer["message"], answer
    else:
        assert "digits" not in answer.get("message", ""), answer


@SETTINGS
@given(request=slotted(extreme_floats, ["value", "label", "item"]))
def test_floats_past_the_double_or_float32_range_are_422_naming_the_field(send, request):
    route, slot, literal = request
    status, answer = send(route, place(slot, literal, route, send.issued_id()))
    if literal in ("1e-400", "-0", "3.4028234663852886e38", "-1e38"):
        assert status in (200, 202, 422), answer  # ordinary: scored, or not a class of the demo model
        assert "too large" not in answer.get("message", "") and "finite" not in answer.get("message", ""), answer
    else:
        assert status == 422 and answer["details"][0]["field"] == FIELD[slot], answer


unicode_strings = st.lists(
    st.one_of(
        st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters='"\\'), max_size=5),
        escape.filter(lambda e: not 0xD800 <= int(e[2:], 16) <= 0xDFFF and e != "\\u0022" and e != "\\u005c"),
        surrogate_escape,
        valid_pair,
    ),
    min_size=1,
    max_size=6,
).map(lambda parts: '"' + "".join(parts) + '"')


def _tame(route: str, pid: str) -> str:
    """A body the route accepts."""
    return json.dumps({"prediction_id": pid, "label": 1} if route == "/feedback" else {"instances": [ROW]})


def _has_lone_surrogate(literal: str) -> bool:
    try:
        json.loads(literal).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@SETTINGS
@given(request=slotted(unicode_strings, ["value", "key", "extra", "prediction_id", "label", "item", "body"]))
def test_lone_surrogates_in_strings_and_keys_are_400_naming_the_field(send, request):
    route, slot, literal = request
    status, answer = send(route, place(slot, literal, route, send.issued_id()))
    if _has_lone_surrogate(literal):
        assert (status, answer["error"]) == (400, "malformed_request"), answer
        field = answer["details"][0]["field"]
        if slot == "key":
            assert field.startswith("instances[0]." if route != "/feedback" else ""), answer
        else:
            assert field == FIELD[slot], answer
        assert "surrogate" in answer["message"], answer
    else:
        assert "surrogate" not in answer.get("message", ""), answer


@SETTINGS
@given(
    route=st.sampled_from(ROUTES), position=st.integers(0, 200), char=st.sampled_from(["\ud800", "\udfff", "\udc00"])
)
def test_a_raw_lone_surrogate_in_the_body_text_is_400(send, route, position, char):
    # A direct invocation (or an event decoded from \\ud800 escapes) can carry one; it is not UTF-8 text.
    text = _tame(route, send.issued_id())
    position = min(position, len(text))
    status, answer = send(route, text[:position] + char + text[position:])
    assert (status, answer["error"], answer["details"][0]["field"]) == (400, "malformed_request", "body"), answer


sized_bodies = st.one_of(
    st.builds(lambda n, part: '"' + part * n + '"', _sizes(100, 7_000_000), st.sampled_from(["x", "é", "😀", "\\n"])),
    st.builds(_repeat, st.sampled_from(["1", "[]", "{}", '"x"', "null", json.dumps(ROW)]), _sizes(1000, 3_500_000)),
)


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8"))


@SETTINGS
@given(request=slotted(sized_bodies, ["body", "instances", "value", "key", "extra", "label", "feedback"]))
def test_bodies_past_the_size_limit_are_413_and_long_strings_get_bounded_answers(send, request):
    route, slot, fragment = request
    body = place(slot, fragment, route, send.issued_id())
    status, answer = send(route, body)  # bounded answers: assert_documented
    if _utf8_size(body) > http.MAX_BODY_BYTES:
        assert (status, answer["error"], answer["details"][0]["field"]) == (413, "body_too_large", "body"), answer
    else:
        assert answer.get("error") != "body_too_large", answer


@SETTINGS
@given(
    route=st.sampled_from(ROUTES),
    pairs=st.lists(
        st.tuples(
            st.sampled_from(sorted(ROW) + ["x", "prediction_id", "label"]),
            st.one_of(st.integers(-5, 100), st.sampled_from(["basic", "premium", "north", "card"]), st.none()),
        ),
        max_size=20,
    ),
)
def test_duplicate_keys_answer_like_the_last_occurrence(send, route, pairs):
    members = list(ROW.items()) + pairs if route != "/feedback" else [("prediction_id", send.issued_id()), *pairs]
    duplicated = "{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in members) + "}"
    last_wins = json.dumps(dict(members))
    if route != "/feedback":
        duplicated, last_wins = f'{{"instances": [{duplicated}]}}', f'{{"instances": [{last_wins}]}}'
    got, expected = send(route, duplicated), send(route, last_wins)
    for _, answer in (got, expected):
        answer.pop("prediction_ids", None)
    assert got == expected


@SETTINGS
@given(route=st.sampled_from(ROUTES), wrap=st.sampled_from(WRAPS))
def test_a_bom_and_whitespace_around_a_body_change_nothing_and_a_nul_is_400(send, route, wrap):
    prefix, suffix = wrap
    tame = _tame(route, send.issued_id())
    got, expected = send(route, prefix + tame + suffix), send(route, tame)
    if "\x00" in suffix or prefix.count("\ufeff") > 1:
        assert got[0] == 400 and got[1]["error"] == "malformed_request", got
    else:
        assert got[0] == expected[0] and got[1].keys() == expected[1].keys(), (got, expected)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("content_type", ["Application/JSON", "APPLICATION/JSON; charset=utf-8", " application/json"])
def test_json_content_type_in_any_case_is_read_as_json(send, route, content_type):
    tame = _tame(route, send.issued_id())
    event = load_event("feedback.json" if route == "/feedback" else "predict_default.json", rawPath=route, body=tame)
    event["headers"]["content-type"] = content_type
    status, answer = send.event(event)
    assert status in (200, 202), answer


def test_a_batch_of_max_batch_rows_pretty_printed_fits_the_body_limit(send, monkeypatch):
    monkeypatch.setenv("MAX_BATCH_ROWS", "10000")  # the template's MaxValue; read on the first request
    body = json.dumps({"instances": demo_rows(10_000)}, indent=2)
    assert _utf8_size(body) < http.MAX_BODY_BYTES
    status, answer = send("/predict", body)
    assert status == 200 and len(answer["predictions"]) == 10_000, answer
