"""``LocalStack``: the whole sklambda system on a laptop, from template.yaml, without AWS or Docker.

Starting a stack starts moto's server (the AWS APIs), provisions the template's buckets, Firehose
delivery streams, SNS topics and CloudWatch alarms in it, starts the HTTP gateway and the schedule
runner; function workers start lazily on their first invocation. ``stop()`` undoes all of it: no
process, thread or listening port is left behind.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .emf import EmfPublisher
from .emulator import Emulator
from .gateway import Gateway
from .scheduler import Scheduler
from .template import DEFAULT_STACK_NAME, Function, Schedule, Template, TemplateError, load_template, load_yaml
from .worker import FunctionPool, InvokeResult, worker_environment

__all__ = ["LOCAL_PARAMETER_DEFAULTS", "LocalStack"]

log = logging.getLogger(__name__)

# Applied only to parameters the template declares; the caller's overrides win.
LOCAL_PARAMETER_DEFAULTS = {"AuthType": "NONE"}


class LocalStack:
    """A running local copy of the stack described by a SAM template.

    The local gateway does **not** authenticate requests: the local stack defaults the template's
    ``AuthType`` parameter to ``NONE`` (pass ``parameter_overrides={"AuthType": "AWS_IAM"}`` to see
    the deployed value in resolved resources, but requests are still not checked). It is bound to
    127.0.0.1 by default for that reason.

    Use as a context manager, or ``start()`` / ``stop()``::

        with LocalStack("template.yaml", port=0) as stack:
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
    ) -> None:
        self.template_path = Path(template_path).resolve()
        self.host = host
        self.stack_name = stack_name
        self.max_concurrency = max_concurrency
        self.schedule_interval = schedule_interval if schedule_interval and schedule_interval > 0 else None
        self.state_file = Path(state_file).resolve() if state_file else None
        declared = (load_yaml(self.template_path).get("Parameters") or {}).keys()
        overrides = {k: v for k, v in LOCAL_PARAMETER_DEFAULTS.items() if k in declared}
        overrides.update(parameter_overrides or {})
        self.template: Template = load_template(self.template_path, overrides, stack_name=stack_name)
        self.emulator = Emulator(host=host, port=emulator_port, region=self.template.region)
        self._requested_port = port
        self._gateway: Gateway | None = None
        self._pools: dict[str, FunctionPool] = {}
        self._pools_lock = threading.Lock()
        self._emf: EmfPublisher | None = None
        self._scheduler: Scheduler | None = None
        self._stopped = threading.Event()
        self._started = False

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> LocalStack:
        if self._started:
            return self
        self._started = True
        self._stopped.clear()
        atexit.register(self.stop)
        try:
            # Resolve everything before starting anything: a template error costs no process.
            functions = self.template.functions
            streams, topics, alarms = self.template.delivery_streams, self.template.topics, self.template.alarms
            schedules = self.template.schedules
            self.emulator.start()
            self.emulator.provision_buckets(self.template.buckets)
            self.emulator.provision_delivery_streams(streams)
            self.emulator.provision_topics(topics)
            self.emulator.provision_alarms(alarms)
            self._emf = EmfPublisher(self.emulator.client("cloudwatch"))
            self._emf.warm_up()
            self._gateway = Gateway(
                self.template.routes,
                self.invoke,
                host=self.host,
                port=self._requested_port,
                api_id=self._api_id(),
                account_id=self.template.account_id,
                functions={f.name: f.logical_id for f in functions},
            ).start()
            self._scheduler = Scheduler(
                schedules,
                self.invoke,
                interval=self.schedule_interval,
                account_id=self.template.account_id,
                region=self.template.region,
            ).start()
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
        if self._emf is not None:
            self._emf.close()
            self._emf = None
        self.emulator.stop()
        self._remove_state()
        atexit.unregister(self.stop)
        self._stopped.set()
        log.info("local stack %r stopped", self.stack_name)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Block until Ctrl-C, SIGTERM or ``stop()`` from another thread, then stop cleanly."""
        self.start()
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, lambda *_: self._stopped.set()) if in_main else None
        try:
            while not self._stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            log.info("interrupted, stopping")
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
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
        return self.emulator.endpoint_url

    def aws_env(self) -> dict[str, str]:
        """AWS_ENDPOINT_URL, fake credentials and region: what makes boto3 use the emulator."""
        return self.emulator.env()

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client bound to the emulator (ignores the caller's AWS profile)."""
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
        """Names of the template's CloudWatch alarms (moto stores them; nothing evaluates them yet)."""
        return [alarm.name for alarm in self.template.alarms]

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
        """Per schedule ("Function.Event"): runs so far, ticks skipped, status of the last run."""
        scheduler = self._scheduler
        if scheduler is None:
            return {}
        return {
            key: {
                "runs": scheduler.runs[key],
                "skipped": scheduler.skipped[key],
                "last_status": last.status if (last := scheduler.last_result[key]) else None,
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

    def flush_metrics(self, timeout: float = 10.0) -> bool:
        """Wait until the EMF metrics printed so far are in the emulator's CloudWatch.

        Metric extraction is asynchronous, as in AWS; after a response returns, its metrics are
        queued (the log relay has seen them) and this makes them visible. False on timeout.
        """
        return self._emf.flush(timeout) if self._emf is not None else True

    # ---------------------------------------------------------------------------------- invoke
    def invoke(self, logical_id: str, event: Any) -> InvokeResult:
        """Invoke a function synchronously, as the Lambda service would (used by the gateway too)."""
        return self._pool(logical_id).invoke(event)

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
            "alarms": self.alarm_names(),
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
