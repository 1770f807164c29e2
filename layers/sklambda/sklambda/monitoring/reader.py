"""Reading capture objects fast and exactly: gzip streams → lines → typed rows → columns per version.

The drift job reads millions of captured rows per run. ``CaptureRecord.parse_line`` (pydantic) builds
a dict per row and the aggregate then transposes the dicts: ~70k rows/s. This module keeps that
class as the one definition of the format and adds a fast path in front of it:

* **Streaming input.** An object is read from S3 in pieces and inflated incrementally (gzip, also
  several members, or plain), split into lines with the partial last line carried over: memory
  is bounded by the piece sizes, never by the object. A background thread fetches and inflates
  the next pieces (and objects) while the caller decodes, so S3 latency and zlib overlap the
  parsing (zlib and socket reads release the GIL).
* **Typed decoding (msgspec).** A line is decoded into a struct derived from ``CaptureRecord``'s
  fields and from the version's baseline features: numbers as ``int | float | None`` (booleans
  also as ``bool``), categories as ``str | None``, unknown fields refused, no field left
  unvalidated. No dict per row and no Python-level checks.
* **Columns.** Rows are buffered per model version and handed over as columns (float64 arrays
  for numeric features, lists for categorical ones) of up to ``CHUNK_ROWS`` rows, which
  ``DriftAggregate.add_columns`` bins vectorised.

Exactness, the contract the tests hold it to: the fast path *accepts* a line only when msgspec
decoded it with those types, which is a strict subset of what ``CaptureRecord`` accepts, and the
values it yields are the ones ``CaptureRecord`` yields (same JSON numbers → same ints and floats,
same strings). Every other line (malformed JSON, a wrong-typed field, an unknown field, NaN
literals, numbers out of float range, a feature of the wrong type, ...) goes to
``CaptureRecord.parse_line`` exactly as before: counted as a bad line with the same reason, or
added as a record dict through ``DriftAggregate.add_records`` (which counts invalid values and
unknown features). Aggregates are exactly mergeable, so which path a row took never shows in the
result: ``tests/unit/test_capture_reader.py`` feeds both paths the same adversarial lines.
"""

from __future__ import annotations

import gc
import operator
import os
import queue
import re
import threading
import types
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import numpy as np

from sklambda.monitoring.capture import CaptureRecord
from sklambda.monitoring.records import BadRecord

_inflate_lib: types.ModuleType
try:  # ISA-L's inflate: the same DEFLATE, about 1.7x zlib's speed (benchmarks/RESULTS.md, Capture reading)
    from isal import isal_zlib as _inflate_lib
except ImportError:  # pragma: no cover - the layer ships isal; zlib is the same format, slower
    _inflate_lib = zlib
_InflateError: type[Exception] = _inflate_lib.error

CHUNK_ROWS = 16_384  # rows per column chunk handed to the aggregate
GATHER_ROWS = 256  # typed rows transposed at a time, while they are still in the CPU cache
CANONICAL_LIMIT = 4096  # distinct values of a category feature kept as canonical strings
READ_BYTES = 1 << 20  # compressed bytes read from S3 at a time
PIECE_BYTES = 1 << 20  # inflated bytes per piece: bounds the memory of an object's text, stays in cache
PREFETCH_PIECES = 4  # pieces the background reader may hold ahead of the decoder
GZIP_MAGIC = b"\x1f\x8b"

BaselineLookup = Callable[[str, str], Mapping[str, Any] | None]

# A feature's type (registry.features) → what the fast path accepts for it. Anything else in the
# line sends the line to CaptureRecord, which keeps it and lets the aggregate count it as invalid.
_FEATURE_TYPES: dict[str, Any] = {
    "number": int | float | None,
    "integer": int | float | None,
    "boolean": bool | int | float | None,
    "category": str | None,
}
# CaptureRecord's fields other than ``features`` → the msgspec type that accepts a subset of what
# pydantic accepts for them, with the same values. A new field in CaptureRecord must be added here
# (the fast path refuses to build otherwise, and a unit test says so).
_SCALAR = bool | int | float | str | None
# Feature names msgspec can rename a field to (no quote, backslash or control character).
_NAMEABLE = re.compile(r'[^"\\\x00-\x1f]*')
_ENVELOPE_TYPES: dict[str, Any] = {
    "captured_at": str,
    "prediction_id": str | None,
    "model": str,
    "version": str,
    # Any in CaptureRecord; scalars or a flat list here (deep nesting, NaN literals → CaptureRecord)
    "prediction": _SCALAR | list[_SCALAR],
    "probabilities": list[float] | None,
}


class BodyReader(Protocol):
    def read(self, amt: int = ..., /) -> bytes: ...


class ObjectSource(Protocol):
    """Where capture objects come from (``store.CaptureStore``; files in the benchmark)."""

    def read_objects(self, keys: Iterable[str]) -> Iterator[tuple[str, Iterator[bytes]]]: ...

    def fresh(self) -> ObjectSource:
        """The same source with its own connections (for a forked process)."""
        ...


LAMBDA_MB_PER_VCPU = 1769  # Lambda gives one vCPU per 1,769 MB of memory
MIN_OBJECTS_PER_PROCESS = 3


def usable_processes() -> int:
    """Reader processes worth forking: on Lambda one per vCPU its memory buys (1 at 2,048 MB, 2 from
    3,538 MB), capped by the CPUs it sees; elsewhere 1 (locally a window is small and the CPUs
    are shared with the stack itself). Each worker aggregates its own share and hands back one
    partial (``DriftJob.read_keys``), so a second vCPU nearly doubles the rate
    (benchmarks/RESULTS.md, *Capture reading*)."""
    memory = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
    if not memory.isdigit():
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, int(memory) // LAMBDA_MB_PER_VCPU))


# ============================================================================ lines from objects
class CaptureObjectError(ValueError):
    """A capture object that cannot be inflated (corrupt or truncated gzip)."""


def inflate(reads: Iterator[bytes]) -> Iterator[bytes]:
    """Pieces of an object's text from pieces of its bytes: gzip (any number of members, zero
    padding between them, as ``gzip.decompress``) or plain text, never more than ``PIECE_BYTES``
    at once."""
    first = next(reads, b"")
    while len(first) < 2:  # the magic number can straddle two reads
        more = next(reads, None)
        if more is None:
            break
        first += more
    if first[:2] != GZIP_MAGIC:
        if first:
            yield first
        yield from reads
        return
    pending = first
    inflater = _inflate_lib.decompressobj(wbits=31)
    between = False  # after a member's end: only zero padding or a new member may follow
    while True:
        if not pending:
            pending = next(reads, b"")
            if not pending:
                break
        if between:
            pending = pending.lstrip(b"\x00")
            if not pending:
                continue
            if len(pending) < 2:
                more = next(reads, b"")
                pending += more
                if not more:
                    raise CaptureObjectError("trailing garbage after the last gzip member")
            if pending[:2] != GZIP_MAGIC:
                raise CaptureObjectError("trailing garbage after a gzip member")
            inflater, between = _inflate_lib.decompressobj(wbits=31), False
        data = pending
        while True:
            try:
                out = inflater.decompress(data, PIECE_BYTES)
            except _InflateError as err:
                raise CaptureObjectError(f"corrupt gzip data: {err}") from None
            if out:
                yield out
            data = inflater.unconsumed_tail
            if inflater.eof or (not data and len(out) < PIECE_BYTES):
                break  # a member ended, or all input so far is inflated
        if inflater.eof:
            pending, between = inflater.unused_data, True
        else:
            pending = b""
    if not between:
        raise CaptureObjectError("compressed data ended before the end of the gzip stream")


_BLANKISH_START = re.compile(rb"\n[\x00-\x20]")  # a line that is empty or starts with ASCII space/control


def split_lines(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """The non-blank lines of a text given in pieces, as ``text.split(b"\\n")`` with blank (all
    ASCII-whitespace) lines dropped: what ``CaptureStore.read_lines`` always yielded."""
    carry = b""
    for piece in pieces:
        lines = piece.split(b"\n")
        if carry:
            lines[0] = carry + lines[0]
        carry = lines.pop()
        if lines and _BLANKISH_START.search(piece) is None:  # no line after the first starts blank-ish
            head = lines[0]
            if not (head and (head[0] > 32 or head.strip())):
                del lines[0]
            yield from lines  # without a Python-level check per line
            continue
        for line in lines:
            if line and (line[0] > 32 or line.strip()):  # ASCII control/space first: check it fully
                yield line
    if carry.strip():
        yield carry


def _body_reads(body: BodyReader) -> Iterator[bytes]:
    while True:
        data = body.read(READ_BYTES)
        if not data:
            return
        yield data


def object_pieces(body: BodyReader) -> Iterator[bytes]:
    """An S3 object's text in pieces, read and inflated incrementally."""
    return inflate(_body_reads(body))


class Prefetch:
    """Iterates ``source`` in a background thread, at most ``depth`` items ahead.

    The thread does the I/O and inflating (both release the GIL) while the caller decodes.
    Exceptions in the source are re-raised to the caller in order; closing the iterator early
    stops the thread.
    """

    _DONE = object()

    def __init__(self, source: Iterable[Any], depth: int = PREFETCH_PIECES) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(iter(source),), name="capture-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, source: Iterator[Any]) -> None:
        try:
            for item in source:
                if not self._put((item, None)):
                    return
        except BaseException as err:  # handed to the consumer, raised there
            self._put((None, err))
            return
        self._put((self._DONE, None))

    def __iter__(self) -> Iterator[Any]:
        try:
            while True:
                item, error = self._queue.get()
                if error is not None:
                    raise error
                if item is self._DONE:
                    return
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# ============================================================================ decoding
@dataclass
class CaptureChunk:
    """Rows of one model version, in one of two forms (never mixed, so row ``i`` of every list
    is the same captured row):

    * ``columns``: the fast path's rows, feature name → float64 array (numeric) or list (category);
    * ``records``: rows ``CaptureRecord`` parsed, their ``features`` dicts, for ``add_records``.

    ``predictions`` and ``probabilities`` are the rows' own fields. A version without a baseline
    yields chunks with neither (``rows`` only): they are counted as skipped.
    """

    model: str
    version: str
    rows: int
    columns: dict[str, Any] | None = None
    records: list[dict[str, Any]] | None = None
    predictions: list[Any] = field(default_factory=list)
    probabilities: list[list[float] | None] = field(default_factory=list)

    def add_to(self, aggregate: Any) -> None:
        """Add the chunk's features to a ``DriftAggregate``."""
        if self.columns is not None:
            aggregate.add_columns(self.columns)
        if self.records is not None:
            aggregate.add_records(self.records)


def _envelope_fields() -> list[tuple[Any, ...]]:
    fields: list[tuple[Any, ...]] = []
    for name, info in CaptureRecord.model_fields.items():
        if name == "features":
            continue
        if name not in _ENVELOPE_TYPES:
            raise TypeError(f"CaptureRecord.{name} has no fast-path type: add it to reader._ENVELOPE_TYPES")
        if info.is_required():
            fields.append((name, _ENVELOPE_TYPES[name]))
        else:
            fields.append((name, _ENVELOPE_TYPES[name], info.default))
    return fields


_ENVELOPE = _envelope_fields()
# Routing only: which version a line belongs to (everything else skipped, never trusted).
_ROUTE: msgspec.json.Decoder[Any] = msgspec.json.Decoder(
    msgspec.defstruct("Route", [("model", str), ("version", str)], gc=False)
)


def _record_decoder(features_type: Any) -> msgspec.json.Decoder[Any]:
    required = [f for f in _ENVELOPE if len(f) == 2]
    optional = [f for f in _ENVELOPE if len(f) == 3]
    record = msgspec.defstruct(
        "FastCaptureRecord",
        [*required, ("features", features_type), *optional],
        forbid_unknown_fields=True,
        gc=False,
    )
    return msgspec.json.Decoder(record)


@dataclass(frozen=True)
class _Layout:
    """The typed decoder of one feature list (shared by versions with the same names and types)."""

    decoder: msgspec.json.Decoder[Any]
    numeric: tuple[tuple[int, str], ...]  # (position in the struct, feature name)
    categorical: tuple[tuple[int, str], ...]

    @classmethod
    def of(cls, features: tuple[tuple[str, str], ...]) -> _Layout:
        attrs = {name: f"f{i}" for i, (name, _) in enumerate(features)}
        struct = msgspec.defstruct(
            "FastFeatures",
            [(attrs[name], _FEATURE_TYPES[kind], None) for name, kind in features],
            rename={attr: name for name, attr in attrs.items()},
            forbid_unknown_fields=True,
            gc=False,
        )
        numeric = tuple((i, name) for i, (name, kind) in enumerate(features) if kind != "category")
        categorical = tuple((i, name) for i, (name, kind) in enumerate(features) if kind == "category")
        return cls(_record_decoder(struct), numeric, categorical)


_GENERIC = _record_decoder(dict[str, Any])  # versions without a baseline: validated, only counted
_astuple = msgspec.structs.astuple
_PREDICTION = operator.attrgetter("prediction")
_PROBABILITIES = operator.attrgetter("probabilities")
_FEATURES = operator.attrgetter("features")


class _GcPause:
    """Pauses the garbage collector while decoding; resumed around every hand-over to the caller."""

    def __init__(self) -> None:
        self.enabled = gc.isenabled()
        gc.disable()

    def around(self, chunks: Iterator[CaptureChunk]) -> Iterator[CaptureChunk]:
        for chunk in chunks:
            if self.enabled:
                gc.enable()
            try:
                yield chunk
            finally:
                gc.disable()

    def end(self) -> None:
        if self.enabled:
            gc.enable()


class _Version:
    """One model version's buffered rows.

    Fast rows are transposed every ``GATHER_ROWS`` rows, while their objects are still in the CPU
    cache: numeric features straight into float64 blocks, categories into lists. (Converting
    16k rows' worth of cold Python objects costs ~20x more per value than hot ones.)
    """

    __slots__ = (
        "model",
        "version",
        "layout",
        "counted",
        "fast",
        "fast_rows",
        "numeric",
        "categorical",
        "predictions",
        "probabilities",
        "slow",
        "slow_predictions",
        "slow_probabilities",
        "canonical",
    )

    def __init__(self, model: str, version: str, layout: _Layout | None) -> None:
        self.model, self.version, self.layout = model, version, layout
        self.counted = True  # False: no baseline, rows only counted (skipped)
        self.fast: list[Any] = []  # typed rows not yet transposed
        self.slow: list[dict[str, Any]] = []
        self.slow_predictions: list[Any] = []
        self.slow_probabilities: list[list[float] | None] = []
        width = len(layout.categorical) if layout is not None else 0
        self.canonical: list[dict[str | None, str | None]] = [{} for _ in range(width)]
        self._reset_fast()

    def _reset_fast(self) -> None:
        width = (len(self.layout.numeric), len(self.layout.categorical)) if self.layout is not None else (0, 0)
        self.fast_rows = 0  # rows transposed so far
        self.numeric: list[list[Any]] = [[] for _ in range(width[0])]  # per feature: float64 blocks
        self.categorical: list[list[Any]] = [[] for _ in range(width[1])]
        self.predictions: list[Any] = []
        self.probabilities: list[Any] = []

    def gather(self) -> None:
        rows, self.fast = self.fast, []
        self.fast_rows += len(rows)
        self.predictions.extend(map(_PREDICTION, rows))
        self.probabilities.extend(map(_PROBABILITIES, rows))
        if self.layout is None or not self.counted:
            return
        columns = tuple(zip(*map(_astuple, map(_FEATURES, rows)), strict=True))
        for blocks, (i, _) in zip(self.numeric, self.layout.numeric, strict=True):
            try:  # exactly what DriftAggregate does with such values (ints, floats, bools, None → NaN)
                blocks.append(np.array(columns[i], dtype=np.float64))
            except OverflowError:  # an integer beyond float range: this block goes the per-value way
                blocks.append(list(columns[i]))
        for values, canonical, (i, _) in zip(self.categorical, self.canonical, self.layout.categorical, strict=True):
            # One string object per distinct category, taken while the decoded ones are in the CPU
            # cache: the aggregate's tally then hashes a few hot, hash-cached strings instead of
            # 16,384 cold ones (equal values, so nothing else can tell).
            values.extend(map(canonical.setdefault, columns[i], columns[i]))
            if len(canonical) > CANONICAL_LIMIT:  # a high-cardinality feature: do not keep them all
                canonical.clear()

    def take_fast(self) -> CaptureChunk:
        if self.fast:
            self.gather()
        chunk = CaptureChunk(self.model, self.version, self.fast_rows, predictions=self.predictions)
        chunk.probabilities = self.probabilities
        numeric, categorical = self.numeric, self.categorical
        self._reset_fast()
        if self.layout is None or not self.counted:
            return chunk
        columns: dict[str, Any] = {}
        for blocks, (_, name) in zip(numeric, self.layout.numeric, strict=True):
            if all(isinstance(block, np.ndarray) for block in blocks):
                columns[name] = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
            else:  # a list for the aggregate's per-value path: floats from the arrays are the same values
                columns[name] = [
                    v for block in blocks for v in (block.tolist() if isinstance(block, np.ndarray) else block)
                ]
        for values, (_, name) in zip(categorical, self.layout.categorical, strict=True):
            columns[name] = values
        chunk.columns = columns
        return chunk

    def take_slow(self) -> CaptureChunk:
        chunk = CaptureChunk(self.model, self.version, len(self.slow))
        chunk.predictions, chunk.probabilities = self.slow_predictions, self.slow_probabilities
        if self.counted:
            chunk.records = self.slow
        self.slow, self.slow_predictions, self.slow_probabilities = [], [], []
        return chunk


class CaptureReader:
    """Decodes capture lines into per-version column chunks; counts lines and bad lines.

    ``baselines(model, version)`` gives a version's drift baseline (or None: its rows are only
    counted). Feed lines with ``add_lines`` (yields the chunks that filled up) and call ``finish``
    for the rest. ``lines`` and ``bad_lines`` (reason → count) are ``CaptureRecord``'s verdicts.
    """

    def __init__(self, baselines: BaselineLookup, *, chunk_rows: int = CHUNK_ROWS, fast: bool = True) -> None:
        self.baselines = baselines
        self.chunk_rows = chunk_rows
        self.fast = fast
        self.objects = 0
        self.lines = 0
        self.fast_rows = 0
        self.bad_lines: Counter[str] = Counter()
        self._versions: dict[tuple[str, str], _Version] = {}
        self._layouts: dict[tuple[tuple[str, str], ...], _Layout] = {}
        self._slow_only: set[tuple[str, str]] = set()

    def _version(self, model: str, version: str) -> _Version:
        key = (model, version)
        found = self._versions.get(key)
        if found is None:
            layout = None
            baseline = self.baselines(model, version)
            if baseline is not None:
                signature = tuple((str(f["name"]), str(f["type"])) for f in baseline["features"])
                if all(kind in _FEATURE_TYPES and _NAMEABLE.fullmatch(name) for name, kind in signature):
                    layout = self._layouts.get(signature)
                    if layout is None:
                        layout = self._layouts[signature] = _Layout.of(signature)
                else:  # a feature type it does not know, a name msgspec cannot match: CaptureRecord decides
                    self._slow_only.add(key)
            found = self._versions[key] = _Version(model, version, layout)
            found.counted = baseline is not None
        return found

    def add_lines(self, lines: Iterable[bytes]) -> Iterator[CaptureChunk]:
        """Decode ``lines`` (non-blank, without their newline); yields every chunk that filled up.

        The garbage collector is paused while lines are decoded (typed rows hold no reference
        cycles: refcounting frees them) and resumed whenever a chunk is handed out.
        """
        if not self.fast:
            for line in lines:
                self.lines += 1
                yield from self._slow(line)
            return
        chunk_rows = self.chunk_rows
        current: _Version | None = None
        model = version = None  # current's, as locals: compared on every line
        decode = _GENERIC.decode
        rows: list[Any] = []
        append = rows.append
        room = GATHER_ROWS
        count = 0
        paused = _GcPause()
        try:
            for line in lines:
                count += 1
                try:
                    row = decode(line)
                except Exception:  # any refusal of the fast path: CaptureRecord decides
                    row = None
                if row is None or row.model != model or row.version != version:
                    row, target = self._route(line, row, current)
                    if row is None or target is None:
                        yield from paused.around(self._slow(line))
                        continue
                    if target is not current:
                        current, model, version = target, target.model, target.version
                        decode = (target.layout.decoder if target.layout is not None else _GENERIC).decode
                        rows = current.fast
                        append, room = rows.append, GATHER_ROWS - len(rows)
                append(row)
                room -= 1
                if not room:
                    assert current is not None
                    current.gather()
                    rows = current.fast
                    append, room = rows.append, GATHER_ROWS
                    if current.fast_rows >= chunk_rows:
                        self.fast_rows += current.fast_rows
                        yield from paused.around(iter((current.take_fast(),)))
        finally:
            self.lines += count
            paused.end()

    def _route(self, line: bytes, row: Any, current: _Version | None) -> tuple[Any, _Version | None]:
        """``line``'s typed row decoded with its own version's decoder (reusing ``row`` when that
        decoder is the one that produced it), or (None, _): CaptureRecord decides."""
        if row is None:
            try:
                route: Any = _ROUTE.decode(line)
            except Exception:  # CaptureRecord decides
                return None, None
            model, version = route.model, route.version
        else:
            model, version = row.model, row.version
        target = self._version(model, version)
        if (model, version) in self._slow_only:
            return None, target
        if row is not None and current is not None and target.layout is current.layout:
            return row, target  # decoded by the very decoder this version uses
        decoder = target.layout.decoder if target.layout is not None else _GENERIC
        try:
            typed = decoder.decode(line)
        except Exception:  # CaptureRecord decides
            return None, target
        if typed.model != model or typed.version != version:  # routing read another key than the decode
            return None, target
        return typed, target

    def _slow(self, line: bytes) -> Iterator[CaptureChunk]:
        try:
            record = CaptureRecord.parse_line(line)
        except BadRecord as bad:
            self.bad_lines[bad.reason] += 1
            return
        target = self._version(record.model, record.version)
        target.slow.append(record.features)
        target.slow_predictions.append(record.prediction)
        target.slow_probabilities.append(record.probabilities)
        if len(target.slow) >= self.chunk_rows:
            yield target.take_slow()

    def read(self, store: ObjectSource, keys: list[str]) -> Iterator[CaptureChunk]:
        """Every chunk of the objects ``keys``, in order (``objects``, ``lines``, ``bad_lines`` counted).
        ``DriftJob.read_keys`` spreads the keys over worker processes when there are CPUs for them."""
        for _key, lines in store.read_objects(keys):
            yield from self.add_lines(lines)
            self.objects += 1
        yield from self.finish()

    def finish(self) -> Iterator[CaptureChunk]:
        """The rows still buffered, per version (in first-seen order)."""
        for target in self._versions.values():
            if target.fast or target.fast_rows:
                self.fast_rows += target.fast_rows + len(target.fast)
                yield target.take_fast()
            if target.slow:
                yield target.take_slow()
