"""Batch step 1: pin the model version, find the input files, and split them into parts.

A part is a byte range of one file that starts and ends on a row boundary, found by streaming the
file once through the same :class:`~sklambda.lifecycle.batch.records.RecordScanner` the scorer uses
(so both count the same rows); a part closes at the first row end once it holds ``part_rows`` rows
or ``part_bytes`` bytes. Each part knows its first row number, so rejects name real row numbers.

The plan (``_job/plan.json``) is the job's identity: written once, with ``If-None-Match``. A rerun
of the same job (same output prefix) finds it, checks the request and the input files' ETags are
unchanged and reuses it: the same parts, the same pinned version, even if the alias moved since.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sklambda.core.errors import ModelNotFound
from sklambda.lifecycle.batch import layout
from sklambda.lifecycle.batch.models import (
    MAX_PARTS,
    BatchInputError,
    BatchRequest,
    BatchSettings,
    Format,
    InputFile,
    JobContext,
    JobPlan,
    ObjectLocation,
    PartItem,
    PlanInput,
    PlanResult,
    parse_request,
)
from sklambda.lifecycle.batch.records import (
    RecordScanner,
    csv_layout,
    decode,
    parse_csv_row,
    sniff_jsonl,
    strip_terminator,
)
from sklambda.lifecycle.batch.store import BatchStore, ListedObject
from sklambda.registry.manifest import Manifest, utcnow
from sklambda.registry.store import ModelRegistry

MAX_HEADER_BYTES = 16 * 1024 * 1024
# Longer is no row but a quoting error (Python's csv refuses fields over 128 KiB anyway).
MAX_RECORD_BYTES = 1024 * 1024
# What a rerun must ask for exactly as the first run did (formats, id column, part sizes are
# compared only when the rerun states them).
_IDENTITY = ("input", "model")
_STATED = ("version", "input_format", "output_format", "id_column", "part_rows", "part_bytes")


@dataclass
class _FileScan:
    """Streaming one file: header, row and line counters, and the parts closed so far."""

    key: str
    etag: str
    fmt: Format
    part_rows: int
    part_bytes: int
    header: list[str] | None = None
    seen_first: bool = False
    head: bytearray = field(default_factory=bytearray)  # the bytes before the first row (header, BOM)
    rows: int = 0
    blank_lines: int = 0
    line: int = 1  # physical line number of the next record
    parts: list[dict[str, Any]] = field(default_factory=list)
    current: dict[str, Any] | None = None

    def add(self, start: int, end: int, blank: bool, lines: int) -> None:
        if self.current is None:
            self.current = {
                "start": start,
                "end": end,
                "first_row": self.rows + 1,
                "first_line": self.line,
                "rows": 0,
                "blank_lines": 0,
            }
        part = self.current
        part["end"] = end
        if blank:
            part["blank_lines"] += 1
            self.blank_lines += 1
        else:
            part["rows"] += 1
            self.rows += 1
        self.line += lines
        if part["rows"] >= self.part_rows or end - part["start"] >= self.part_bytes:
            self.parts.append(part)
            self.current = None

    def close(self) -> None:
        part, self.current = self.current, None
        if part is None:
            return
        if part["rows"] == 0 and self.parts:  # trailing blank lines belong to the last part
            last = self.parts[-1]
            last["end"] = part["end"]
            last["blank_lines"] += part["blank_lines"]
        elif part["rows"] > 0:
            self.parts.append(part)


class Planner:
    def __init__(
        self,
        store: BatchStore,
        registry: ModelRegistry,
        settings: BatchSettings,
        *,
        clock: Callable[[], float] = time.time,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings
        self._clock = clock
        self._progress = progress or (lambda _m: None)

    # ------------------------------------------------------------------------------ the step
    def plan(self, step: PlanInput) -> PlanResult:
        request = parse_request(step.request)
        bucket = self.settings.batch_bucket
        source = layout.input_location(request.input, bucket)
        if request.job is not None:
            job = request.job
        elif request.output is not None:
            job = layout.job_name(layout.output_location(request.output, bucket, "job").key.rstrip("/").split("/")[-1])
        else:
            job = layout.job_name(step.execution or f"batch-{uuid.uuid4().hex[:12]}")
        output = layout.output_location(request.output, bucket, job)
        if request.id_column is not None and request.id_column in ("row", "file", "prediction", "probabilities"):
            raise BatchInputError(f"id column {request.id_column!r} has the name of an output column; rename it")
        files = self._input_files(source)

        existing = self.store.get_json(layout.plan_key(output.key))
        if existing is not None:
            return self._resume(JobPlan.model_validate(existing), request, files, output.key)

        manifest, pinned = self._pin(request)
        fmt = self._input_format(request, files)
        context = JobContext(
            job=job,
            bucket=bucket,
            output_prefix=output.key,
            model=manifest.name,
            version=manifest.version,
            task=manifest.task,
            classes=manifest.classes,
            input_format=fmt,
            output_format=request.output_format or fmt,
            id_column=request.id_column,
            multi_file=len(files) > 1,
        )
        part_rows = request.part_rows or self.settings.batch_part_rows
        part_bytes = request.part_bytes or self.settings.batch_part_bytes
        inputs, parts, skipped = self._split(files, manifest, context, part_rows, part_bytes)
        if len(parts) > MAX_PARTS:
            raise BatchInputError(
                f"the input makes {len(parts):,} parts, more than {MAX_PARTS:,}: use larger parts (part_rows)"
            )
        body = json.dumps([p.model_dump(mode="json") for p in parts], separators=(",", ":")).encode()
        parts_key = layout.parts_key(output.key, hashlib.sha256(body).hexdigest())
        self.store.put_new(parts_key, body, "application/json")
        now = self._clock()
        plan = JobPlan(
            job=context,
            request=request,
            input=request.input,
            pinned=pinned,
            alias=self.settings.model_alias,
            files=inputs,
            skipped=skipped,
            parts_key=parts_key,
            part_count=len(parts),
            rows=sum(f.rows for f in inputs),
            blank_lines=sum(f.blank_lines for f in inputs),
            part_rows=part_rows,
            part_bytes=part_bytes,
            planned_at=utcnow(),
            planned_epoch=now,
            planned_by=step.execution,
        )
        text = plan.model_dump_json(indent=1).encode()
        if not self.store.create(layout.plan_key(output.key), text, "application/json"):
            # Another run of the same job planned it first: its plan (and pinned version) wins.
            return self._resume(
                JobPlan.model_validate(self.store.get_json(layout.plan_key(output.key))), request, files, output.key
            )
        self._progress(
            f"planned {plan.part_count} part(s), {plan.rows:,} rows, {manifest.name} v{manifest.version} ({pinned})"
        )
        return self._result(plan, request, resumed=False)

    # ------------------------------------------------------------------------------ pieces
    def _result(self, plan: JobPlan, request: BatchRequest, *, resumed: bool) -> PlanResult:
        concurrency = min(
            request.max_concurrency or self.settings.batch_max_concurrency, self.settings.batch_max_concurrency
        )
        return PlanResult(
            job=plan.job,
            parts=ObjectLocation(bucket=plan.job.bucket, key=plan.parts_key),
            part_count=plan.part_count,
            rows=plan.rows,
            max_concurrency=concurrency,
            resumed=resumed,
        )

    def _pin(self, request: BatchRequest) -> tuple[Manifest, Literal["requested", "alias"]]:
        """The version the whole job scores with: the one asked for, else the alias's now."""
        if request.version is not None:
            return self.registry.get_manifest(request.model, request.version), "requested"
        found = self.registry.get_alias(request.model, self.settings.model_alias)
        if found is None:
            raise ModelNotFound(
                f"model {request.model!r} has no {self.settings.model_alias!r} alias: pass a version, or promote one"
            )
        return self.registry.get_manifest(request.model, found.record.version), "alias"

    def _input_files(self, source: layout.S3Uri) -> list[ListedObject]:
        found = self.store.head(source.key) if not source.key.endswith("/") else None
        if found is not None:
            return [found]
        prefix = source.key if source.key.endswith("/") else source.key + "/"
        listed = [o for o in self.store.list(prefix) if not o.key.endswith("/")]
        if not listed:
            raise BatchInputError(f"nothing to score: no object s3://{source.bucket}/{source.key} nor any under it")
        return listed

    def _input_format(self, request: BatchRequest, files: list[ListedObject]) -> Format:
        if request.input_format is not None:
            return request.input_format
        formats = {layout.format_of(f.key) for f in files if not _hidden(f.key)}
        if None in formats:
            odd = next(f.key for f in files if not _hidden(f.key) and layout.format_of(f.key) is None)
            raise BatchInputError(
                f"cannot tell the format of s3://{self.settings.batch_bucket}/{odd} (not .csv, .jsonl, .ndjson or "
                ".json): pass input_format (csv or jsonl)"
            )
        if len(formats) != 1:
            raise BatchInputError("the input mixes CSV and JSON lines files: one job scores one format")
        (fmt,) = formats
        assert fmt is not None
        return fmt

    def _split(
        self, files: list[ListedObject], manifest: Manifest, context: JobContext, part_rows: int, part_bytes: int
    ) -> tuple[list[InputFile], list[PartItem], list[dict[str, str]]]:
        inputs: list[InputFile] = []
        parts: list[PartItem] = []
        skipped: list[dict[str, str]] = []
        for obj in files:
            if _hidden(obj.key):
                skipped.append({"key": obj.key, "reason": "hidden file (name starts with '.' or '_')"})
                continue
            if obj.key.lower().endswith((".gz", ".zip", ".bz2", ".zst")):
                raise BatchInputError(f"s3://{context.bucket}/{obj.key} is compressed: score uncompressed files")
            if obj.size == 0:
                skipped.append({"key": obj.key, "reason": "empty object"})
                continue
            scan = self._scan(obj, manifest, context, part_rows, part_bytes)
            numbers = []
            for found in scan.parts:
                item = PartItem(
                    part=len(parts),
                    key=obj.key,
                    etag=obj.etag,
                    header=scan.header,
                    **found,
                )
                numbers.append(item.part)
                parts.append(item)
            inputs.append(
                InputFile(
                    key=obj.key,
                    etag=obj.etag,
                    bytes=obj.size,
                    rows=scan.rows,
                    blank_lines=scan.blank_lines,
                    header=scan.header,
                    parts=numbers,
                )
            )
            self._progress(f"{obj.key}: {scan.rows:,} rows in {len(numbers)} part(s)")
        if not inputs:
            raise BatchInputError("nothing to score: every object under the input prefix is empty or hidden")
        return inputs, parts, skipped

    def _scan(
        self, obj: ListedObject, manifest: Manifest, context: JobContext, part_rows: int, part_bytes: int
    ) -> _FileScan:
        where = f"s3://{context.bucket}/{obj.key}"
        csv_input = context.input_format == "csv"
        scan = _FileScan(obj.key, obj.etag, context.input_format, part_rows, part_bytes)
        scanner = RecordScanner(quoted=csv_input)
        for chunk in self.store.stream(obj.key, obj.etag):
            if not scan.seen_first:
                scan.head += chunk
                if len(scan.head) > MAX_HEADER_BYTES:
                    raise BatchInputError(f"{where}: no row ends in the first {MAX_HEADER_BYTES:,} bytes")
            for record in scanner.feed(chunk):
                self._record(scan, record.start, record.end, record.blank, record.lines, manifest, context, where)
            if scanner.offset - scanner.record_start > MAX_RECORD_BYTES:
                unclosed = " (a quoted field that is never closed?)" if scanner.inside_quotes else ""
                raise BatchInputError(
                    f"{where}: the row starting at line {scan.line} is longer than {MAX_RECORD_BYTES:,} bytes{unclosed}"
                )
        last = scanner.finish()
        if last is not None:
            self._record(scan, last.start, last.end, last.blank, last.lines, manifest, context, where)
        scan.close()
        if csv_input and scan.header is None:
            raise BatchInputError(f"{where} has no header row")
        return scan

    def _record(
        self,
        scan: _FileScan,
        start: int,
        end: int,
        blank: bool,
        lines: int,
        manifest: Manifest,
        context: JobContext,
        where: str,
    ) -> None:
        if not scan.seen_first and not blank:
            scan.seen_first = True
            text = _first_text(bytes(scan.head[start:end]), where)
            scan.head = bytearray()
            if context.input_format == "csv":
                try:
                    header = parse_csv_row(text)
                except ValueError as err:
                    raise BatchInputError(f"{where}: the header row is {err}") from None
                csv_layout(header, manifest.schema, context.id_column, where)
                scan.header = header
                scan.line += lines
                return
            sniff_jsonl(text, where)
        elif not scan.seen_first:  # blank lines before the first row (or the header)
            scan.blank_lines += 1
            scan.line += lines
            return
        scan.add(start, end, blank, lines)

    def _resume(self, plan: JobPlan, request: BatchRequest, files: list[ListedObject], prefix: str) -> PlanResult:
        """A rerun of a planned job: same request, same input objects, or a clear refusal."""
        where = f"s3://{plan.job.bucket}/{prefix}"
        asked = request.model_dump()
        first = plan.request.model_dump()
        asked["input"], first["input"] = asked["input"].rstrip("/"), first["input"].rstrip("/")
        for name in _IDENTITY:
            if asked[name] != first[name]:
                raise BatchInputError(
                    f"{where} holds job {plan.job.job!r} of another request ({name} {first[name]!r}, not "
                    f"{asked[name]!r}): use another output prefix"
                )
        for name in _STATED:
            if asked[name] is not None and asked[name] != first[name]:
                effective = {
                    "version": plan.job.version,
                    "input_format": plan.job.input_format,
                    "output_format": plan.job.output_format,
                    "part_rows": plan.part_rows,
                    "part_bytes": plan.part_bytes,
                }
                if asked[name] == effective.get(name):
                    continue
                raise BatchInputError(
                    f"{where} holds job {plan.job.job!r} planned with {name}={first[name]!r}; this run asks for "
                    f"{asked[name]!r}: use another output prefix"
                )
        planned = {f.key: f.etag for f in plan.files}
        current = {f.key: f.etag for f in files if f.key in planned or (not _hidden(f.key) and f.size > 0)}
        changed = sorted(k for k in planned if current.get(k) != planned[k])
        added = sorted(k for k in current if k not in planned)
        if changed or added:
            names = ", ".join((changed + added)[:5])
            raise BatchInputError(
                f"the input of job {plan.job.job!r} changed since it was planned ({names}): its finished parts "
                "were scored from the old data. Start a new job (another output prefix) for the new input"
            )
        self._progress(f"resuming job {plan.job.job}: {plan.part_count} part(s), v{plan.job.version} as pinned")
        return self._result(plan, request, resumed=True)


def _hidden(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return name.startswith((".", "_"))


def _first_text(data: bytes, where: str) -> str:
    try:
        return strip_terminator(decode(data, first_in_file=True))
    except UnicodeDecodeError:
        raise BatchInputError(f"{where}: the first row is not UTF-8 text") from None
