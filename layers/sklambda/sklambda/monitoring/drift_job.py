"""The scheduled drift job: new captures since the last run → per-version aggregates → verdicts.

Exactly once, by construction:

* The job's durable state (``state/drift.json``) lists every capture object already counted in
  the look-back window (default 48 h, longer than Firehose's 24 h delivery retries), and the
  aggregates still waiting for enough rows. Each run lists the hourly partitions of the window and
  reads only objects not in that list, so a late object (written into an hour already processed)
  is still read, once.
* The new state is committed with a conditional write (``If-Match`` on the state's ETag). If
  another run committed in between, this run's work is discarded before anything is published:
  no metric or report pointer is emitted for a run that did not commit, so a re-run or an
  overlapping run never counts a record twice.
* Rows below the minimum sample size are not judged; their aggregate is carried in the state and
  merged with the next run's rows (aggregates are exactly mergeable), so low traffic accumulates
  until a verdict is meaningful.

Bad capture lines (not JSON, not an object, missing model/version/features: whatever
``CaptureRecord.parse_line`` refuses) are skipped and counted by reason; rows of a version without
a baseline are counted and skipped. Nothing stops the job.
"""

from __future__ import annotations

import gc
import multiprocessing
import multiprocessing.connection
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sklambda.core.errors import SklambdaError
from sklambda.monitoring.drift import DriftConfig, DriftResult
from sklambda.monitoring.fanout import (
    BatchRequest,
    Fanout,
    FanoutRun,
    Lease,
    MissingPartials,
    Partial,
    PartialAggregate,
    batches,
    lease_is_live,
    merge_partials,
)
from sklambda.monitoring.multivariate import MultivariateDrift
from sklambda.monitoring.performance import PerformanceEstimate
from sklambda.monitoring.reader import (
    MIN_OBJECTS_PER_PROCESS,
    CaptureChunk,
    CaptureObjectError,
    CaptureReader,
    usable_processes,
)
from sklambda.monitoring.report import render_html, render_json
from sklambda.monitoring.store import CaptureStore, hour_of_key
from sklambda.monitoring.window import VersionReferences, WindowAggregate

STATE_FORMAT = 1

BaselineLookup = Callable[[str, str], Mapping[str, Any] | None]
# A version's baseline with its calibration and PCA (window.RegistryReferences); None: no baseline
ReferencesLookup = Callable[[str, str], VersionReferences | None]


class ConcurrentRun(SklambdaError):
    """Another drift run committed first; this run's results were discarded, nothing published."""

    code = "concurrent_run"


@dataclass
class VersionOutcome:
    model: str
    version: str
    rows: int
    status: str  # "evaluated" | "pending" (below the minimum sample)
    result: DriftResult | None = None
    report_prefix: str | None = None
    performance: PerformanceEstimate | None = None  # the label-free estimate (or why there is none)
    multivariate: MultivariateDrift | None = None


@dataclass
class RunSummary:
    run_id: str
    started_at: str
    window_start: str
    window_end: str
    objects_read: int = 0
    lines_read: int = 0
    rows_counted: int = 0
    bad_lines: Counter[str] = field(default_factory=Counter)
    skipped_rows: Counter[str] = field(default_factory=Counter)
    outcomes: list[VersionOutcome] = field(default_factory=list)
    seconds: float = 0.0
    fanout: dict[str, Any] | None = None  # a fan-out run: started | in_flight | already_committed | reduced

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "objects_read": self.objects_read,
            "lines_read": self.lines_read,
            "rows_counted": self.rows_counted,
            "bad_lines": dict(self.bad_lines),
            "skipped_rows": dict(self.skipped_rows),
            "seconds": round(self.seconds, 3),
            "fanout": self.fanout,
            "models": [
                {
                    "model": o.model,
                    "version": o.version,
                    "rows": o.rows,
                    "status": o.status,
                    "verdict": o.result.verdict if o.result else None,
                    "drift_score": o.result.drift_score if o.result else None,
                    "drifted": o.result.drifted if o.result else [],
                    "estimated": o.performance.estimated if o.performance else {},
                    "multivariate": o.multivariate.verdict if o.multivariate else None,
                    "report": o.report_prefix,
                }
                for o in self.outcomes
            ],
        }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class DriftJob:
    """One drift run over the capture bucket. Collaborators are injected; nothing global."""

    def __init__(
        self,
        store: CaptureStore,
        baselines: BaselineLookup,
        config: DriftConfig,
        *,
        lookback_hours: int = 48,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        fanout: Fanout | None = None,
        references: ReferencesLookup | None = None,
    ) -> None:
        self.store = store
        self.baselines = baselines
        self.config = config
        self.lookback = timedelta(hours=lookback_hours)
        self.clock = clock
        self.fanout = fanout  # a window of more objects than fanout.max_objects: a Distributed Map reads it
        # Without ``references`` a version is known by its baseline only: drift, no estimate, no PCA.
        self.references = references
        self._references_cache: dict[tuple[str, str], VersionReferences | None] = {}

    def _references(self, model: str, version: str) -> VersionReferences | None:
        key = (model, version)
        if key not in self._references_cache:
            if self.references is not None:
                self._references_cache[key] = self.references(model, version)
            else:
                baseline = self.baselines(model, version)
                self._references_cache[key] = VersionReferences.of(baseline) if baseline is not None else None
        return self._references_cache[key]

    def _baseline(self, model: str, version: str) -> Mapping[str, Any] | None:
        found = self._references(model, version)
        return found.baseline if found is not None else None

    def run(
        self, *, publish: Callable[[RunSummary], None] | None = None, resume: FanoutRun | None = None
    ) -> RunSummary:
        """One run. With ``resume`` (the reduce step of a fan-out run, see fanout.py) the objects are
        not read here: the children's partials are merged, and the run ends as any other."""
        started = time.perf_counter()
        now = resume.planned_at if resume is not None else self.clock()
        window_start = now - self.lookback
        summary = RunSummary(
            run_id=resume.run_id if resume is not None else f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}",
            started_at=_iso(now),
            window_start=_iso(window_start),
            window_end=_iso(now),
        )
        state, etag = self.store.load_state()
        lease = Lease.of(state)
        if resume is not None:
            if state.get("last_run") == resume.run_id:  # a retried reduce: this run committed already
                summary.fanout = {"run_id": resume.run_id, "status": "already_committed"}
                return summary
            if lease is None or lease.run_id != resume.run_id:
                raise ConcurrentRun(f"fan-out run {resume.run_id} lost its lease; its results were discarded")
        elif lease is not None and lease_is_live(lease, now, self.fanout.status if self.fanout else None):
            summary.fanout = {"run_id": lease.run_id, "status": "in_flight", "execution": lease.execution}
            return summary
        processed: dict[str, str] = dict(state.get("processed", {}))
        aggregates: dict[tuple[str, str], WindowAggregate] = {}
        for entry in state.get("pending", []):
            refs = self._references(entry["model"], entry["version"])
            if refs is not None:
                aggregates[(entry["model"], entry["version"])] = WindowAggregate.from_dict(entry["aggregate"], refs)

        if resume is not None:
            new_keys = self._merge_partials(resume, aggregates, summary)
            summary.fanout = {"run_id": resume.run_id, "status": "reduced", "batches": resume.batches}
        else:
            new_keys = sorted(k for k in self.store.list_capture_keys(window_start, now) if k not in processed)
            if self.fanout is not None and self.fanout.wants(len(new_keys)):
                self._fan_out(new_keys, state, etag, now, summary)
                return summary
            self.read_keys(new_keys, aggregates, summary)
        processed.update((key, hour_of_key(key) or "") for key in new_keys)

        pending: list[dict[str, Any]] = []
        for (model, version), aggregate in sorted(aggregates.items()):
            if aggregate.rows < self.config.min_rows:
                pending.append({"model": model, "version": version, "aggregate": aggregate.to_dict()})
                summary.outcomes.append(VersionOutcome(model, version, aggregate.rows, "pending"))
                continue
            window = aggregate.evaluate(self.config)
            result, baseline = window.drift, aggregate.references.baseline
            context: dict[str, Any] = {
                "model": model,
                "version": version,
                "window_start": window_start,
                "window_end": now,
                "run_id": summary.run_id,
                "generated_at": now,
                "performance": window.performance,
                "multivariate": window.multivariate,
                "reconstruction": aggregate.multivariate,
            }
            prefix = self.store.write_report(
                model,
                summary.run_id,
                render_json(result, baseline, aggregate.drift, **context),
                render_html(result, baseline, aggregate.drift, **context),
            )
            summary.outcomes.append(
                VersionOutcome(
                    model,
                    version,
                    aggregate.rows,
                    "evaluated",
                    result,
                    prefix,
                    performance=window.performance,
                    multivariate=window.multivariate,
                )
            )

        oldest = f"{window_start:%Y-%m-%dT%H}"
        new_state = {
            "format": STATE_FORMAT,
            "updated_at": _iso(now),
            "last_run": summary.run_id,
            "processed": {k: h for k, h in processed.items() if h >= oldest},
            "pending": pending,
        }
        if not self.store.save_state(new_state, etag):
            raise ConcurrentRun("another drift run committed first; this run's results were discarded")
        for outcome in summary.outcomes:
            if outcome.report_prefix and outcome.result:
                self.store.point_latest(
                    outcome.model,
                    {
                        "prefix": outcome.report_prefix,
                        "run_id": summary.run_id,
                        "version": outcome.version,
                        "verdict": outcome.result.verdict,
                        "drift_score": outcome.result.drift_score,
                        "generated_at": _iso(now),
                    },
                )
        summary.seconds = time.perf_counter() - started
        if publish:
            publish(summary)
        return summary

    # ------------------------------------------------------------------ fan-out (fanout.py)
    def _fan_out(
        self, keys: list[str], state: dict[str, Any], etag: str | None, now: datetime, summary: RunSummary
    ) -> None:
        """Plan: batches.json, the lease (conditional write), then the execution. Nothing is read here."""
        assert self.fanout is not None and self.fanout.start is not None
        items = batches(keys, self.fanout.max_objects)
        run = FanoutRun(
            run_id=summary.run_id,
            planned_at=now,
            bucket=self.fanout.store.bucket,
            batches_key=self.fanout.store.write_batches(summary.run_id, items),
            batches=len(items),
            objects=len(keys),
            max_concurrency=self.fanout.concurrency,
        )
        leased = {**state, "fanout": Lease(summary.run_id, summary.run_id, now).to_dict()}
        if not self.store.save_state(leased, etag):
            raise ConcurrentRun("another drift run committed first; no fan-out was started")
        try:
            execution = self.fanout.start(summary.run_id, run)
        except Exception:
            self.release(summary.run_id)
            raise
        summary.fanout = {
            "run_id": summary.run_id,
            "status": "started",
            "execution": execution,
            "batches": len(items),
            "objects": len(keys),
        }

    def _merge_partials(
        self, run: FanoutRun, aggregates: dict[tuple[str, str], WindowAggregate], summary: RunSummary
    ) -> list[str]:
        """Every batch's partial merged exactly into ``aggregates`` (the pending ones are already
        there); MissingPartials (and the lease released) when one is missing or does not match."""
        assert self.fanout is not None

        def add(partial: Partial) -> None:
            self._add_partial(partial, aggregates, summary)

        try:
            return merge_partials(run, self.fanout.store, add)
        except MissingPartials:
            self.release(run.run_id)
            raise

    def release(self, run_id: str) -> bool:
        """Drop run ``run_id``'s lease (conditional write); False if it is not there any more."""
        state, etag = self.store.load_state()
        lease = Lease.of(state)
        if lease is None or lease.run_id != run_id:
            return False
        return self.store.save_state({k: v for k, v in state.items() if k != "fanout"}, etag)

    def read_keys(
        self,
        keys: list[str],
        aggregates: dict[tuple[str, str], WindowAggregate],
        summary: RunSummary,
        *,
        processes: int | None = None,
    ) -> None:
        """Count the capture objects ``keys`` into ``aggregates`` (``reader.CaptureReader``: typed
        decoding into columns, ``CaptureRecord`` for every line the fast path does not take).

        With more than one process (default: ``reader.usable_processes()``, at least
        ``MIN_OBJECTS_PER_PROCESS`` objects each) forked workers each read and aggregate an
        interleaved share of the keys and hand back one partial (``read_batch``, the fan-out
        children's own work); the partials are merged exactly. Only aggregates cross the pipe, never
        rows, so the workers' CPUs are not spent on the hand-over.
        """
        workers = usable_processes() if processes is None else processes
        workers = max(1, min(workers, len(keys) // MIN_OBJECTS_PER_PROCESS))
        if workers > 1:
            for partial in _read_in_processes(self, keys, workers):
                self._add_partial(partial, aggregates, summary)
            return
        reader = CaptureReader(self._baseline)
        for chunk in reader.read(self.store, keys):
            self._add(chunk, aggregates, summary)
        summary.objects_read += reader.objects
        summary.lines_read += reader.lines
        summary.bad_lines.update(reader.bad_lines)

    def _add(
        self, chunk: CaptureChunk, aggregates: dict[tuple[str, str], WindowAggregate], summary: RunSummary
    ) -> None:
        aggregate = aggregates.get((chunk.model, chunk.version))
        if aggregate is None:
            refs = self._references(chunk.model, chunk.version)
            if refs is None:
                summary.skipped_rows[f"{chunk.model} v{chunk.version}: no baseline"] += chunk.rows
                return
            aggregate = aggregates[(chunk.model, chunk.version)] = WindowAggregate(refs)
        aggregate.add_chunk(chunk)  # features, and the rows' predictions and probabilities
        summary.rows_counted += chunk.rows

    def _add_partial(
        self, partial: Partial, aggregates: dict[tuple[str, str], WindowAggregate], summary: RunSummary
    ) -> None:
        """A child's or a worker's partial merged exactly into ``aggregates`` and ``summary``."""
        summary.objects_read += partial.objects_read
        summary.lines_read += partial.lines_read
        summary.rows_counted += partial.rows_counted
        summary.bad_lines.update(partial.bad_lines)
        summary.skipped_rows.update(partial.skipped_rows)
        for entry in partial.aggregates:
            refs = self._references(entry.model, entry.version)
            if refs is None:
                raise MissingPartials(f"batch {partial.index}: no baseline for {entry.model} v{entry.version}")
            part = WindowAggregate.from_dict(entry.aggregate, refs)
            key = (entry.model, entry.version)
            if key in aggregates:
                aggregates[key].merge(part)
            else:
                aggregates[key] = part


def read_batch(job: DriftJob, request: BatchRequest) -> Partial:
    """A child's work: read the batch's objects with ``job``'s reader (as one run would) into a partial."""
    return read_share(job, request.run_id, request.batch.index, list(request.batch.keys))


def read_share(job: DriftJob, run_id: str, index: int, keys: list[str], *, processes: int | None = None) -> Partial:
    """The objects ``keys`` read into one partial (a fan-out child's batch, a worker's share)."""
    aggregates: dict[tuple[str, str], Any] = {}
    summary = RunSummary(run_id=run_id, started_at="", window_start="", window_end="")
    job.read_keys(keys, aggregates, summary, processes=processes)
    return Partial(
        run_id=run_id,
        index=index,
        keys=keys,
        objects_read=summary.objects_read,
        lines_read=summary.lines_read,
        rows_counted=summary.rows_counted,
        bad_lines=dict(summary.bad_lines),
        skipped_rows=dict(summary.skipped_rows),
        aggregates=[
            PartialAggregate(model=model, version=version, aggregate=aggregate.to_dict())
            for (model, version), aggregate in sorted(aggregates.items())
        ],
    )


# ============================================================================ worker processes
class CaptureReadError(RuntimeError):
    """A worker process failed to read its share of the objects (the message names why)."""


def _read_in_processes(job: DriftJob, keys: list[str], workers: int) -> Iterator[Partial]:
    """Fork ``workers`` processes over interleaved shares of ``keys``; yield their partials in order.

    Fork, not spawn: a worker starts in microseconds with everything imported (and the job's cached
    references); it makes its own S3 connections (``store.fresh()``) and never returns into the
    caller's code (multiprocessing ends a forked child with ``os._exit``). A version's references
    (baseline, calibration, PCA) come from this process over the pipe, read once with its own
    clients. A worker's failure is raised here, by name; the run then commits nothing.
    """
    context = multiprocessing.get_context("fork")
    connections = []
    processes = []
    try:
        # Everything alive now is frozen while forking: the workers' collector never walks (and
        # so never copies, page by page) the objects they inherit.
        gc.freeze()
        try:
            for index in range(workers):
                ours, theirs = context.Pipe()
                process = context.Process(target=_worker, args=(theirs, job, index, keys[index::workers]), daemon=True)
                process.start()
                theirs.close()
                connections.append(ours)
                processes.append(process)
        finally:
            gc.unfreeze()
        results: dict[int, Partial] = {}
        waiting = {connection: index for index, connection in enumerate(connections)}
        while waiting:
            for ready in multiprocessing.connection.wait(list(waiting)):
                assert isinstance(ready, multiprocessing.connection.Connection)
                try:
                    kind, *message = ready.recv()
                except EOFError:
                    raise CaptureReadError("a capture reader process died") from None
                if kind == "references":  # answered from this process's cache and clients
                    ready.send(job._references(message[0], message[1]))
                elif kind == "partial":
                    results[waiting.pop(ready)] = Partial.model_validate(message[0])
                elif message[0] == "CaptureObjectError":
                    raise CaptureObjectError(message[1])
                else:
                    raise CaptureReadError(f"{message[0]}: {message[1]}")
        for index in sorted(results):
            yield results[index]
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join(timeout=10)
        for connection in connections:
            connection.close()


def _worker(connection: Any, job: DriftJob, index: int, keys: list[str]) -> None:
    def references(model: str, version: str) -> VersionReferences | None:
        connection.send(("references", model, version))
        found: VersionReferences | None = connection.recv()
        return found

    try:
        # Own capture connections; the registry is read by the parent, whose clients (and TLS
        # sessions) a forked copy must not use.
        job.store = job.store.fresh()
        job.references, job._references_cache = references, {}
        partial = read_share(job, "", index, keys, processes=1)
        connection.send(("partial", partial.model_dump(mode="json")))
    except BaseException as err:  # reported to the parent, which raises it
        connection.send(("error", type(err).__name__, str(err)[:2000]))
    finally:
        connection.close()
