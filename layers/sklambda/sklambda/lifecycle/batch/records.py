"""Rows in bytes: where a row ends, what a CSV header says, and a CSV cell as the value the API would get.

The planner and the scorer split bytes into records with the same :class:`RecordScanner`, so a
part's byte range always starts and ends on a row boundary and both count the same rows. A record
ends at a newline outside quotes (CSV: a quoted field may hold newlines; ``""`` is an escaped quote)
or at any newline (JSON lines). A record holding only line terminators is a blank
line: counted, never a row.

CSV cells are text; the API's validator (``serving.validation``) takes JSON values. A cell becomes
the value a JSON client would send for the feature's type: a number for ``number``/``integer``
(``42``, ``-1.5e3``), ``true``/``false`` (or ``1``/``0``) for ``boolean``, the text itself for
``category``, and ``null`` for an empty cell. Text that is not such a value stays text, so the
validator refuses it with its own message (``expected a number, got string``), as it would over HTTP.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sklambda.lifecycle.batch.models import BatchInputError, Format
from sklambda.registry.features import FeatureSchema, FeatureSpec

BOM = "\ufeff"
_INSTANCE_PREFIX = re.compile(r"^instances\[\d+\]\.?")


@dataclass(frozen=True)
class Record:
    start: int  # absolute byte offset
    end: int  # exclusive
    blank: bool
    lines: int  # physical lines it spans


_QUOTE, _COMMA, _NEWLINE = 0x22, 0x2C, 0x0A


class RecordScanner:
    """Finds where records end in bytes fed in order, chunk by chunk (a chunk may end anywhere).

    CSV quoting follows Python's csv module: a quote opens a quoted field only at the start of a
    field (after a comma or at the start of a record); inside one, ``""`` is an escaped quote and a
    lone quote closes it. A quote anywhere else is an ordinary character (``5'11"``), so a stray
    quote never swallows the rows after it.
    """

    def __init__(self, quoted: bool, offset: int = 0) -> None:
        self.quoted = quoted
        self.offset = offset  # absolute offset of the next byte to be fed
        self.record_start = offset
        self._open = False  # inside a quoted field
        self._pending = False  # inside one, the last byte fed was a quote: closing, or half of ""?
        self._last: int | None = None  # the last byte fed
        self._content = False  # the current record holds more than line terminators
        self._lines = 0

    @property
    def inside_quotes(self) -> bool:
        return self._open

    def feed(self, chunk: bytes) -> list[Record]:
        out: list[Record] = []
        pos, size, base = 0, len(chunk), self.offset
        find, quoted = chunk.find, self.quoted
        while True:
            newline = find(b"\n", pos)
            stop = size if newline < 0 else newline
            if stop > pos and not self._content and chunk[pos:stop].strip(b"\r"):
                self._content = True
            if quoted and (self._pending or (stop > pos and find(b'"', pos, stop) >= 0)):
                self._quotes(chunk, pos, stop, at_chunk_end=newline < 0)
            if newline < 0:
                break
            self._pending = False  # a quote right before the newline closed its field
            self._lines += 1
            if not self._open:
                end = base + newline + 1
                out.append(Record(self.record_start, end, not self._content, self._lines))
                self.record_start, self._content, self._lines = end, False, 0
            pos = newline + 1
        if size:
            self._last = chunk[-1]
        self.offset += size
        return out

    def _quotes(self, chunk: bytes, start: int, stop: int, *, at_chunk_end: bool) -> None:
        """Quote state through ``chunk[start:stop]`` (no newline inside)."""
        pos = start
        if self._pending:
            self._pending = False
            if pos < stop and chunk[pos] == _QUOTE:  # the second half of ""
                pos += 1
            else:
                self._open = False
        find = chunk.find
        while True:
            q = find(b'"', pos, stop)
            if q < 0:
                return
            if self._open:
                if q + 1 < stop:
                    if chunk[q + 1] == _QUOTE:  # ""
                        pos = q + 2
                        continue
                    self._open = False
                elif at_chunk_end:
                    self._pending = True  # decided by the next chunk's first byte
                else:
                    self._open = False  # right before the newline
                pos = q + 1
                continue
            if q > start:
                before: int | None = chunk[q - 1]
            else:
                before = _NEWLINE if start > 0 else self._last
            if before is None or before in (_COMMA, _NEWLINE):
                self._open = True
            pos = q + 1

    def finish(self) -> Record | None:
        """The last record when the data does not end with a line terminator (or ends inside quotes)."""
        if self.offset <= self.record_start:
            return None
        # lines counted at each newline; a last line without one (not ending inside quotes) adds one
        lines = self._lines + (0 if self._last == _NEWLINE else 1)
        record = Record(self.record_start, self.offset, not self._content, lines)
        self.record_start, self._content, self._lines, self._open, self._pending = self.offset, False, 0, False, False
        return record


def scan(data: bytes, quoted: bool, offset: int = 0) -> list[Record]:
    """Every record of ``data`` (which starts at a record boundary)."""
    scanner = RecordScanner(quoted, offset)
    records = scanner.feed(data)
    last = scanner.finish()
    if last is not None:
        records.append(last)
    return records


def decode(data: bytes, first_in_file: bool) -> str:
    """UTF-8 text of one record; a BOM at the start of a file is dropped. UnicodeDecodeError otherwise."""
    text = data.decode("utf-8")
    return text[1:] if first_in_file and text.startswith(BOM) else text


def strip_terminator(text: str) -> str:
    return text.rstrip("\r\n")


def parse_csv_row(text: str) -> list[str]:
    """The cells of one CSV record; a ValueError when the record is not one well-formed CSV row."""
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error as err:
        raise ValueError(f"not a well-formed CSV row: {err}") from None
    if len(rows) != 1:
        raise ValueError(f"not one CSV row: it reads as {len(rows)} rows (a stray quote?)")
    return rows[0]


class CsvParser:
    """Cells of many records at once (one csv reader), each record checked to be exactly one row.

    A reader pulls strings until a row is complete; ``line_num`` counts the strings pulled, so a row
    that swallowed more than its own record (or a reader error) is noticed and those records are
    parsed one by one with :func:`parse_csv_row`, which names the problem.
    """

    @staticmethod
    def parse(texts: list[str]) -> list[list[str] | ValueError]:
        out: list[list[str] | ValueError] = []
        start = 0
        while start < len(texts):
            reader = csv.reader((texts[i] for i in range(start, len(texts))), strict=True)
            done = 0
            try:
                for cells in reader:
                    if reader.line_num != done + 1:  # this row ran over several records
                        break
                    out.append(cells)
                    done += 1
            except csv.Error:
                pass
            if start + done >= len(texts):
                break
            bad = start + done
            try:
                out.append(parse_csv_row(texts[bad]))
            except ValueError as err:
                out.append(err)
            start = bad + 1
        return out


# ----------------------------------------------------------------------------- CSV headers
@dataclass(frozen=True)
class CsvLayout:
    """How a file's columns map onto the model's features (from its header row)."""

    header: tuple[str, ...]
    feature_columns: tuple[tuple[str, int | None], ...]  # (feature, column index or None when absent)
    id_index: int | None


def csv_layout(header: list[str], schema: FeatureSchema, id_column: str | None, where: str) -> CsvLayout:
    """Check a header against the schema (and the id column); a BatchInputError says what is wrong."""
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise BatchInputError(f"{where}: the header names {', '.join(map(repr, duplicates))} more than once")
    names = schema.names
    index = {name: i for i, name in enumerate(header)}
    unknown = [h for h in header if h not in names and h != id_column]
    if unknown:
        hint = " (pass it as the id column to carry it through)" if len(unknown) == 1 else ""
        raise BatchInputError(
            f"{where}: column(s) {', '.join(repr(u[:64]) for u in unknown[:10])} are not features of the model"
            f"{hint}; its features are: {', '.join(names)}"
        )
    missing = [f.name for f in schema.features if f.name not in index and not f.nullable]
    if missing:
        raise BatchInputError(f"{where}: the header lacks the required feature(s) {', '.join(map(repr, missing))}")
    if id_column is not None and id_column not in index:
        raise BatchInputError(f"{where}: the header has no id column {id_column!r}")
    return CsvLayout(
        header=tuple(header),
        feature_columns=tuple((f.name, index.get(f.name)) for f in schema.features),
        id_index=index.get(id_column) if id_column is not None else None,
    )


# ----------------------------------------------------------------------------- cells → values
def _number(cell: str) -> Any:
    """An integer's text becomes an int (so the validator's limits for integers apply, as to JSON's), any
    other number's a float."""
    if not cell:
        return None
    if "_" in cell or cell[0].isspace() or cell[-1].isspace():  # spellings only Python accepts
        return cell
    if "." not in cell and "e" not in cell and "E" not in cell:
        try:
            return int(cell)
        except ValueError:
            pass
    try:
        return float(cell)
    except ValueError:
        return cell


_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


def _boolean(cell: str) -> Any:
    if not cell:
        return None
    lowered = cell.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return cell


def _category(cell: str) -> Any:
    return cell if cell else None


def cell_converter(spec: FeatureSpec) -> Callable[[str], Any]:
    if spec.type in ("number", "integer"):
        return _number
    if spec.type == "boolean":
        return _boolean
    return _category


class CsvRows:
    """CSV cells → the instance the API's validator takes, in one of the two forms the API accepts: a list
    in the schema's order (a column the file lacks is null), or, when every feature is a plain number, an
    object keyed by feature name (which the validator checks column-wise with numpy)."""

    def __init__(self, layout: CsvLayout, schema: FeatureSchema) -> None:
        specs = {f.name: f for f in schema.features}
        self.width = len(layout.header)
        self.columns = [(name, index, cell_converter(specs[name])) for name, index in layout.feature_columns]
        self.as_object = all(f.type in ("number", "integer") and not f.nullable for f in schema.features)
        self.id_index = layout.id_index

    def instance(self, cells: list[str]) -> dict[str, Any] | list[Any]:
        if self.as_object:  # every feature is required, so every one has a column
            return {name: convert(cells[index]) for name, index, convert in self.columns if index is not None}
        return [None if index is None else convert(cells[index]) for _name, index, convert in self.columns]

    def problem(self, cells: list[str]) -> str | None:
        if len(cells) != self.width:
            return f"expected {self.width} cells (as many as the header), got {len(cells)}"
        return None

    def row_id(self, cells: list[str]) -> Any:
        if self.id_index is None or self.id_index >= len(cells):
            return None
        return cells[self.id_index]


def parse_json_row(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as err:
        raise ValueError(f"not valid JSON: {err}") from None


def field_of(detail_field: str) -> str:
    """``instances[3].age`` (the validator's field) → ``age``; ``instances[3]`` → ``""`` (the row)."""
    return _INSTANCE_PREFIX.sub("", detail_field)


def sniff_jsonl(first_record: str, where: str) -> None:
    """A JSON array file is not JSON lines: refused with a clear reason instead of rejecting every line."""
    stripped = first_record.lstrip(BOM).lstrip()
    if stripped.startswith("[") and not stripped.rstrip().endswith("]"):
        raise BatchInputError(f"{where} looks like one JSON array, not JSON lines (one object per line)")


def iter_chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def input_format_name(fmt: Format) -> str:
    return "CSV" if fmt == "csv" else "JSON lines"
