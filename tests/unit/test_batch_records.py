"""Rows in bytes for batch jobs: the record scanner the planner and scorer share, CSV headers and cells.

The scanner must find the same row boundaries however the bytes arrive (the planner streams 8 MB
chunks, the scorer reads a whole part), and on well-formed CSV those boundaries must be exactly the
rows Python's csv module reads.
"""

from __future__ import annotations

import csv
import io
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sklambda.core.errors import InvalidInput
from sklambda.lifecycle.batch import layout
from sklambda.lifecycle.batch.models import BatchInputError, parse_request
from sklambda.lifecycle.batch.records import (
    CsvParser,
    CsvRows,
    RecordScanner,
    cell_converter,
    csv_layout,
    field_of,
    parse_csv_row,
    scan,
    sniff_jsonl,
)
from sklambda.lifecycle.demo import DEMO_SCHEMA
from sklambda.registry.features import FeatureSchema, FeatureSpec
from sklambda.serving.validation import InstanceValidator

CELLS = st.text(alphabet=st.sampled_from(list('ab,"\n x1é')), max_size=8)  # a bare CR is no CSV text


def _chunked(data: bytes, cuts: list[int], quoted: bool) -> list[tuple[int, int, bool, int]]:
    scanner = RecordScanner(quoted)
    out = []
    previous = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts}) + [len(data)]:
        out += scanner.feed(data[previous:cut])
        previous = cut
    last = scanner.finish()
    records = out + ([last] if last else [])
    return [(r.start, r.end, r.blank, r.lines) for r in records]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300).map(lambda b: b.replace(b"\x00", b"")), st.lists(st.integers(0, 400), max_size=12))
@example(b'"\n', [])  # a quote left open at the end: its newline is still one line, not two
def test_records_do_not_depend_on_where_chunks_end(data, cuts):
    data = bytes(data)
    for quoted in (True, False):
        whole = [(r.start, r.end, r.blank, r.lines) for r in scan(data, quoted)]
        assert _chunked(data, cuts, quoted) == whole
        # records tile the bytes: nothing skipped, nothing counted twice
        ends = [e for _s, e, _b, _l in whole]
        assert [s for s, _e, _b, _l in whole] == [0, *ends[:-1]][: len(whole)]
        assert ends[-1:] == ([len(data)] if data else [])
        assert sum(lines for *_x, lines in whole) == data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(CELLS, min_size=1, max_size=4), min_size=1, max_size=8), st.sampled_from(["\n", "\r\n"]))
def test_on_well_formed_csv_each_record_is_exactly_one_csv_row(rows, terminator):
    out = io.StringIO()
    csv.writer(out, lineterminator=terminator).writerows(rows)
    data = out.getvalue().encode()
    records = scan(data, quoted=True)
    assert not any(r.blank for r in records)  # csv.writer quotes a lone empty cell: never an empty line
    texts = [data[r.start : r.end].decode().rstrip("\r\n") for r in records]
    assert [parse_csv_row(t) for t in texts] == rows
    assert CsvParser.parse(texts) == rows


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('a,"\n')), max_size=60))
def test_records_are_the_rows_pythons_csv_reader_sees_even_in_malformed_csv(text):
    """Quotes open only at a field's start, as in the csv module: a stray quote never swallows later rows."""
    data = text.encode()
    records = scan(data, quoted=True)
    pieces = [data[r.start : r.end].decode() for r in records]
    one_by_one = [row for piece in pieces for row in csv.reader([piece])]
    assert one_by_one == list(csv.reader(io.StringIO(text, newline="")))
    assert all(len(list(csv.reader([piece]))) <= 1 for piece in pieces)


def test_quoted_newlines_crlf_blank_lines_and_an_unterminated_last_row():
    data = b'a,b\r\n"x\ny",2\r\n\r\n\n3,"q""uote"\n4,"open'
    records = scan(data, quoted=True)
    assert [(r.blank, r.lines) for r in records] == [
        (False, 1),
        (False, 2),
        (True, 1),
        (True, 1),
        (False, 1),
        (False, 1),
    ]
    assert data[records[1].start : records[1].end] == b'"x\ny",2\r\n'
    assert records[-1].end == len(data)
    # JSON lines: quotes mean nothing, every newline ends a record
    assert len(scan(b'{"a": "x"}\n{"a": "\\"y"}\n\n', quoted=False)) == 3


def test_a_stray_quote_costs_one_record_not_the_rest_of_the_part():
    data = b'1,2\n3,4"5\n6,7\n'
    assert [(r.start, r.end) for r in scan(data, quoted=True)] == [(0, 4), (4, 10), (10, 14)]
    texts = ["1,2", '3,"4', "5,6", "7,8"]
    parsed = CsvParser.parse(texts)
    assert parsed[0] == ["1", "2"] and parsed[2:] == [["5", "6"], ["7", "8"]]
    assert isinstance(parsed[1], ValueError) and "CSV" in str(parsed[1])


# ----------------------------------------------------------------------------- cells
SCHEMA = FeatureSchema(
    features=[
        FeatureSpec(name="n", type="number"),
        FeatureSpec(name="i", type="integer", nullable=True),
        FeatureSpec(name="b", type="boolean"),
        FeatureSpec(name="c", type="category", categories=["x", "y"], nullable=True),
    ]
)


@pytest.mark.parametrize(
    ("kind", "cell", "value"),
    [
        ("number", "42", 42),
        ("number", "-1.5e3", -1500.0),
        ("number", "", None),
        ("number", "abc", "abc"),
        ("number", "1_000", "1_000"),  # Python-only spelling: left as text, refused by the validator
        ("number", " 7", " 7"),
        ("integer", "3.0", 3.0),
        ("boolean", "TRUE", True),
        ("boolean", "0", False),
        ("boolean", "yes", "yes"),
        ("category", "x", "x"),
        ("category", "", None),
    ],
)
def test_a_cell_becomes_the_json_value_a_client_would_send(kind, cell, value):
    spec = FeatureSpec(name="f", type=kind, categories=["x"] if kind == "category" else None)
    assert cell_converter(spec)(cell) == value


def test_converted_rows_meet_the_apis_validator_and_its_messages():
    layout_ = csv_layout(["id", "c", "b", "n", "i"], SCHEMA, "id", "test.csv")
    rows = CsvRows(layout_, SCHEMA)
    validator = InstanceValidator(SCHEMA)
    good = rows.instance(["r1", "", "true", "2.5", ""])
    matrix = validator.to_matrix([good])
    assert matrix[0][0] == 2.5 and math.isnan(matrix[0][1]) and matrix[0][2] == 1.0 and matrix[0][3] is None
    assert rows.row_id(["r1", "", "true", "2.5", ""]) == "r1"
    with pytest.raises(InvalidInput) as caught:
        validator.to_matrix([rows.instance(["r2", "z", "maybe", "abc", "1.5"])])
    messages = {field_of(d["field"]): d["message"] for d in caught.value.details}
    assert messages["n"] == "expected a number, got string"
    assert messages["b"] == "expected a boolean, got string"
    assert messages["i"].startswith("expected an integer")
    assert messages["c"].startswith("unknown category 'z'")
    assert rows.problem(["only", "three", "cells"]) == "expected 5 cells (as many as the header), got 3"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (["n", "b", "n"], "more than once"),
        (["n", "b", "extra"], "'extra' are not features"),
        (["n"], "lacks the required feature(s) 'b'"),
        (["n", "b", "c"], None),
    ],
)
def test_csv_headers_are_checked_before_anything_is_scored(header, message):
    if message is None:
        assert csv_layout(header, SCHEMA, None, "f.csv").feature_columns[1] == ("i", None)
        return
    with pytest.raises(BatchInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        csv_layout(header, SCHEMA, None, "f.csv")


def test_the_id_column_must_be_in_the_header():
    with pytest.raises(BatchInputError, match="no id column 'cid'"):
        csv_layout(DEMO_SCHEMA.names, DEMO_SCHEMA, "cid", "f.csv")


def test_a_json_array_file_is_refused_as_not_json_lines():
    with pytest.raises(BatchInputError, match="JSON array"):
        sniff_jsonl('[{"a": 1},', "f.json")
    sniff_jsonl('{"a": 1}', "f.jsonl")


# ----------------------------------------------------------------------------- requests and places
def test_inputs_and_outputs_stay_under_the_prefixes_the_functions_may_touch():
    assert layout.input_location("s3://bb/input/x.csv", "bb").key == "input/x.csv"
    for bad in (
        "s3://other/input/x.csv",
        "s3://bb/elsewhere/x.csv",
        "s3://bb/input/",
        "/tmp/x.csv",
        "s3://bb/input/../x",
    ):
        with pytest.raises(BatchInputError):
            layout.input_location(bad, "bb")
    assert layout.output_location(None, "bb", "j1").key == "output/j1/"
    assert layout.output_location("s3://bb/output/mine", "bb", "j1").key == "output/mine/"
    with pytest.raises(BatchInputError):
        layout.output_location("s3://bb/models/", "bb", "j1")
    assert layout.job_name("manual run/3 ✓") == "manual-run-3"


def test_a_malformed_request_is_one_clear_error_naming_each_field():
    with pytest.raises(BatchInputError) as caught:
        parse_request({"input": "s3://bb/input/x.csv", "model": "Bad Name", "part_rows": 0, "surprise": 1})
    fields = {d["field"] for d in caught.value.details}
    assert {"model", "part_rows", "surprise"} <= fields
    assert caught.value.status == 422
