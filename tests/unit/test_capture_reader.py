"""The fast capture reader (monitoring/reader.py) against CaptureRecord, the one definition of the
format: the same adversarial lines through both paths give the same line counts, the same bad-line
reasons and the very same aggregates; a line the fast path accepts is one CaptureRecord accepts,
with the same values. Plus the streaming pieces under it: gzip members, padding, piece boundaries."""

from __future__ import annotations

import gzip
import json
import math
import random
import zlib

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sklambda.monitoring.capture import CaptureRecord
from sklambda.monitoring.drift import DriftAggregate, baseline_profile
from sklambda.monitoring.reader import (
    PIECE_BYTES,
    CaptureObjectError,
    CaptureReader,
    Prefetch,
    _envelope_fields,
    _Layout,
    inflate,
    split_lines,
)
from sklambda.monitoring.records import BadRecord
from sklambda.registry.features import FeatureSchema, FeatureSpec

SCHEMA = FeatureSchema(
    features=[
        FeatureSpec(name="age", type="integer"),
        FeatureSpec(name="income (€)", type="number", nullable=True),
        FeatureSpec(name="late", type="boolean"),
        FeatureSpec(name="plan", type="category", categories=["basic", "pro"], nullable=True),
    ]
)
QUOTED = FeatureSchema(
    features=[FeatureSpec(name='odd "name"', type="number"), FeatureSpec(name="b\\c", type="number")]
)
OTHER = FeatureSchema(features=[FeatureSpec(name="age", type="category", categories=["young", "old"])])


def _baseline(schema: FeatureSchema, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    n = 400
    columns = []
    for spec in schema.features:
        if spec.type == "category":
            columns.append(rng.choice(spec.categories, n).astype(object))
        elif spec.type == "boolean":
            columns.append(rng.integers(0, 2, n).astype(float))
        elif spec.type == "integer":
            columns.append(rng.integers(18, 80, n).astype(float))
        else:
            columns.append(rng.normal(100, 30, n))
    return baseline_profile(np.column_stack(columns).astype(object), schema)


BASELINES = {
    ("demo", "1"): _baseline(SCHEMA, 1),
    ("demo", "2"): _baseline(SCHEMA, 1),
    ("other", "1"): _baseline(OTHER, 2),
    ("quoted", "1"): _baseline(QUOTED, 3),
}


def lookup(model: str, version: str):
    return BASELINES.get((model, version))


def good(i: int, model: str = "demo", version: str = "1") -> bytes:
    features = {
        "age": 20 + i % 50,
        "income (€)": round(1000.5 + i * 3.25, 2),
        "late": i % 3 == 0,
        "plan": ["basic", "pro", None, "gold"][i % 4],
    }
    return (
        CaptureRecord(
            captured_at="2026-11-23T06:00:00.123Z",
            prediction_id=f"p-{i}",
            model=model,
            version=version,
            features=features,
            prediction=i % 2,
            probabilities=[0.25, 0.75],
        )
        .to_json_line()
        .rstrip(b"\n")
    )


ENVELOPE = b'"model":"demo","version":"1"'
ADVERSARIAL = [
    b"{not json",
    b"[1,2]",
    b'"text"',
    b"null",
    b"{}",
    b'{"model":"demo","features":{}}',
    b'{"model":5,"version":"1","features":{}}',
    b'{"model":"demo","version":"1","features":"x"}',
    b"{" + ENVELOPE + b',"features":{},"probabilities":"x"}',
    b"{" + ENVELOPE + b',"features":{"age":"old","zz":[1]}}',  # wrong type + unknown feature: counted
    b"{" + ENVELOPE + b',"features":{"age":true}}',
    b"{" + ENVELOPE + b',"features":{"age":1.5}}',
    b"{" + ENVELOPE + b',"features":{"age":1e400}}',
    b"{" + ENVELOPE + b',"features":{"age":NaN}}',
    b"{" + ENVELOPE + b',"features":{"age":-0}}',
    b"{" + ENVELOPE + b',"features":{"income (\xe2\x82\xac)":-0.0}}',
    b"{" + ENVELOPE + b',"features":{"age":123456789012345678901234567890}}',
    b"{" + ENVELOPE + b',"features":{"age":' + b"9" * 400 + b"}}",
    b"{" + ENVELOPE + b',"features":{"age":9007199254740993}}',
    b"{" + ENVELOPE + b',"features":{"late":2}}',
    b"{" + ENVELOPE + b',"features":{"late":1.0,"plan":5}}',
    b"{" + ENVELOPE + b',"features":{"plan":"gold"}}',
    b"{" + ENVELOPE + b',"features":{"plan":["pro"]}}',
    b"{" + ENVELOPE + b',"features":{"age":1,"age":"x"}}',
    b"{" + ENVELOPE + b',"features":{"age":"x","age":2}}',
    b"{" + ENVELOPE + b',"features":{"\\u0061ge":33}}',
    b"{" + ENVELOPE + b',"features":{"age":1},"features":{"zz":2}}',
    b"{" + ENVELOPE + b',"features":{"plan":"\xff"}}',
    b"{" + ENVELOPE + b',"features":{},"zz":"\xff"}',
    b"{" + ENVELOPE + b',"features":{},"zz":NaN}',
    b"{" + ENVELOPE + b',"features":{},"zz":01}',
    b"{" + ENVELOPE + b',"features":{},"prediction":NaN}',
    b"{" + ENVELOPE + b',"features":{},"prediction":Infinity}',
    b"{" + ENVELOPE + b',"features":{},"prediction":1e400}',
    b"{" + ENVELOPE + b',"features":{},"prediction":' + b"[" * 300 + b"]" * 300 + b"}",
    b"{" + ENVELOPE + b',"features":{},"prediction":{"a":[1,{"b":null}]}}',
    b"{" + ENVELOPE + b',"features":{},"probabilities":[true]}',
    b"{" + ENVELOPE + b',"features":{},"probabilities":["0.5"]}',
    b"{" + ENVELOPE + b',"features":{},"probabilities":[1]}',
    b"{" + ENVELOPE + b',"features":{},"captured_at":null}',
    b"{" + ENVELOPE + b',"features":{},"prediction_id":5}',
    b"{" + ENVELOPE + b',"features":{"plan":"\\ud800"}}',
    b"{" + ENVELOPE + b',"features":{"plan":"\\ud83d\\ude00"}}',
    b"{" + ENVELOPE + b',"features":{"plan":"a\\"b"}}',
    b"{" + ENVELOPE + b',"features":{"age":1}} x',
    b"{" + ENVELOPE + b',"features":{"age":1}}\r',
    b" {" + ENVELOPE + b',"features":{}} ',
    b"{" + ENVELOPE + b',"features":{"age":1}}\x0c',
    b"\xef\xbb\xbf{" + ENVELOPE + b',"features":{}}',
    b"\x01",
    b'{"model":"demo","model":"ghost","version":"1","features":{"age":3}}',
    b'{"model":"ghost","version":"1","features":{"age":3}}',
    b'{"model":"ghost","version":"1","features":"x"}',
    b'{"model":"../../x","version":"1","features":{"a":1}}',
    b'{"model":"other","version":"1","features":{"age":"young"}}',
    b'{"model":"other","version":"1","features":{"age":30}}',
    b'{"model":"demo","version":"2","features":{"age":30,"plan":"pro"}}',
    b'{"model":"quoted","version":"1","features":{"odd \\"name\\"":2.5,"b\\\\c":1}}',
    b'{"model":"quoted","version":"1","features":{"odd \\"name\\"":"x"}}',
]


def run(lines: list[bytes], *, fast: bool, chunk_rows: int = 7) -> tuple[CaptureReader, dict, dict]:
    reader = CaptureReader(lookup, chunk_rows=chunk_rows, fast=fast)
    aggregates: dict = {}
    skipped: dict = {}
    for chunk in [*reader.add_lines(lines), *reader.finish()]:
        baseline = lookup(chunk.model, chunk.version)
        if baseline is None:
            skipped[(chunk.model, chunk.version)] = skipped.get((chunk.model, chunk.version), 0) + chunk.rows
            assert chunk.columns is None and chunk.records is None
            continue
        chunk.add_to(aggregates.setdefault((chunk.model, chunk.version), DriftAggregate(baseline)))
        assert len(chunk.predictions) == len(chunk.probabilities) == chunk.rows
    return reader, {k: a.to_dict() for k, a in aggregates.items()}, skipped


@pytest.mark.parametrize("chunk_rows", [1, 7, 5000])
def test_both_paths_read_the_same_adversarial_lines_identically(chunk_rows):
    lines = [good(i) for i in range(40)] + ADVERSARIAL + [good(i, version="2") for i in range(5)] + [good(99)]
    random.Random(chunk_rows).shuffle(lines)
    fast, fast_aggs, fast_skipped = run(lines, fast=True, chunk_rows=chunk_rows)
    slow, slow_aggs, slow_skipped = run(lines, fast=False, chunk_rows=chunk_rows)
    assert fast.lines == slow.lines == len(lines)
    assert fast.bad_lines == slow.bad_lines and sum(fast.bad_lines.values()) >= 10
    assert fast_skipped == slow_skipped and fast_skipped
    assert fast_aggs == slow_aggs
    assert fast.fast_rows >= 46, "the well-formed lines took the fast path"
    demo = fast_aggs[("demo", "1")]
    assert demo["features"]["age"]["invalid"] >= 5 and demo["unknown_fields_total"] >= 1


def test_each_adversarial_line_alone_gets_capture_records_verdict():
    for line in ADVERSARIAL:
        fast, fast_aggs, fast_skipped = run([line], fast=True)
        slow, slow_aggs, slow_skipped = run([line], fast=False)
        assert (fast.bad_lines, fast_aggs, fast_skipped) == (slow.bad_lines, slow_aggs, slow_skipped), line


def test_versions_interleaved_like_a_canary_are_routed_to_their_own_aggregates():
    lines = [good(i, version="2" if i % 10 == 3 else "1") for i in range(300)]
    lines += [b'{"model":"other","version":"1","features":{"age":"old"}}'] * 3
    fast, fast_aggs, _ = run(lines, fast=True, chunk_rows=64)
    _, slow_aggs, _ = run(lines, fast=False, chunk_rows=64)
    assert fast_aggs == slow_aggs and fast.fast_rows == len(lines)
    assert fast_aggs[("demo", "2")]["rows"] == 30 and fast_aggs[("other", "1")]["rows"] == 3


def test_every_capture_record_field_has_a_fast_path_type():
    names = [f[0] for f in _envelope_fields()]
    assert sorted([*names, "features"]) == sorted(CaptureRecord.model_fields)


# ----------------------------------------------------------------------------- property tests
_layout = _Layout.of(tuple((f.name, f.type) for f in SCHEMA.features))
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)
keys = st.sampled_from([f.name for f in SCHEMA.features] + ["captured_at", "zz", "model", "version", "prediction"])


@st.composite
def capture_lines(draw) -> bytes:
    document: dict = {}
    if draw(st.booleans()):
        document["model"] = draw(st.sampled_from(["demo", "demo", 3, None]))
    if draw(st.integers(0, 9)):
        document["version"] = draw(st.sampled_from(["1", "1", 1]))
    features = {draw(keys): draw(json_values) for _ in range(draw(st.integers(0, 6)))}
    document["features"] = draw(st.sampled_from([features, features, features, "x", None]))
    for name in ("captured_at", "prediction_id", "prediction", "probabilities", "zz"):
        if draw(st.booleans()):
            document[name] = draw(json_values)
    text = json.dumps(document, ensure_ascii=draw(st.booleans())).encode()
    if draw(st.integers(0, 4)) == 0:  # a byte-level mutation
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from([b"", b",", b"}", b"NaN", b"\xff", b"\\", b"0", b" ", b'"']))
        text += text[at + draw(st.integers(0, 2)) :]
    return text


@settings(max_examples=400, deadline=None)
@given(capture_lines())
def test_what_the_fast_path_accepts_capture_record_accepts_with_the_same_values(line):
    try:
        typed = _layout.decoder.decode(line)
    except Exception:
        return  # refused: CaptureRecord decides, as the reader does
    try:
        record = CaptureRecord.parse_line(line)
    except BadRecord as bad:
        pytest.fail(f"fast path accepted a line CaptureRecord refuses ({bad.reason}): {line!r}")
    assert (typed.model, typed.version, typed.prediction_id, typed.captured_at) == (
        record.model,
        record.version,
        record.prediction_id,
        record.captured_at,
    )
    assert repr(typed.prediction) == repr(record.prediction) and typed.probabilities == record.probabilities
    values = msgspec.structs.astuple(typed.features)
    for (name, _), value in zip(((f.name, f.type) for f in SCHEMA.features), values, strict=True):
        theirs = record.features.get(name)
        assert type(value) is type(theirs) and repr(value) == repr(theirs), name
    assert set(record.features) <= {f.name for f in SCHEMA.features}


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.from_regex(r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][-+]?[0-9]{1,3})?", fullmatch=True),
    )
)
def test_numbers_decode_to_the_same_float_or_int_as_capture_record(text):
    line = b'{"model":"demo","version":"1","features":{"income (\xe2\x82\xac)":' + text.encode() + b"}}"
    record = CaptureRecord.parse_line(line)
    try:
        typed = _layout.decoder.decode(line)
    except msgspec.ValidationError:
        value = record.features["income (€)"]
        assert isinstance(value, float) and math.isinf(value) or abs(value) > 1e300 or isinstance(value, int)
        return
    ours = msgspec.structs.astuple(typed.features)[1]
    theirs = record.features["income (€)"]
    assert type(ours) is type(theirs) and repr(ours) == repr(theirs)


# ----------------------------------------------------------------------------- streams
def _reads(data: bytes, size: int):
    return iter([data[i : i + size] for i in range(0, len(data), size)])


@pytest.mark.parametrize("size", [1, 2, 3, 1000, 1 << 20])
def test_inflate_matches_gzip_decompress_for_members_padding_and_plain_text(size):
    text = b"".join(good(i) + b"\n" for i in range(300))
    member = gzip.compress(text[:10_000])
    data = member + b"\x00" * 5 + gzip.compress(text[10_000:]) + b"\x00\x00"
    assert b"".join(inflate(_reads(data, size))) == gzip.decompress(data) == text
    assert b"".join(inflate(_reads(text, size))) == text
    assert b"".join(inflate(_reads(b"", size))) == b""


def test_inflate_refuses_what_gzip_refuses():
    data = gzip.compress(b'{"a":1}\n' * 100)
    for broken in (data[:-5], data + b"garbage", data[:20] + b"\x00" * 10 + data[30:]):
        with pytest.raises((OSError, EOFError, zlib.error)):
            gzip.decompress(broken)
        with pytest.raises(CaptureObjectError):
            b"".join(inflate(_reads(broken, 7)))


def test_inflate_bounds_its_pieces():
    data = gzip.compress(b"x" * (9 << 20))
    pieces = list(inflate(_reads(data, 1 << 20)))
    assert len(pieces) >= 9 and max(map(len, pieces)) <= PIECE_BYTES


@given(
    st.lists(st.sampled_from([b"a", b"\n", b" ", b"\r", b"\x0c", b"{}", b"\t", b"b"]), max_size=40), st.integers(1, 5)
)
def test_split_lines_is_split_with_blank_lines_dropped_whatever_the_pieces(parts, size):
    text = b"".join(parts)
    expected = [line for line in text.split(b"\n") if line.strip()]
    assert list(split_lines(_reads(text, size))) == expected


def test_prefetch_hands_over_items_and_errors_in_order():
    def source():
        yield 1
        yield 2
        raise ValueError("boom")

    seen = []
    with pytest.raises(ValueError, match="boom"):
        for item in Prefetch(source()):
            seen.append(item)
    assert seen == [1, 2]
    stream = iter(Prefetch(iter(range(10_000)), depth=2))
    assert next(stream) == 0
    stream.close()  # stops the thread


def test_store_and_reader_together_stream_objects(tmp_path):
    text = b"".join(good(i) + b"\n" for i in range(100))
    pieces = inflate(_reads(gzip.compress(text), 64))
    reader = CaptureReader(lookup)
    chunks = [*reader.add_lines(split_lines(pieces)), *reader.finish()]
    assert sum(c.rows for c in chunks) == 100 and reader.lines == 100 and not reader.bad_lines


# ----------------------------------------------------------------------------- worker processes
class MemorySource:
    """Capture objects in memory, gzipped, read the way CaptureStore reads S3 objects."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def read_objects(self, keys):
        for key in keys:
            yield key, split_lines(inflate(_reads(self.objects[key], 1000)))

    def fresh(self) -> MemorySource:
        return self


def _objects(count: int) -> dict[str, bytes]:
    objects = {}
    for i in range(count):
        lines = [good(j, version="2" if j % 9 == 0 else "1") for j in range(i * 50, i * 50 + 50)]
        lines += ADVERSARIAL[i::count]
        objects[f"captures/obj-{i:02d}"] = gzip.compress(b"\n".join(lines) + b"\n")
    return objects


def _read_all(source, keys, processes, asked=None):
    """What a drift run counts from ``keys`` (DriftJob.read_keys): aggregates and the summary's counts.
    ``asked`` collects the versions whose baseline this process was asked for."""
    from sklambda.monitoring.drift import DriftConfig
    from sklambda.monitoring.drift_job import DriftJob, RunSummary

    def recording(model, version):
        if asked is not None:
            asked.append((model, version))
        return lookup(model, version)

    job = DriftJob(source, recording, DriftConfig())
    aggregates: dict = {}
    summary = RunSummary(run_id="x", started_at="", window_start="", window_end="")
    job.read_keys(keys, aggregates, summary, processes=processes)
    counts = (summary.objects_read, summary.lines_read, summary.rows_counted, summary.bad_lines, summary.skipped_rows)
    return {k: a.to_dict() for k, a in aggregates.items()}, counts


@pytest.mark.parametrize("processes", [2, 3])
def test_worker_processes_count_exactly_what_one_process_counts(processes):
    source = MemorySource(_objects(13))
    keys = sorted(source.objects)
    expected = _read_all(source, keys, 1)
    asked: list = []
    assert _read_all(source, keys, processes, asked) == expected
    # the workers got every version's references from this process (its clients), once each
    assert sorted(asked) == sorted(set(asked)) and {("demo", "1"), ("demo", "2")} <= set(asked)
    aggregates, (objects, lines, rows, bad_lines, skipped) = expected
    assert objects == 13 and lines == 709 and rows == 685 and sum(bad_lines.values()) == 21
    assert set(aggregates) == {("demo", "1"), ("demo", "2"), ("other", "1"), ("quoted", "1")}
    assert skipped == {"ghost v1: no baseline": 2, "../../x v1: no baseline": 1}


def test_a_worker_that_fails_fails_the_read():
    objects = _objects(8)
    objects["captures/obj-03"] = objects["captures/obj-03"][:-9]  # truncated gzip
    source = MemorySource(objects)
    assert _read_all(MemorySource(_objects(8)), sorted(objects), 2)[1][0] == 8  # the control: it reads
    with pytest.raises(CaptureObjectError):
        _read_all(source, sorted(objects), 2)
