"""Batch step 2, one Distributed Map child per part: read its byte range, validate every row with the
API's rules, score the valid ones with the pinned version, write predictions and rejects, then commit.

- **Same model path as the API.** The version is loaded once per execution environment with
  ``serving.loader.load_version`` (sha256-verified, lean runtime when the manifest accepted it) and
  rows are checked by its ``InstanceValidator``; CSV cells are first turned into the JSON values a
  client would send (``records``). Rows are scored in order, in chunks; nothing goes to the capture
  stream (batch rows are not live traffic).
- **Every row accounted for.** A row the validator refuses goes to ``rejects/part-NNNNN.jsonl`` with
  its row and line numbers, each field's reason and the raw text; it never fails the part. The part
  record (``parts/part-NNNNN.json``), written last, says rows in = scored + rejected, and is only
  written when that holds and equals the plan's count for the part.
- **Idempotent by part.** A part whose record exists is skipped (nothing scored twice); outputs are
  created with ``If-None-Match`` and an existing file with other bytes is a ``BatchConflict``, never
  overwritten. A failed attempt leaves an error record (``_job/errors/``) for the finalize step.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import resource
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sklambda.core.errors import InvalidInput
from sklambda.lifecycle.batch import layout
from sklambda.lifecycle.batch.models import (
    BatchInputError,
    FileRef,
    JobContext,
    PartItem,
    PartRecord,
    ScoreInput,
    ScoreResult,
)
from sklambda.lifecycle.batch.records import (
    CsvLayout,
    CsvParser,
    CsvRows,
    Record,
    csv_layout,
    decode,
    field_of,
    iter_chunks,
    parse_json_row,
    scan,
    strip_terminator,
)
from sklambda.lifecycle.batch.store import BatchStore
from sklambda.registry.manifest import utcnow
from sklambda.registry.store import ModelRegistry
from sklambda.serving.loader import LoadedModel, load_version
from sklambda.serving.validation import InstanceValidator

CHUNK_ROWS = 5_000
MAX_CACHED_MODELS = 4

EventSink = Callable[[str, dict[str, Any]], None]


def _ignore(_event: str, _fields: dict[str, Any]) -> None:
    return None


class ModelCache:
    """Versions loaded in this execution environment: each (model, version) is fetched, verified and
    deserialised once, then reused by every part this environment scores."""

    def __init__(self, registry: ModelRegistry, *, on_event: EventSink = _ignore) -> None:
        self.registry = registry
        self._models: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._on_event = on_event
        self.loads = 0

    def get(self, name: str, version: str) -> LoadedModel:
        key = (name, version)
        found = self._models.get(key)
        if found is not None:
            self._models.move_to_end(key)
            return found
        started = time.perf_counter()
        model = load_version(self.registry, self.registry.get_manifest(name, version))
        self.loads += 1
        self._on_event(
            "BatchModelLoaded",
            {"model": name, "version": version, "runtime": model.runtime, "ms": (time.perf_counter() - started) * 1e3},
        )
        self._models[key] = model
        while len(self._models) > MAX_CACHED_MODELS:
            self._models.popitem(last=False)
        return model


@dataclass
class _Row:
    number: int  # data row number in its file (1-based)
    line: int  # physical line number in its file (1-based)
    raw: str
    instance: Any = None
    row_id: Any = None
    cells: list[str] | None = None
    problems: list[dict[str, Any]] | None = None
    prediction: Any = None
    probabilities: list[float] | None = None


class PartScorer:
    def __init__(
        self,
        store: BatchStore,
        models: ModelCache,
        *,
        clock: Callable[[], float] = time.time,
        on_event: EventSink = _ignore,
    ) -> None:
        self.store = store
        self.models = models
        self._clock = clock
        self._on_event = on_event

    def score(self, step: ScoreInput) -> ScoreResult:
        job, part = step.job, step.part
        existing = self.store.get_json(layout.record_key(job.output_prefix, part.part))
        if existing is not None:
            done = PartRecord.model_validate(existing)
            return ScoreResult(
                part=part.part, rows_in=done.rows_in, scored=done.scored, rejected=done.rejected, skipped=True
            )
        try:
            record, wrote = self._score(step)
        except Exception as err:
            self._record_error(step, err)
            raise
        return ScoreResult(
            part=part.part, rows_in=record.rows_in, scored=record.scored, rejected=record.rejected, skipped=not wrote
        )

    # ------------------------------------------------------------------------------ pieces
    def _score(self, step: ScoreInput) -> tuple[PartRecord, bool]:
        job, part = step.job, step.part
        started, started_at = self._clock(), utcnow()
        model = self.models.get(job.model, job.version)
        data = self.store.read_range(part.key, part.start, part.end, part.etag)
        records = scan(data, quoted=job.input_format == "csv", offset=part.start)
        rows = self._rows(job, part, data, records)
        blank = sum(1 for r in records if r.blank)
        if len(rows) != part.rows or blank != part.blank_lines:
            raise BatchInputError(
                f"part {part.part} of s3://{job.bucket}/{part.key}: read {len(rows)} rows and {blank} blank lines "
                f"where the plan counted {part.rows} and {part.blank_lines}"
            )
        self._predict(model, rows)
        scored = [r for r in rows if r.problems is None]
        rejected = [r for r in rows if r.problems is not None]
        has_proba = job.task == "classification" and hasattr(model.estimator, "predict_proba")
        prefix = job.output_prefix
        body = self._predictions(job, part, scored, has_proba)
        predictions = FileRef(
            key=layout.predictions_key(prefix, part.part, job.output_format),
            bytes=len(body),
            sha256=hashlib.sha256(body).hexdigest(),
        )
        content_type = "text/csv" if job.output_format == "csv" else "application/x-ndjson"
        self.store.put_new(predictions.key, body, content_type)
        rejects = None
        if rejected:
            body = self._rejects(job, part, rejected)
            rejects = FileRef(
                key=layout.rejects_key(prefix, part.part), bytes=len(body), sha256=hashlib.sha256(body).hexdigest()
            )
            self.store.put_new(rejects.key, body, "application/x-ndjson")
        if len(scored) + len(rejected) != len(rows):  # the invariant the record states
            raise RuntimeError(f"part {part.part}: {len(scored)} scored + {len(rejected)} rejected != {len(rows)} rows")
        record = PartRecord(
            part=part.part,
            key=part.key,
            start=part.start,
            end=part.end,
            version=model.version,
            rows=part.rows,
            rows_in=len(rows),
            scored=len(scored),
            rejected=len(rejected),
            blank_lines=blank,
            predictions=predictions,
            rejects=rejects,
            attempt=step.attempt,
            started_at=started_at,
            seconds=round(self._clock() - started, 3),
            peak_rss_mb=_peak_rss_mb(),
            execution=step.execution,
        )
        text = record.model_dump_json(indent=1).encode()
        wrote = self.store.create(layout.record_key(prefix, part.part), text, "application/json")
        if not wrote:  # a concurrent run of the same job committed this part first (same outputs)
            record = PartRecord.model_validate(self.store.get_json(layout.record_key(prefix, part.part)))
        fields = {"model": job.model, "version": job.version, "part": part.part, "rows": len(rows)}
        fields.update(scored=len(scored), rejected=len(rejected), seconds=record.seconds, attempt=step.attempt)
        self._on_event("BatchPartScored", fields)
        return record, wrote

    def _rows(self, job: JobContext, part: PartItem, data: bytes, records: list[Record]) -> list[_Row]:
        rows: list[_Row] = []
        line, number = part.first_line, part.first_row
        try:  # plain ASCII (the common case): characters are bytes, one decode for the whole part
            whole: str | None = data.decode("ascii")
        except UnicodeDecodeError:
            whole = None
        for record in records:
            if record.blank:
                line += record.lines
                continue
            a, b = record.start - part.start, record.end - part.start
            if whole is not None:
                rows.append(_Row(number, line, strip_terminator(whole[a:b])))
                number += 1
                line += record.lines
                continue
            raw = data[a:b]
            try:
                text = strip_terminator(decode(raw, first_in_file=record.start == 0))
                row = _Row(number, line, text)
            except UnicodeDecodeError as err:
                row = _Row(number, line, strip_terminator(raw.decode("utf-8", "backslashreplace")))
                row.problems = [{"field": "", "message": f"not UTF-8 text ({err.reason} at byte {err.start})"}]
            rows.append(row)
            number += 1
            line += record.lines
        if job.input_format == "csv":
            self._csv_instances(job, part, rows)
        else:
            self._json_instances(job, rows)
        return rows

    def _csv_instances(self, job: JobContext, part: PartItem, rows: list[_Row]) -> None:
        if part.header is None:
            raise BatchInputError(f"part {part.part} of a CSV file has no header in its plan")
        model = self.models.get(job.model, job.version)
        where = f"s3://{job.bucket}/{part.key}"
        columns: CsvLayout = csv_layout(part.header, model.manifest.schema, job.id_column, where)
        converter = CsvRows(columns, model.manifest.schema)
        readable = [r for r in rows if r.problems is None]
        for row, cells in zip(readable, CsvParser.parse([r.raw for r in readable]), strict=True):
            if isinstance(cells, ValueError):
                row.problems = [{"field": "", "message": str(cells)}]
                continue
            row.cells = cells
            row.row_id = converter.row_id(cells)
            problem = converter.problem(cells)
            if problem is not None:
                row.problems = [{"field": "", "message": problem}]
                continue
            row.instance = converter.instance(cells)

    def _json_instances(self, job: JobContext, rows: list[_Row]) -> None:
        for row in rows:
            if row.problems is not None:
                continue
            try:
                row.instance = parse_json_row(row.raw)
            except ValueError as err:
                row.problems = [{"field": "", "message": str(err)}]
                continue
            if job.id_column is not None and isinstance(row.instance, dict):
                row.row_id = row.instance.pop(job.id_column, None)

    def _predict(self, model: LoadedModel, rows: list[_Row]) -> None:
        candidates = [r for r in rows if r.problems is None]
        for chunk in iter_chunks(candidates, CHUNK_ROWS):
            for valid, matrix in _validated(model.validator, chunk):
                labels, probabilities = model.predict(matrix)
                for i, row in enumerate(valid):
                    row.prediction = labels[i]
                    if probabilities is not None:
                        row.probabilities = probabilities[i]

    # ------------------------------------------------------------------------------ output
    def _predictions(self, job: JobContext, part: PartItem, rows: list[_Row], has_proba: bool) -> bytes:
        classes = job.classes or []
        if job.output_format == "csv":
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            header = ["row"] + (["file"] if job.multi_file else []) + ([job.id_column] if job.id_column else [])
            header += ["prediction"] + ([f"probability_{_text(c)}" for c in classes] if has_proba else [])
            writer.writerow(header)
            lead = [part.key] if job.multi_file else []
            with_id = job.id_column is not None
            for r in rows:
                cells: list[Any] = [r.number, *lead]
                if with_id:
                    cells.append(r.row_id)
                cells.append(_text(r.prediction))
                if has_proba and r.probabilities is not None:
                    cells.extend(r.probabilities)
                writer.writerow(cells)
            return out.getvalue().encode()
        lines = []
        for r in rows:
            item: dict[str, Any] = {"row": r.number}
            if job.multi_file:
                item["file"] = part.key
            if job.id_column is not None:
                item[job.id_column] = r.row_id
            item["prediction"] = r.prediction
            if has_proba and r.probabilities is not None:
                item["probabilities"] = r.probabilities
            lines.append(json.dumps(item, separators=(",", ":"), allow_nan=False))
        return ("\n".join(lines) + "\n").encode() if lines else b""

    def _rejects(self, job: JobContext, part: PartItem, rows: list[_Row]) -> bytes:
        index = {name: i for i, name in enumerate(part.header or [])}
        lines = []
        for r in rows:
            errors = []
            for problem in r.problems or []:
                entry = dict(problem)
                column = index.get(entry["field"])
                if r.cells is not None and column is not None and column < len(r.cells):
                    entry["value"] = r.cells[column]
                errors.append(entry)
            item: dict[str, Any] = {"row": r.number, "line": r.line, "file": part.key}
            if job.id_column is not None and r.row_id is not None:
                item[job.id_column] = r.row_id
            item["errors"] = errors
            item["raw"] = r.raw
            lines.append(json.dumps(item, separators=(",", ":"), ensure_ascii=False, default=str))
        return ("\n".join(lines) + "\n").encode()

    def _record_error(self, step: ScoreInput, err: Exception) -> None:
        """Why this attempt failed, for the finalize step's report. Best effort: never hides ``err``."""
        job, part = step.job, step.part
        attempt_id = f"{step.execution or 'run'}-{step.attempt:02d}-{uuid.uuid4().hex[:8]}"
        message = getattr(err, "message", None) or str(err) or type(err).__name__
        document = {
            "part": part.part,
            "attempt": step.attempt,
            "execution": step.execution,
            "error": type(err).__name__,
            "message": message[:2000],
            "at": utcnow(),
            "epoch": self._clock(),
        }
        try:
            self.store.put(
                layout.error_key(job.output_prefix, part.part, attempt_id),
                json.dumps(document).encode(),
                "application/json",
            )
        except Exception as put_err:  # the store may be what failed; the original error is what matters
            self._on_event("BatchErrorNotRecorded", {"part": part.part, "error": repr(put_err)[:300]})


def _validated(validator: InstanceValidator, rows: list[_Row]) -> list[tuple[list[_Row], np.ndarray]]:
    """Runs of valid rows with their matrices, in order; each invalid row gets its field-level reasons.

    The whole chunk is validated at once (the API's fast path); only a chunk that fails is split in
    halves until each bad row stands alone and its own reasons are known.
    """
    try:
        return [(rows, validator.to_matrix([r.instance for r in rows]))]
    except InvalidInput as err:
        if len(rows) == 1:
            details = err.details or [{"field": "", "message": err.message}]
            rows[0].problems = [{"field": field_of(str(d["field"])), "message": str(d["message"])} for d in details]
            return []
    middle = len(rows) // 2
    return _validated(validator, rows[:middle]) + _validated(validator, rows[middle:])


def _peak_rss_mb() -> float:
    """This process's peak resident memory. /proc's VmHWM where there is one: ``ru_maxrss`` of a process
    started by fork and exec also counts what its parent held when it forked (the local stack's workers)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _text(value: Any) -> Any:
    """A label as a CSV cell: JSON's spelling for booleans, the shortest round-trip text for floats."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return value
