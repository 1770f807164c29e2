"""Run the template's ``Schedule`` events locally, on a short fixed interval.

In AWS each ``Schedule`` event is an EventBridge rule that invokes the function with a
"Scheduled Event". Locally every enabled schedule fires every ``interval`` seconds instead: the
rule's ``rate(...)``/``cron(...)`` expression is *not* honoured (an hourly drift job that ran
hourly would be useless on a laptop). The first run comes one interval after the start, like a
new rule's first tick. The invocation is synchronous in the scheduler's own thread; Lambda's
asynchronous-invocation retries are not emulated: a failed run is logged and the next tick runs
again.

One run at a time per schedule: a tick that comes while the previous run (or a manual
:meth:`Scheduler.run_now`) is still going is skipped and logged, never queued.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from .template import Schedule
from .worker import InvokeResult

__all__ = ["Scheduler", "scheduled_event"]

log = logging.getLogger(__name__)

Invoke = Callable[[str, Any], InvokeResult]


def scheduled_event(schedule: Schedule, *, account_id: str, region: str, now: datetime | None = None) -> Any:
    """The event EventBridge sends a rule's target: the rule's ``Input`` if it has one, else a Scheduled Event."""
    if schedule.input is not None:
        return schedule.input
    when = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [schedule.rule_arn],
        "detail": {},
    }


class Scheduler:
    """A thread per enabled schedule that invokes its function every ``interval`` seconds."""

    def __init__(
        self,
        schedules: Iterable[Schedule],
        invoke: Invoke,
        *,
        interval: float | None,
        account_id: str,
        region: str,
    ) -> None:
        self.schedules = {s.key: s for s in schedules}
        self.interval = interval if interval and interval > 0 else None
        self._invoke = invoke
        self._account_id = account_id
        self._region = region
        self._locks = {key: threading.Lock() for key in self.schedules}
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._timers: dict[str, threading.Thread] = {}
        self.runs: dict[str, int] = dict.fromkeys(self.schedules, 0)
        self.skipped: dict[str, int] = dict.fromkeys(self.schedules, 0)
        self.last_result: dict[str, InvokeResult | None] = dict.fromkeys(self.schedules)

    def start(self) -> Scheduler:
        if not self.schedules:
            return self
        listing = ", ".join(
            f"{s.key} {s.expression}{'' if s.enabled else ' (disabled)'}" for s in self.schedules.values()
        )
        if self.interval is None:
            log.info("schedules are not run locally (schedule_interval off); run one with run_schedule(): %s", listing)
            return self
        log.info(
            "schedules run locally every %g s, not on their template expressions: %s",
            self.interval,
            listing,
        )
        self._stopping.clear()
        for schedule in self.schedules.values():
            if not schedule.enabled:
                continue
            thread = threading.Thread(
                target=self._loop, args=(schedule,), name=f"sklambda-schedule-{schedule.key}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
            self._timers[schedule.key] = thread
        return self

    def timed(self, key: str) -> bool:
        """Whether a timer runs schedule ``key`` (off with the interval off, a disabled schedule, or stopped)."""
        thread = self._timers.get(key)
        return thread is not None and thread.is_alive() and not self._stopping.is_set()

    def stop_ticking(self) -> None:
        """No new runs from now on (a run in flight finishes, or fails when its worker is killed)."""
        self._stopping.set()

    def join(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]

    def _loop(self, schedule: Schedule) -> None:
        assert self.interval is not None
        due = time.monotonic() + self.interval
        while not self._stopping.wait(max(0.0, due - time.monotonic())):
            lock = self._locks[schedule.key]
            if lock.acquire(blocking=False):
                try:
                    self._run(schedule, trigger="timer")
                finally:
                    lock.release()
            else:
                self.skipped[schedule.key] += 1
                log.warning("schedule %s: previous run still in progress, tick skipped", schedule.key)
            # Ticks that came while a run was going are skipped, not made up for.
            due += self.interval
            now = time.monotonic()
            if due <= now:
                missed = int((now - due) // self.interval) + 1
                due += missed * self.interval
                self.skipped[schedule.key] += missed
                log.info("schedule %s: run outlasted the interval, %d tick(s) skipped", schedule.key, missed)

    def run_now(self, key: str) -> InvokeResult:
        """Run the schedule ``key`` ("Function.Event") now, after a run in flight, and return its result."""
        schedule = self.schedules[key]
        with self._locks[key]:
            return self._run(schedule, trigger="manual")

    def _run(self, schedule: Schedule, *, trigger: str) -> InvokeResult:
        event = scheduled_event(schedule, account_id=self._account_id, region=self._region)
        log.info("schedule %s (%s): invoking %s", schedule.key, trigger, schedule.function)
        try:
            result = self._invoke(schedule.function, event)
        except Exception as exc:
            if not self._stopping.is_set():
                log.exception("schedule %s: invoking %s failed", schedule.key, schedule.function)
            result = InvokeResult(
                request_id=str(uuid.uuid4()),
                status="error",
                error={"errorMessage": str(exc), "errorType": type(exc).__name__},
            )
        self.runs[schedule.key] += 1
        self.last_result[schedule.key] = result
        if result.ok:
            log.info("schedule %s: %s ok in %.0f ms", schedule.key, schedule.function, result.duration_ms)
        elif not self._stopping.is_set():
            error = result.error or {}
            log.error(
                "schedule %s: %s %s: %s: %s",
                schedule.key,
                schedule.function,
                result.status,
                error.get("errorType"),
                error.get("errorMessage"),
            )
        return result
