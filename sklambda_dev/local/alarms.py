"""Evaluate the template's CloudWatch alarms against the metrics in moto, as CloudWatch would.

moto stores alarms but never evaluates them. :class:`AlarmEvaluator` does, every
``alarm_interval`` seconds (or on :meth:`AlarmEvaluator.evaluate`), for each alarm on a single
metric (``Namespace``/``MetricName``/``Dimensions`` with ``Statistic`` or ``ExtendedStatistic``, or
``Metrics`` holding exactly one ``MetricStat`` query):

1. the last ``EvaluationPeriods`` periods of ``Period`` seconds, ending now, each reduced to one
   datapoint with the alarm's statistic (periods are honoured as written: a 3600 s period looks
   back an hour);
2. M out of N (:func:`evaluate_state`): ``DatapointsToAlarm`` (default ``EvaluationPeriods``)
   breaching datapoints put it in ALARM; ``TreatMissingData`` (default ``missing``) decides what
   missing periods mean;
3. on a change of state: ``SetAlarmState`` in moto (``describe_alarms`` shows the state, the
   reason and its data), the alarm's ``AlarmActions``/``OKActions``/``InsufficientDataActions``
   SNS topics get CloudWatch's notification message, and a "CloudWatch Alarm State Change" event
   goes to the local EventBridge bus (:mod:`.eventbus`).

A state set from outside (``aws cloudwatch set-alarm-state`` against the local endpoint) is noticed
on the next evaluation and delivered the same way (actions and event); the alarm is evaluated
against its metric again one interval later, as CloudWatch does.

Datapoints are read from moto's in-process CloudWatch store rather than GetMetricStatistics:
moto matches dimensions as a subset (a metric published with an extra dimension would count),
where CloudWatch matches the exact dimension set; reading the raw datapoints also gives
percentiles, which moto does not compute. Statistics: SampleCount, Sum, Average, Minimum, Maximum
(values sent as StatisticValues included) and ``pNN`` percentiles (nearest rank over the single
values; StatisticSets cannot contribute to them). Not supported (logged at start, never evaluated):
metric math and several-metric alarms, anomaly-detection thresholds, the other extended statistics
(tm, wm, tc, ts, PR, IQM). ``EvaluateLowSampleCountPercentile`` is ignored (always evaluated), and
CloudWatch's wider look-back for missing data is not reproduced (exactly N periods are read).
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .eventbus import Delivery, EventBus
from .template import Alarm

__all__ = [
    "ALARM",
    "INSUFFICIENT_DATA",
    "OK",
    "AlarmEvaluator",
    "AlarmSpec",
    "AlarmTransition",
    "MotoMetrics",
    "UnsupportedAlarm",
    "breaches",
    "evaluate_state",
    "period_values",
    "statistic",
]

log = logging.getLogger(__name__)

OK, ALARM, INSUFFICIENT_DATA = "OK", "ALARM", "INSUFFICIENT_DATA"
_STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?|100)$")
_OPERATORS = {
    "GreaterThanOrEqualToThreshold": (lambda v, t: v >= t, "greater than or equal to"),
    "GreaterThanThreshold": (lambda v, t: v > t, "greater than"),
    "LessThanThreshold": (lambda v, t: v < t, "less than"),
    "LessThanOrEqualToThreshold": (lambda v, t: v <= t, "less than or equal to"),
}
_TREATMENTS = ("missing", "ignore", "breaching", "notBreaching")
_REGION_NAMES = {
    "us-east-1": "US East (N. Virginia)",
    "us-east-2": "US East (Ohio)",
    "us-west-1": "US West (N. California)",
    "us-west-2": "US West (Oregon)",
    "eu-west-1": "EU (Ireland)",
    "eu-west-2": "EU (London)",
    "eu-central-1": "EU (Frankfurt)",
}


_HISTORY = 1000  # transitions kept in memory


class UnsupportedAlarm(ValueError):
    """The alarm uses a feature the local evaluator does not implement (it is then never evaluated)."""


# ----------------------------------------------------------------------------- the alarm spec
@dataclass(frozen=True)
class AlarmSpec:
    """What evaluating one alarm needs, read from its PutMetricAlarm request."""

    name: str
    arn: str
    namespace: str
    metric_name: str
    dimensions: tuple[tuple[str, str], ...]
    stat: str  # "Maximum", "Sum", ..., or "p99"
    period: int
    evaluation_periods: int
    datapoints_to_alarm: int
    threshold: float
    comparison: str
    treat_missing_data: str = "missing"
    unit: str | None = None
    description: str = ""
    actions_enabled: bool = True
    alarm_actions: tuple[str, ...] = ()
    ok_actions: tuple[str, ...] = ()
    insufficient_data_actions: tuple[str, ...] = ()
    logical_id: str = ""
    metric_id: str = "m1"  # the query id (Metrics alarms) shown in the event's configuration

    @property
    def is_percentile(self) -> bool:
        return self.stat.startswith("p")

    def actions_for(self, state: str) -> tuple[str, ...]:
        if not self.actions_enabled:
            return ()
        return {ALARM: self.alarm_actions, OK: self.ok_actions}.get(state, self.insufficient_data_actions)

    @classmethod
    def from_alarm(cls, alarm: Alarm) -> AlarmSpec:
        """Raises UnsupportedAlarm for what the local evaluator cannot evaluate."""
        kw = alarm.put_kwargs
        comparison = str(kw.get("ComparisonOperator", ""))
        if comparison not in _OPERATORS:
            raise UnsupportedAlarm(f"ComparisonOperator {comparison!r} (anomaly detection) is not supported locally")
        if "ThresholdMetricId" in kw or "Threshold" not in kw:
            raise UnsupportedAlarm("alarms without a static Threshold are not supported locally")
        metric_id = "m1"
        if kw.get("Metrics"):
            queries = kw["Metrics"]
            stats = [q for q in queries if "MetricStat" in q]
            if len(queries) != 1 or len(stats) != 1:
                raise UnsupportedAlarm(
                    "metric math (Metrics with expressions or several queries) is not supported locally"
                )
            metric_stat = stats[0]["MetricStat"]
            metric = metric_stat["Metric"]
            namespace, metric_name = metric["Namespace"], metric["MetricName"]
            dimensions = metric.get("Dimensions") or []
            stat, period, unit = str(metric_stat["Stat"]), int(metric_stat["Period"]), metric_stat.get("Unit")
            metric_id = str(stats[0].get("Id") or "m1")
        else:
            namespace, metric_name = kw.get("Namespace"), kw.get("MetricName")
            if not namespace or not metric_name:
                raise UnsupportedAlarm("the alarm names no metric")
            dimensions = kw.get("Dimensions") or []
            stat = str(kw.get("Statistic") or kw.get("ExtendedStatistic") or "")
            period, unit = int(kw.get("Period") or 0), kw.get("Unit")
        if stat not in _STATISTICS and not _PERCENTILE.match(stat):
            raise UnsupportedAlarm(f"statistic {stat!r} is not supported locally (only {_STATISTICS} and pNN)")
        evaluation_periods = int(kw.get("EvaluationPeriods") or 0)
        datapoints = int(kw.get("DatapointsToAlarm") or evaluation_periods)
        if period <= 0 or evaluation_periods <= 0 or not 0 < datapoints <= evaluation_periods:
            raise UnsupportedAlarm("Period, EvaluationPeriods and DatapointsToAlarm must be positive, M <= N")
        treatment = str(kw.get("TreatMissingData") or "missing")
        if treatment not in _TREATMENTS:
            raise UnsupportedAlarm(f"TreatMissingData {treatment!r} is not one of {_TREATMENTS}")
        return cls(
            name=alarm.name,
            arn=alarm.arn,
            logical_id=alarm.logical_id,
            namespace=str(namespace),
            metric_name=str(metric_name),
            dimensions=tuple((str(d["Name"]), str(d["Value"])) for d in dimensions),
            stat=stat,
            period=period,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints,
            threshold=float(kw["Threshold"]),
            comparison=comparison,
            treat_missing_data=treatment,
            unit=unit,
            description=str(kw.get("AlarmDescription") or ""),
            actions_enabled=bool(kw.get("ActionsEnabled", True)),
            alarm_actions=tuple(kw.get("AlarmActions") or ()),
            ok_actions=tuple(kw.get("OKActions") or ()),
            insufficient_data_actions=tuple(kw.get("InsufficientDataActions") or ()),
            metric_id=metric_id,
        )


# ------------------------------------------------------------------------------ pure evaluation
def breaches(value: float, comparison: str, threshold: float) -> bool:
    return bool(_OPERATORS[comparison][0](value, threshold))


def evaluate_state(
    values: list[float | None],
    *,
    comparison: str,
    threshold: float,
    datapoints_to_alarm: int,
    treat_missing_data: str = "missing",
    current_state: str = INSUFFICIENT_DATA,
) -> str:
    """The alarm state for the N most recent period values (None = no data in that period).

    - ``breaching`` / ``notBreaching``: a missing period counts as breaching / not breaching; ALARM
      when at least M (``datapoints_to_alarm``) of the N periods breach, else OK.
    - ``missing``: no data at all is INSUFFICIENT_DATA; otherwise only the periods with data count:
      ALARM when at least M breach, or when fewer than M have data and all of those breach (the
      "- - X" row of CloudWatch's missing-data table); else OK.
    - ``ignore``: the state changes only when the data present decides it: ALARM when at least M
      breach, OK when so many periods are good that M breaching ones are no longer possible (even if
      every missing one breached); otherwise (including no data) the current state is kept.
    """
    n, m = len(values), datapoints_to_alarm
    present = [v for v in values if v is not None]
    breaching = sum(1 for v in present if breaches(v, comparison, threshold))
    missing = n - len(present)
    if treat_missing_data == "breaching":
        return ALARM if breaching + missing >= m else OK
    if treat_missing_data == "notBreaching":
        return ALARM if breaching >= m else OK
    if treat_missing_data == "ignore":
        if breaching >= m:
            return ALARM
        if len(present) - breaching > n - m:
            return OK
        return current_state
    if not present:
        return INSUFFICIENT_DATA
    if breaching >= m or (len(present) < m and breaching == len(present)):
        return ALARM
    return OK


def statistic(
    stat: str, values: list[float], aggregates: Sequence[tuple[float, float, float, float]] = ()
) -> float | None:
    """``stat`` over single ``values`` and ``aggregates`` (sum, minimum, maximum, sample count); None if no data."""
    count = len(values) + sum(a[3] for a in aggregates)
    if count == 0:
        return None
    if stat == "SampleCount":
        return float(count)
    if stat in ("Sum", "Average"):
        total = math.fsum(values) + math.fsum(a[0] for a in aggregates)
        return total if stat == "Sum" else total / count
    if stat == "Minimum":
        return min([*values, *(a[1] for a in aggregates)])
    if stat == "Maximum":
        return max([*values, *(a[2] for a in aggregates)])
    match = _PERCENTILE.match(stat)
    if match:
        if not values:
            return None
        ordered = sorted(values)
        rank = math.ceil(float(match.group(1)) / 100 * len(ordered))
        return ordered[min(max(rank, 1), len(ordered)) - 1]
    raise UnsupportedAlarm(f"statistic {stat!r}")


# ------------------------------------------------------------------------------------- metrics
class MotoMetrics:
    """Raw datapoints from the CloudWatch store of the moto running in this process.

    moto keeps every datapoint in one append-only list; it is indexed by (namespace, metric name)
    as it grows, so an evaluation reads only the datapoints of the metrics its alarms watch.
    """

    def __init__(self, account_id: str, region: str) -> None:
        self.account_id = account_id
        self.region = region
        self._lock = threading.Lock()
        self._source: list[Any] | None = None
        self._seen = 0
        self._index: dict[tuple[str, str], list[Any]] = {}

    def _metric(self, namespace: str, metric_name: str) -> list[Any]:
        from moto.cloudwatch.models import cloudwatch_backends

        data = cloudwatch_backends[self.account_id][self.region].metric_data
        with self._lock:
            if data is not self._source or len(data) < self._seen:  # a new or reset backend
                self._source, self._seen, self._index = data, 0, {}
            fresh = data[self._seen :]
            self._seen += len(fresh)
            for datum in fresh:
                self._index.setdefault((datum.namespace, datum.name), []).append(datum)
            return list(self._index.get((namespace, metric_name), ()))

    def datapoints(
        self,
        namespace: str,
        metric_name: str,
        dimensions: Iterable[tuple[str, str]],
        start: datetime,
        end: datetime,
        unit: str | None = None,
    ) -> tuple[list[float], list[tuple[float, float, float, float]]]:
        """(single values, aggregates) of the metric with exactly ``dimensions`` in [start, end)."""
        from moto.cloudwatch.models import MetricAggregatedDatum, MetricDatum

        wanted = set(dimensions)
        values: list[float] = []
        aggregates: list[tuple[float, float, float, float]] = []
        for datum in self._metric(namespace, metric_name):
            if unit and datum.unit != unit:
                continue
            if {(d.name, d.value) for d in datum.dimensions} != wanted:
                continue
            stamp = datum.timestamp if datum.timestamp.tzinfo else datum.timestamp.replace(tzinfo=UTC)
            if not start <= stamp < end:
                continue
            if isinstance(datum, MetricDatum):
                values.append(float(datum.value))
            elif isinstance(datum, MetricAggregatedDatum):
                aggregates.append((float(datum.sum), float(datum.min), float(datum.max), float(datum.sample_count)))
        return values, aggregates


def period_values(spec: AlarmSpec, metrics: Any, now: datetime) -> tuple[list[float | None], list[dict[str, Any]]]:
    """The alarm's statistic for each of its N periods ending at ``now`` (oldest first; None = no data).

    Period i covers [now - (N - i) * Period, now - (N - i - 1) * Period). Also returns CloudWatch's
    ``evaluatedDatapoints`` (newest first) for the state reason data. ``metrics`` has
    :meth:`MotoMetrics.datapoints`'s signature.
    """
    values: list[float | None] = []
    evaluated = []
    end = now.timestamp()
    for i in range(spec.evaluation_periods, 0, -1):
        start = datetime.fromtimestamp(end - i * spec.period, tz=UTC)
        stop = datetime.fromtimestamp(end - (i - 1) * spec.period, tz=UTC)
        singles, aggregates = metrics.datapoints(
            spec.namespace, spec.metric_name, spec.dimensions, start, stop, spec.unit
        )
        value = statistic(spec.stat, singles, aggregates)
        values.append(value)
        if value is not None:
            count = len(singles) + sum(a[3] for a in aggregates)
            evaluated.append({"timestamp": _cw_time(start), "sampleCount": float(count), "value": value})
    return values, list(reversed(evaluated))


# ----------------------------------------------------------------------------------- evaluator
@dataclass
class AlarmTransition:
    """One change of an alarm's state, and what was done about it."""

    alarm: str
    logical_id: str
    old_state: str
    new_state: str
    reason: str
    reason_data: str
    timestamp: str  # CloudWatch's "2024-05-14T10:00:00.123+0000"
    values: list[float | None] = field(default_factory=list)  # oldest period first
    external: bool = False  # set with SetAlarmState by someone else, not evaluated here
    notified: list[str] = field(default_factory=list)  # SNS topics published to
    deliveries: list[Delivery] = field(default_factory=list)  # EventBridge deliveries

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view: alarm, logical_id, state, previous_state, reason, reason_data,
        timestamp, values, external, notified, deliveries (rule, target, kind, ok, detail)."""
        return {
            "alarm": self.alarm,
            "logical_id": self.logical_id,
            "state": self.new_state,
            "previous_state": self.old_state,
            "reason": self.reason,
            "reason_data": self.reason_data,
            "timestamp": self.timestamp,
            "values": list(self.values),
            "external": self.external,
            "notified": list(self.notified),
            "deliveries": [
                {"rule": d.rule, "target": d.target_arn, "kind": d.kind, "ok": d.ok, "detail": d.detail}
                for d in self.deliveries
            ],
        }

    def __getitem__(self, key: str) -> Any:
        """``transition["state"]`` and the other :meth:`to_dict` keys, for dict-style callers."""
        return self.to_dict()[key]


def _cw_time(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def _short_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%d/%m/%y %H:%M:%S")


def _number(value: float) -> str:
    return repr(float(value))


class AlarmEvaluator:
    """Evaluates ``alarms`` on demand (:meth:`evaluate`) or every ``interval`` seconds (:meth:`start`)."""

    def __init__(
        self,
        alarms: Iterable[Alarm],
        *,
        cloudwatch: Any,
        sns: Any,
        metrics: MotoMetrics,
        bus: EventBus | None,
        account_id: str,
        region: str,
        flush: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.specs: dict[str, AlarmSpec] = {}
        self.unsupported: dict[str, str] = {}
        for alarm in alarms:
            try:
                self.specs[alarm.name] = AlarmSpec.from_alarm(alarm)
            except (UnsupportedAlarm, KeyError, TypeError, ValueError) as exc:
                self.unsupported[alarm.name] = str(exc)
                log.warning("alarm %s is not evaluated locally: %s", alarm.name, exc)
        self._all_names = [a for a in [*self.specs, *self.unsupported]]
        self._cloudwatch = cloudwatch
        self._sns = sns
        self._metrics = metrics
        self._bus = bus
        self._flush = flush
        self._clock = clock
        self.account_id = account_id
        self.region = region
        self._lock = threading.Lock()
        self._known: dict[str, dict[str, Any]] = {}  # name → the state record we last saw / set
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.interval: float | None = None
        self.evaluations = 0
        self.transitions: list[AlarmTransition] = []

    # ------------------------------------------------------------------------------ lifecycle
    def start(self, interval: float | None) -> AlarmEvaluator:
        self._known = self._read_states()
        self.interval = interval if interval and interval > 0 else None
        if not self.specs:
            return self
        names = ", ".join(self.specs)
        if self.interval is None:
            log.info("alarms are not evaluated on a timer (alarm_interval off); evaluate_alarms() does: %s", names)
            return self
        log.info("alarms evaluated every %g s against moto's CloudWatch: %s", self.interval, names)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="sklambda-alarms", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        assert self.interval is not None
        while not self._stopping.wait(self.interval):
            try:
                self.evaluate()
            except Exception:
                if not self._stopping.is_set():
                    log.exception("alarm evaluation failed")

    # ----------------------------------------------------------------------------- evaluation
    def states(self) -> dict[str, str]:
        """Every template alarm's current state in moto (unsupported ones included)."""
        return {name: record["StateValue"] for name, record in self._read_states().items()}

    def _read_states(self) -> dict[str, dict[str, Any]]:
        if not self._all_names:
            return {}
        records: dict[str, dict[str, Any]] = {}
        for i in range(0, len(self._all_names), 100):
            response = self._cloudwatch.describe_alarms(AlarmNames=self._all_names[i : i + 100])
            for alarm in response.get("MetricAlarms", []):
                records[alarm["AlarmName"]] = {
                    "StateValue": alarm["StateValue"],
                    "StateReason": alarm.get("StateReason", ""),
                    "StateReasonData": alarm.get("StateReasonData", "{}"),
                    "StateUpdatedTimestamp": alarm.get("StateUpdatedTimestamp"),
                }
        return records

    def evaluate(self) -> list[AlarmTransition]:
        """Evaluate every supported alarm now; returns the state changes (and delivers them)."""
        with self._lock:
            if self._flush is not None:
                self._flush()  # metrics the functions printed so far are in CloudWatch
            now = datetime.fromtimestamp(self._clock(), tz=UTC)
            current = self._read_states()
            result = []
            for name, spec in self.specs.items():
                record = current.get(name)
                if record is None:
                    continue  # deleted from moto behind our back: nothing to evaluate
                known = self._known.get(name)
                if known is not None and known["StateValue"] != record["StateValue"]:
                    transition: AlarmTransition | None = self._external(spec, known, record)
                else:
                    transition = self._evaluate_one(spec, record, now)
                if transition is not None:
                    result.append(transition)
                    self.transitions.append(transition)  # delivered by now
            self.evaluations += 1
            del self.transitions[:-_HISTORY]
            return result

    def _evaluate_one(self, spec: AlarmSpec, record: dict[str, Any], now: datetime) -> AlarmTransition | None:
        values, evaluated = period_values(spec, self._metrics, now)
        old = record["StateValue"]
        new = evaluate_state(
            values,
            comparison=spec.comparison,
            threshold=spec.threshold,
            datapoints_to_alarm=spec.datapoints_to_alarm,
            treat_missing_data=spec.treat_missing_data,
            current_state=old,
        )
        if new == old:
            return None
        reason = self._reason(spec, values, old, new, now)
        start = datetime.fromtimestamp(now.timestamp() - spec.evaluation_periods * spec.period, tz=UTC)
        reason_data = json.dumps(
            {
                "version": "1.0",
                "queryDate": _cw_time(now),
                "startDate": _cw_time(start),
                ("extendedStatistic" if spec.is_percentile else "statistic"): spec.stat,
                "period": spec.period,
                "recentDatapoints": [v for v in values if v is not None],
                "threshold": spec.threshold,
                "evaluatedDatapoints": evaluated,
            },
            separators=(",", ":"),
        )
        self._cloudwatch.set_alarm_state(
            AlarmName=spec.name, StateValue=new, StateReason=reason, StateReasonData=reason_data
        )
        transition = AlarmTransition(spec.name, spec.logical_id, old, new, reason, reason_data, _cw_time(now), values)
        log.info("alarm %s: %s -> %s: %s", spec.name, old, new, reason)
        self._deliver(spec, transition, record)
        return transition

    def _external(self, spec: AlarmSpec, known: dict[str, Any], record: dict[str, Any]) -> AlarmTransition:
        stamp = record.get("StateUpdatedTimestamp")
        when = _cw_time(stamp if isinstance(stamp, datetime) else datetime.now(UTC))
        transition = AlarmTransition(
            spec.name,
            spec.logical_id,
            known["StateValue"],
            record["StateValue"],
            record["StateReason"],
            record.get("StateReasonData") or "{}",
            when,
            external=True,
        )
        log.info(
            "alarm %s: %s -> %s set with SetAlarmState: %s",
            spec.name,
            transition.old_state,
            transition.new_state,
            transition.reason,
        )
        self._deliver(spec, transition, known)
        return transition

    def _reason(self, spec: AlarmSpec, values: list[float | None], old: str, new: str, now: datetime) -> str:
        present = [(i, v) for i, v in enumerate(values) if v is not None]
        n, m = len(values), spec.datapoints_to_alarm
        if new == INSUFFICIENT_DATA:
            return f"Insufficient Data: {n} datapoint{'s were' if n > 1 else ' was'} unknown."
        if not present:
            treated = "Breaching" if spec.treat_missing_data == "breaching" else "NonBreaching"
            return (
                f"Threshold Crossed: no datapoints were received for {n} period{'s' if n > 1 else ''} and "
                f"{n} missing datapoint{'s were' if n > 1 else ' was'} treated as [{treated}]."
            )
        end = now.timestamp()
        shown = ", ".join(
            f"{_number(v)} ({_short_time(datetime.fromtimestamp(end - (n - i) * spec.period, tz=UTC))})"
            for i, v in reversed(present)
        )
        words = _OPERATORS[spec.comparison][1]
        counted = (
            sum(1 for _, v in present if breaches(v, spec.comparison, spec.threshold))
            if new == ALARM
            else sum(1 for _, v in present if not breaches(v, spec.comparison, spec.threshold))
        )
        verb = ("were" if counted > 1 else "was") + ("" if new == ALARM else " not")
        needed = m if new == ALARM else n - m + 1
        return (
            f"Threshold Crossed: {counted} out of the last {len(present)} datapoints [{shown}] {verb} {words} "
            f"the threshold ({_number(spec.threshold)}) (minimum {needed} datapoint{'s' if needed > 1 else ''} "
            f"for {old} -> {new} transition)."
        )

    # ------------------------------------------------------------------------------- delivery
    def _deliver(self, spec: AlarmSpec, transition: AlarmTransition, previous: dict[str, Any]) -> None:
        self._known[spec.name] = {
            "StateValue": transition.new_state,
            "StateReason": transition.reason,
            "StateReasonData": transition.reason_data,
            "StateUpdatedTimestamp": transition.timestamp,
        }
        for action in spec.actions_for(transition.new_state):
            if ":sns:" not in action:
                log.warning("alarm %s: action %s is not supported locally (only SNS topics)", spec.name, action)
                continue
            try:
                self._sns.publish(
                    TopicArn=action,
                    Subject=self._subject(spec, transition)[:100],
                    Message=json.dumps(self._notification(spec, transition)),
                )
                transition.notified.append(action)
                log.info("alarm %s: %s notification published to %s", spec.name, transition.new_state, action)
            except Exception as exc:
                log.error("alarm %s: publishing to %s failed: %s", spec.name, action, exc)
        if self._bus is not None:
            transition.deliveries = self._bus.put_event(self.state_change_event(spec, transition, previous))

    def _subject(self, spec: AlarmSpec, transition: AlarmTransition) -> str:
        region = _REGION_NAMES.get(self.region, self.region)
        return f'{transition.new_state}: "{spec.name}" in {region}'

    def _notification(self, spec: AlarmSpec, transition: AlarmTransition) -> dict[str, Any]:
        """The JSON message CloudWatch publishes to an alarm's SNS actions."""
        percentile = spec.is_percentile
        return {
            "AlarmName": spec.name,
            "AlarmDescription": spec.description or None,
            "AWSAccountId": self.account_id,
            "AlarmConfigurationUpdatedTimestamp": transition.timestamp,
            "NewStateValue": transition.new_state,
            "NewStateReason": transition.reason,
            "StateChangeTime": transition.timestamp,
            "Region": _REGION_NAMES.get(self.region, self.region),
            "AlarmArn": spec.arn,
            "OldStateValue": transition.old_state,
            "OKActions": list(spec.ok_actions),
            "AlarmActions": list(spec.alarm_actions),
            "InsufficientDataActions": list(spec.insufficient_data_actions),
            "Trigger": {
                "MetricName": spec.metric_name,
                "Namespace": spec.namespace,
                "StatisticType": "ExtendedStatistic" if percentile else "Statistic",
                ("ExtendedStatistic" if percentile else "Statistic"): spec.stat if percentile else spec.stat.upper(),
                "Unit": spec.unit,
                "Dimensions": [{"value": v, "name": k} for k, v in spec.dimensions],
                "Period": spec.period,
                "EvaluationPeriods": spec.evaluation_periods,
                "DatapointsToAlarm": spec.datapoints_to_alarm,
                "ComparisonOperator": spec.comparison,
                "Threshold": spec.threshold,
                "TreatMissingData": spec.treat_missing_data,
                "EvaluateLowSampleCountPercentile": "",
            },
        }

    def state_change_event(
        self, spec: AlarmSpec, transition: AlarmTransition, previous: dict[str, Any]
    ) -> dict[str, Any]:
        """The "CloudWatch Alarm State Change" event EventBridge receives for ``transition``."""
        previous_stamp = previous.get("StateUpdatedTimestamp")
        if isinstance(previous_stamp, datetime):
            previous_stamp = _cw_time(previous_stamp)
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "CloudWatch Alarm State Change",
            "source": "aws.cloudwatch",
            "account": self.account_id,
            "time": transition.timestamp[:19] + "Z",
            "region": self.region,
            "resources": [spec.arn],
            "detail": {
                "alarmName": spec.name,
                "state": {
                    "value": transition.new_state,
                    "reason": transition.reason,
                    "reasonData": transition.reason_data,
                    "timestamp": transition.timestamp,
                },
                "previousState": {
                    "value": transition.old_state,
                    "reason": previous.get("StateReason", ""),
                    "reasonData": previous.get("StateReasonData") or "{}",
                    "timestamp": previous_stamp or transition.timestamp,
                },
                "configuration": {
                    "description": spec.description,
                    "metrics": [
                        {
                            "id": spec.metric_id,
                            "metricStat": {
                                "metric": {
                                    "namespace": spec.namespace,
                                    "name": spec.metric_name,
                                    "dimensions": dict(spec.dimensions),
                                },
                                "period": spec.period,
                                "stat": spec.stat,
                            },
                            "returnData": True,
                        }
                    ],
                },
            },
        }
