"""``EmbeddedStack``: the whole sklambda system on a laptop, from template.yaml, without AWS or Docker.

Starting a stack starts moto's server (the AWS APIs), provisions the template's buckets, Firehose
delivery streams, SNS topics, CloudWatch alarms and Step Functions state machines in it, starts the
AWS endpoint (a proxy in front of moto that serves Lambda invocations with the local workers), the
HTTP gateway, the schedule runner and the alarm evaluator; function workers start lazily on their
first invocation. ``stop()`` undoes all of it: no process, thread or listening port is left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .alarms import AlarmEvaluator, AlarmTransition, MotoMetrics
from .emf import EmfPublisher
from .emulator import Emulator, emulator_env
from .endpoint import AwsEndpoint
from .eventbus import Delivery, EventBus
from .gateway import Gateway
from .lambda_api import LambdaInvokeApi, parse_function_name
from .persist import PersistRule, StateMirror, clear_state, persisted_buckets
from .scheduler import Scheduler
from .signals import StopRequest
from .template import DEFAULT_STACK_NAME, Function, Schedule, Template, TemplateError, load_template, load_yaml
from .worker import FunctionPool, InvokeResult, worker_environment

__all__ = ["LOCAL_PARAMETER_DEFAULTS", "EmbeddedStack"]

log = logging.getLogger(__name__)

# Applied only to parameters the template declares; the caller's overrides win.
LOCAL_PARAMETER_DEFAULTS = {"AuthType": "NONE"}

# Running stacks of this process, oldest first. moto (its backends, its settings, the MOTO_PORT its
# Step Functions interpreter calls back on) is process-wide, so MOTO_PORT names the newest stack's
# AWS endpoint and each endpoint also serves the functions of the other running stacks.
_RUNNING: list[EmbeddedStack] = []
_RUNNING_LOCK = threading.Lock()
_MOTO_PORT_BEFORE: list[str | None] = []


def _register(stack: EmbeddedStack, port: int) -> None:
    with _RUNNING_LOCK:
        if not _RUNNING:
            _MOTO_PORT_BEFORE[:] = [os.environ.get("MOTO_PORT")]
        _RUNNING.append(stack)
        os.environ["MOTO_PORT"] = str(port)


def _unregister(stack: EmbeddedStack) -> None:
    with _RUNNING_LOCK:
        if stack not in _RUNNING:
            return
        _RUNNING.remove(stack)
        if _RUNNING and _RUNNING[-1]._endpoint is not None:
            os.environ["MOTO_PORT"] = str(_RUNNING[-1]._endpoint.port)
        elif _MOTO_PORT_BEFORE and _MOTO_PORT_BEFORE[0] is not None:
            os.environ["MOTO_PORT"] = _MOTO_PORT_BEFORE[0]
        else:
            os.environ.pop("MOTO_PORT", None)


def _other_lambda_apis(stack: EmbeddedStack) -> list[LambdaInvokeApi]:
    with _RUNNING_LOCK:
        return [s._lambda_api for s in reversed(_RUNNING) if s is not stack and s._lambda_api is not None]


class EmbeddedStack:
    """A running local copy of the stack described by a SAM template.

    The local gateway does **not** authenticate requests: the local stack defaults the template's
    ``AuthType`` parameter to ``NONE`` (pass ``parameter_overrides={"AuthType": "AWS_IAM"}`` to see
    the deployed value in resolved resources, but requests are still not checked). It is bound to
    127.0.0.1 by default for that reason.

    Use as a context manager, or ``start()`` / ``stop()``::

        with EmbeddedStack("template.yaml", port=0) as stack:
            requests.post(f"{stack.api_url}/models/demo/predict", json={...})

    ``port=0`` (and ``emulator_port=0``, the default) pick free ports. ``state_file`` (e.g.
    ``.sklambda/local.json``) is written on start with the URLs, resource names and pid so other
    CLI invocations can find the running stack, and removed on stop.

    Schedules: every enabled ``Schedule`` event of every function runs every ``schedule_interval``
    seconds (default 60; ``None`` or 0 turns the timer off). The template's ``rate(...)`` /
    ``cron(...)`` expressions are **not** honoured locally (the start-up log says so): the function
    gets a real EventBridge "Scheduled Event" payload (or the event's ``Input``), one run at a
    time per schedule, the first one interval after the start; failures are logged and never stop
    the stack. ``run_schedule(logical_id)`` runs a function's schedule now, whatever the interval.

    AWS endpoint: ``endpoint_url`` (also the workers' ``AWS_ENDPOINT_URL``, the state file's
    ``endpoint_url`` and ``MOTO_PORT``, which moto's Step Functions interpreter calls) is a local
    proxy in front of moto (``emulator_url``): the Lambda Invoke API is served by the function
    workers, everything else is forwarded to moto unchanged; EventBridge ``PutEvents`` goes to the
    local event bus.

    State machines: the template's state machines are created in moto with its ASL interpreter
    switched on, so executions run the real definition and their Lambda tasks reach the real
    handlers. ``start_execution()`` / ``wait_execution()`` drive them.

    Alarms: every ``alarm_interval`` seconds (default 10; ``None`` or 0 turns the timer off) each
    template alarm is evaluated against the metrics in moto's CloudWatch (see ``alarms.py``); a state
    change is set in moto, published to the alarm's SNS actions and put on the local EventBridge
    bus as a "CloudWatch Alarm State Change" event, which the template's rules deliver to their
    targets (a state machine execution, an asynchronous Lambda invocation, an SNS message).
    ``evaluate_alarms()`` evaluates now. Periods are honoured as written.

    Kept state: with ``state_dir`` (``sklambda serve``: ``.sklambda/state/``) the buckets' objects
    survive a restart. ``persist`` maps bucket logical ids to what is kept of them (default: every
    bucket, whole); each write is mirrored into ``state_dir`` as it happens and the objects are put
    back right after the buckets are provisioned on the next start, before any function runs (see
    ``persist.py``). ``fresh=True`` clears ``state_dir`` first. moto's other services (alarm
    states, executions, metrics) start empty every time.
    """

    def __init__(
        self,
        template_path: str | Path,
        port: int = 3000,
        *,
        host: str = "127.0.0.1",
        parameter_overrides: Mapping[str, Any] | None = None,
        stack_name: str = DEFAULT_STACK_NAME,
        emulator_port: int = 0,
        state_file: str | Path | None = None,
        max_concurrency: int = 4,
        schedule_interval: float | None = 60.0,
        alarm_interval: float | None = 10.0,
        endpoint_port: int = 0,
        state_dir: str | Path | None = None,
        persist: Mapping[str, PersistRule] | None = None,
        fresh: bool = False,
    ) -> None:
        self.template_path = Path(template_path).resolve()
        self.host = host
        self.stack_name = stack_name
        self.max_concurrency = max_concurrency
        self.schedule_interval = schedule_interval if schedule_interval and schedule_interval > 0 else None
        self.alarm_interval = alarm_interval if alarm_interval and alarm_interval > 0 else None
        self.state_file = Path(state_file).resolve() if state_file else None
        self.state_dir = Path(state_dir).resolve() if state_dir else None
        self.persist = dict(persist) if persist is not None else None
        self.fresh = fresh
        self.restored: dict[str, int] = {}  # objects put back on start, per bucket logical id
        self._mirror: StateMirror | None = None
        declared = (load_yaml(self.template_path).get("Parameters") or {}).keys()
        overrides = {k: v for k, v in LOCAL_PARAMETER_DEFAULTS.items() if k in declared}
        overrides.update(parameter_overrides or {})
        self.template: Template = load_template(self.template_path, overrides, stack_name=stack_name)
        self.emulator = Emulator(host=host, port=emulator_port, region=self.template.region)
        self._requested_port = port
        self._requested_endpoint_port = endpoint_port
        self._endpoint: AwsEndpoint | None = None
        self._lambda_api: LambdaInvokeApi | None = None
        self._bus: EventBus | None = None
        self._alarms: AlarmEvaluator | None = None
        self._gateway: Gateway | None = None
        self._pools: dict[str, FunctionPool] = {}
        self._pools_lock = threading.Lock()
        self._emf: EmfPublisher | None = None
        self._scheduler: Scheduler | None = None
        self._stopped = threading.Event()
        self._started = False

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> EmbeddedStack:
        if self._started:
            return self
        self._started = True
        self._stopped.clear()
        atexit.register(self.stop)
        try:
            # Resolve everything before starting anything: a template error costs no process.
            functions = self.template.functions
            streams, topics, alarms = self.template.delivery_streams, self.template.topics, self.template.alarms
            schedules, machines, rules = self.template.schedules, self.template.state_machines, self.template.rules
            region, account_id = self.template.region, self.template.account_id
            self.emulator.start()
            self.emulator.enable_step_functions()
            self.emulator.provision_buckets(self.template.buckets)
            self._start_mirror()
            self.emulator.provision_delivery_streams(streams)
            self.emulator.provision_topics(topics)
            self.emulator.provision_alarms(alarms)
            self.emulator.provision_state_machines(machines)
            self._emf = EmfPublisher(self.emulator.client("cloudwatch"))
            self._emf.warm_up()
            self._lambda_api = LambdaInvokeApi(
                functions,
                self.invoke,
                region=region,
                account_id=account_id,
                fallbacks=lambda: _other_lambda_apis(self),
            )
            sfn, sns = self.emulator.client("stepfunctions"), self.emulator.client("sns")
            self._bus = EventBus(
                rules,
                start_execution=lambda arn, text: sfn.start_execution(
                    stateMachineArn=arn, input=text, name=str(uuid.uuid4())
                )["executionArn"],
                invoke_function=self._invoke_arn_async,
                publish=lambda arn, text: sns.publish(TopicArn=arn, Message=text)["MessageId"],
                account_id=account_id,
                region=region,
            )
            self._endpoint = AwsEndpoint(
                self.emulator.endpoint_url,
                self._lambda_api,
                host=self.host,
                port=self._requested_endpoint_port,
                event_bus=self._bus,
            ).start()
            _register(self, self._endpoint.port)
            self._gateway = Gateway(
                self.template.routes,
                self.invoke,
                host=self.host,
                port=self._requested_port,
                api_id=self._api_id(),
                account_id=account_id,
                lambda_api=self._lambda_api,
                on_request=self._api_metrics,
            ).start()
            self._scheduler = Scheduler(
                schedules,
                self.invoke,
                interval=self.schedule_interval,
                account_id=self.template.account_id,
                region=self.template.region,
            ).start()
            self._alarms = AlarmEvaluator(
                alarms,
                cloudwatch=self.emulator.client("cloudwatch"),
                sns=sns,
                metrics=MotoMetrics(account_id, region),
                bus=self._bus,
                account_id=account_id,
                region=region,
                flush=lambda: self.flush_metrics(5.0),
            ).start(self.alarm_interval)
            self._write_state()
            log.info(
                "local stack %r ready: %d function(s), API %s, AWS endpoint %s",
                self.stack_name,
                len(functions),
                self.api_url,
                self.endpoint_url,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the gateway, every worker process and moto; remove the state file. Idempotent."""
        if not self._started:
            return
        self._started = False
        if self._alarms is not None:
            self._alarms.stop()
        if self._scheduler is not None:
            self._scheduler.stop_ticking()
        if self._gateway is not None:
            self._gateway.stop_accepting()
        with self._pools_lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()
        if self._scheduler is not None:
            self._scheduler.join()  # a run in flight has just lost its worker
            self._scheduler = None
        if self._gateway is not None:
            self._gateway.close()
            self._gateway = None
        if self._endpoint is not None:
            _unregister(self)
            self._endpoint.close()
            self._endpoint = None
        if self._emf is not None:
            self._emf.close()
            self._emf = None
        if self._mirror is not None:  # after every writer has stopped, before moto does
            self._mirror.stop()
            self._mirror = None
        self.emulator.stop()
        self._remove_state()
        atexit.unregister(self.stop)
        self._stopped.set()
        log.info("local stack %r stopped", self.stack_name)

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Block until Ctrl-C, SIGTERM or ``stop()`` from another thread, then stop cleanly.

        The signals are caught before the stack starts: one during the start lets it finish, then
        stops it (a second one interrupts). See ``signals.py`` for why the handler only sets a flag.
        """
        request = StopRequest()
        with request.catching():
            try:
                self.start()
                request.wait(also=self._stopped)
                if request.signal is not None:
                    log.info("%s received, stopping", signal.Signals(request.signal).name)
            finally:
                self.stop()

    # ----------------------------------------------------------------------------- accessors
    @property
    def running(self) -> bool:
        return self._started

    @property
    def api_url(self) -> str:
        if self._gateway is None:
            raise RuntimeError("stack not started")
        return self._gateway.url

    @property
    def port(self) -> int:
        if self._gateway is None:
            raise RuntimeError("stack not started")
        return self._gateway.port

    @property
    def endpoint_url(self) -> str:
        """The AWS endpoint every client gets: Lambda invocations served locally, the rest by moto."""
        if self._endpoint is None:
            raise RuntimeError("stack not started")
        return self._endpoint.url

    @property
    def emulator_url(self) -> str:
        """moto itself, behind the AWS endpoint (nothing there runs Lambda code)."""
        return self.emulator.endpoint_url

    def aws_env(self) -> dict[str, str]:
        """AWS_ENDPOINT_URL, fake credentials and region: what makes boto3 use the local stack."""
        return emulator_env(self.endpoint_url, self.template.region)

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client bound to the AWS endpoint (ignores the caller's AWS profile)."""
        kwargs.setdefault("endpoint_url", self.endpoint_url)
        return self.emulator.client(service, **kwargs)

    def bucket(self, logical_id: str) -> str:
        """Physical (local) name of the template's bucket ``logical_id``."""
        return self.template.bucket(logical_id).name

    def function(self, logical_id: str) -> Function:
        return self.template.function(logical_id)

    def stream(self, logical_id: str) -> str:
        """Physical (local) name of the template's Firehose delivery stream ``logical_id``."""
        return self.template.delivery_stream(logical_id).name

    def topic_arn(self, logical_id: str) -> str:
        """ARN of the template's SNS topic ``logical_id`` in the emulator."""
        return self.template.topic(logical_id).arn

    def alarm_names(self) -> list[str]:
        """Names of the template's CloudWatch alarms."""
        return [alarm.name for alarm in self.template.alarms]

    # ------------------------------------------------------------------------ alarms, events
    def _evaluator(self) -> AlarmEvaluator:
        if self._alarms is None:
            raise RuntimeError("stack not started")
        return self._alarms

    def evaluate_alarms(self) -> list[AlarmTransition]:
        """Evaluate every template alarm now (metrics printed so far included); returns the state changes.

        Each change has been set in moto, published to the alarm's SNS actions and put on the local
        EventBridge bus by the time this returns (``transition.deliveries`` says where it went).
        """
        return self._evaluator().evaluate()

    def alarm_states(self) -> dict[str, str]:
        """Every template alarm's state in moto: alarm name → OK | ALARM | INSUFFICIENT_DATA."""
        return self._evaluator().states()

    @property
    def alarm_transitions(self) -> list[AlarmTransition]:
        """Every alarm state change so far, oldest first."""
        return list(self._evaluator().transitions)

    @property
    def unsupported_alarms(self) -> dict[str, str]:
        """Alarms the local evaluator skips, with the reason."""
        return dict(self._evaluator().unsupported)

    def put_event(self, event: dict[str, Any], event_bus: str = "default") -> list[Delivery]:
        """Put ``event`` on the local EventBridge bus: every matching rule delivers it to its targets.

        ``event`` needs ``source`` and ``detail-type``; ``id``, ``time``, ``account``, ``region`` and
        ``resources`` are filled in as EventBridge does. Returns one Delivery per target reached.
        """
        if self._bus is None:
            raise RuntimeError("stack not started")
        return self._bus.put_event(event, event_bus)

    @property
    def event_deliveries(self) -> list[Delivery]:
        """Every EventBridge delivery so far (alarm state changes and put events), oldest first."""
        return list(self._bus.deliveries) if self._bus is not None else []

    def _invoke_arn_async(self, arn: str, payload: Any) -> None:
        """An EventBridge Lambda target: an asynchronous invocation of the function ``arn`` names."""
        ref = parse_function_name(arn)
        found = self._lambda_api.resolve(ref) if ref is not None and self._lambda_api is not None else None
        if found is None:
            raise TemplateError(f"no local function for {arn}")
        api, function = found
        threading.Thread(
            target=api.invoke_async,
            args=(function.logical_id, payload, arn),
            name=f"sklambda-event-{function.logical_id}",
            daemon=True,
        ).start()

    # -------------------------------------------------------------------------- state machines
    def state_machine_arn(self, logical_id: str) -> str:
        """ARN of the template's state machine ``logical_id`` in moto."""
        return self.template.state_machine(logical_id).arn

    def start_execution(self, logical_id: str, input: Any = None, name: str | None = None) -> str:
        """Start an execution of state machine ``logical_id`` (``input``: JSON text or a JSON value); its ARN."""
        text = input if isinstance(input, str) else json.dumps({} if input is None else input)
        sfn = self.emulator.client("stepfunctions")
        # moto names an unnamed execution "None" (AWS: a UUID), so one is always given.
        response = sfn.start_execution(
            stateMachineArn=self.state_machine_arn(logical_id), input=text, name=name or str(uuid.uuid4())
        )
        return str(response["executionArn"])

    def wait_execution(self, execution_arn: str, timeout: float = 60.0, poll: float = 0.05) -> dict[str, Any]:
        """Wait until the execution leaves RUNNING; its DescribeExecution answer. TimeoutError after ``timeout``."""
        sfn = self.emulator.client("stepfunctions")
        deadline = time.monotonic() + timeout
        while True:
            description = sfn.describe_execution(executionArn=execution_arn)
            description.pop("ResponseMetadata", None)
            if description["status"] != "RUNNING":
                return dict(description)
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_arn} still RUNNING after {timeout} s")
            time.sleep(poll)

    def executions(self, logical_id: str) -> list[dict[str, Any]]:
        """ListExecutions of state machine ``logical_id``, newest first."""
        sfn = self.emulator.client("stepfunctions")
        pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=self.state_machine_arn(logical_id))
        return [e for page in pages for e in page["executions"]]

    @property
    def schedules(self) -> list[Schedule]:
        return list(self.template.schedules)

    def run_schedule(self, logical_id: str, event: str | None = None) -> InvokeResult:
        """Run the ``Schedule`` event of function ``logical_id`` now and wait for the result.

        The function gets the same EventBridge payload as a timed run. If a timed run of the same
        schedule is in flight, this one starts when it ends. ``event`` names the schedule when the
        function has several. Works with the timer off (``schedule_interval=None``).
        """
        if self._scheduler is None:
            raise RuntimeError("stack not started")
        candidates = [s for s in self.template.schedules_of(logical_id) if event in (None, s.event)]
        if not candidates:
            self.template.function(logical_id)  # unknown function → TemplateError
            raise TemplateError(f"{logical_id} has no Schedule event{f' {event!r}' if event else ''}")
        if len(candidates) > 1:
            names = sorted(s.event for s in candidates)
            raise TemplateError(f"{logical_id} has several Schedule events {names}: pass event=")
        return self._scheduler.run_now(candidates[0].key)

    def schedule_stats(self) -> dict[str, dict[str, Any]]:
        """Per schedule ("Function.Event"): runs so far, ticks skipped, status of the last run, timer on."""
        scheduler = self._scheduler
        if scheduler is None:
            return {}
        return {
            key: {
                "runs": scheduler.runs[key],
                "skipped": scheduler.skipped[key],
                "last_status": last.status if (last := scheduler.last_result[key]) else None,
                "timer": scheduler.timed(key),
            }
            for key in scheduler.schedules
        }

    def function_env(self, logical_id: str) -> dict[str, str]:
        """The complete environment a worker of ``logical_id`` runs with.

        That is the template's variables (Globals merged in), the Lambda reserved variables and
        the emulator endpoint and credentials: use it to run a script exactly "as the function".
        """
        return worker_environment(self.template.function(logical_id), self.aws_env())

    def function_stats(self, logical_id: str) -> dict[str, Any]:
        """Workers, cold starts and invocations of a function so far."""
        with self._pools_lock:
            pool = self._pools.get(logical_id)
        if pool is None:
            self.template.function(logical_id)  # unknown id → TemplateError
            return {
                "function": logical_id,
                "workers": 0,
                "busy": 0,
                "cold_starts": 0,
                "invocations": 0,
                "worker_pids": [],
            }
        return pool.stats()

    @contextlib.contextmanager
    def aws_unreachable(self) -> Iterator[None]:
        """Within the block, every AWS call the functions make through the endpoint fails as if the
        service were unreachable (the proxy answers 502, which botocore retries and then raises).
        The Lambda Invoke API keeps working: it is served locally. For fault tests."""
        if self._endpoint is None:
            raise RuntimeError("the local stack is not running")
        import socket

        with socket.socket() as probe:  # a port nothing listens on
            probe.bind((self.host, 0))
            dead_port = probe.getsockname()[1]
        saved = self._endpoint.upstream_port
        self._endpoint.upstream_port = dead_port
        log.warning("AWS unreachable for the functions (fault injection)")
        try:
            yield
        finally:
            self._endpoint.upstream_port = saved
            log.warning("AWS reachable again")

    def flush_metrics(self, timeout: float = 10.0) -> bool:
        """Wait until the EMF metrics printed so far are in the emulator's CloudWatch.

        Metric extraction is asynchronous, as in AWS; after a response returns, its metrics are
        queued (the log relay has seen them) and this makes them visible. False on timeout.
        """
        return self._emf.flush(timeout) if self._emf is not None else True

    # ---------------------------------------------------------------------------------- invoke
    def invoke(self, logical_id: str, event: Any, *, invoked_function_arn: str | None = None) -> InvokeResult:
        """Invoke a function synchronously, as the Lambda service would (used by the gateway too).

        ``invoked_function_arn`` is what the handler's ``context.invoked_function_arn`` says (the
        Invoke API passes the ARN it was called with, qualifier included).
        """
        pool = self._pool(logical_id)
        result = pool.invoke(event, invoked_function_arn=invoked_function_arn)
        self._lambda_metrics(pool.function, result, invoked_function_arn)
        return result

    # ------------------------------------------------------------------------- service metrics
    def _publish_metrics(
        self, namespace: str, dimensions: dict[str, str], dimension_sets: list[list[str]], values: dict[str, float]
    ) -> None:
        """Queue service metrics to moto's CloudWatch the way a handler's EMF line is."""
        if self._emf is None:
            return
        units = {"Duration": "Milliseconds", "Latency": "Milliseconds"}
        metrics = [{"Name": name, "Unit": units.get(name, "Count")} for name in values]
        meta = {"Namespace": namespace, "Dimensions": dimension_sets, "Metrics": metrics}
        document = {"_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [meta]}, **dimensions, **values}
        self._emf.publish_line(json.dumps(document))

    def _lambda_metrics(self, function: Function, result: InvokeResult, invoked_arn: str | None) -> None:
        """What the Lambda service publishes per invocation (AWS/Lambda Invocations, Errors, Duration, Throttles).

        Dimension sets {FunctionName} and {FunctionName, Resource}, Resource being ``name`` or
        ``name:qualifier`` as invoked (HTTP API routes invoke the AutoPublishAlias, as SAM wires them).
        """
        if result.status == "too_large":
            return  # refused before it reached the function
        qualifier = function.auto_publish_alias if invoked_arn is None else None
        if invoked_arn is not None:
            ref = parse_function_name(invoked_arn)
            qualifier = ref.qualifier if ref else None
        dims = {
            "FunctionName": function.name,
            "Resource": f"{function.name}:{qualifier}" if qualifier else function.name,
        }
        if result.status == "throttled":
            values: dict[str, float] = {"Throttles": 1}
        else:
            values = {"Invocations": 1, "Errors": 0 if result.ok else 1, "Duration": round(result.duration_ms, 3)}
        self._publish_metrics("AWS/Lambda", dims, [["FunctionName"], ["FunctionName", "Resource"]], values)

    def _api_metrics(self, status: int, latency_ms: float) -> None:
        """What an HTTP API publishes per request (AWS/ApiGateway Count, 4xx, 5xx, Latency by ApiId)."""
        values = {
            "Count": 1,
            "4xx": int(400 <= status < 500),
            "5xx": int(status >= 500),
            "Latency": round(latency_ms, 3),
        }
        dims = {"ApiId": self._gateway.api_id if self._gateway else self._api_id(), "Stage": "$default"}
        self._publish_metrics("AWS/ApiGateway", dims, [["ApiId"], ["ApiId", "Stage"]], values)

    def _pool(self, logical_id: str) -> FunctionPool:
        with self._pools_lock:
            if not self._started:
                raise RuntimeError("stack not started")
            pool = self._pools.get(logical_id)
            if pool is None:
                function = self.template.function(logical_id)
                concurrency = self.max_concurrency
                if function.reserved_concurrency is not None:
                    concurrency = min(concurrency, function.reserved_concurrency)
                pool = FunctionPool(
                    function,
                    worker_environment(function, self.aws_env()),
                    max_concurrency=concurrency,
                    on_stdout_line=self._emf.publish_line if self._emf else None,
                )
                self._pools[logical_id] = pool
            return pool

    def _api_id(self) -> str:
        apis = [
            lid
            for lid in self.template.resources
            if self.template.resource_type(lid) in ("AWS::Serverless::HttpApi", "AWS::ApiGatewayV2::Api")
        ]
        return self.template.api_id(apis[0]) if apis else "local"

    # ----------------------------------------------------------------------------- kept state
    def _start_mirror(self) -> None:
        if self.state_dir is None:
            return
        if self.fresh:
            clear_state(self.state_dir)
        kept = persisted_buckets(self.template.buckets, self.persist)
        if not kept:
            return
        mirror = StateMirror(
            self.state_dir,
            kept,
            s3=self.emulator.client("s3"),
            sqs=self.emulator.client("sqs"),
            queue_name=f"{self.stack_name}-local-state"[:80],
        )
        try:
            self.restored = mirror.restore()
            self._mirror = mirror.start()
        except BaseException:
            mirror.store.close()
            raise

    def flush_state(self) -> None:
        """Return once every write so far is in ``state_dir`` (a no-op without one)."""
        if self._mirror is not None:
            self._mirror.flush()

    # ------------------------------------------------------------------------------ state file
    def state(self) -> dict[str, Any]:
        return {
            "stack_name": self.stack_name,
            "template": str(self.template_path),
            "pid": os.getpid(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "api_url": self.api_url,
            "endpoint_url": self.endpoint_url,
            "region": self.template.region,
            "buckets": {b.logical_id: b.name for b in self.template.buckets},
            "functions": {f.logical_id: f.name for f in self.template.functions},
            "routes": [r.route_key for r in self.template.routes],
            "streams": {s.logical_id: s.name for s in self.template.delivery_streams},
            "topics": {t.logical_id: t.arn for t in self.template.topics},
            "emulator_url": self.emulator_url,
            "state_dir": str(self.state_dir) if self._mirror is not None else None,
            "alarms": self.alarm_names(),
            "alarm_interval": self.alarm_interval,
            "state_machines": {m.logical_id: m.arn for m in self.template.state_machines},
            "rules": {
                r.source: {
                    "name": r.name,
                    "arn": r.arn,
                    "enabled": r.enabled,
                    "event_bus": r.event_bus,
                    "targets": [t.arn for t in r.targets],
                }
                for r in self.template.rules
            },
            "schedule_interval": self.schedule_interval,
            "schedules": {
                s.key: {
                    "function": s.function,
                    "expression": s.expression,
                    "enabled": s.enabled,
                    "rule_arn": s.rule_arn,
                }
                for s in self.template.schedules
            },
        }

    def _write_state(self) -> None:
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(self.state_file.suffix + ".tmp")
        tmp.write_text(json.dumps(self.state(), indent=2) + "\n")
        tmp.replace(self.state_file)

    def _remove_state(self) -> None:
        if self.state_file is None or not self.state_file.exists():
            return
        try:
            owner = json.loads(self.state_file.read_text()).get("pid")
        except (OSError, ValueError):
            owner = None
        if owner in (None, os.getpid()):  # never delete another running stack's file
            self.state_file.unlink(missing_ok=True)
