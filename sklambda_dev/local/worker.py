"""Per-function worker processes: the local equivalent of Lambda execution environments.

Each worker is a separate Python process (``_bootstrap.py``) that runs one function with only
that function's environment, so functions are isolated from each other and from the gateway. A
:class:`FunctionPool` keeps up to ``max_concurrency`` workers per function, created on demand and
serving one request at a time each, like Lambda concurrency. The first request a worker serves
imports the handler (a real, visible cold start); later requests reuse it (warm).

Requests and results travel over a dedicated socket (never stdout): the worker's stdout/stderr
are the function's log, relayed line by line to this process's log with the function's name, and
every EMF line on stdout becomes CloudWatch metrics (see :mod:`.emf`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any

from .template import Function

__all__ = ["FunctionPool", "FunctionWorker", "InvokeResult", "worker_environment"]

log = logging.getLogger(__name__)
function_log = logging.getLogger("sklambda_dev.local.functions")

BOOTSTRAP = Path(__file__).with_name("_bootstrap.py")
# Lambda's synchronous invocation request limit (6 MB).
MAX_REQUEST_BYTES = 6291456
# Lambda gives the init phase (import of the handler module) up to 10 s of its own.
INIT_TIMEOUT_S = 10.0
# How long an invoke waits for the log relay to catch up with the END line (metrics published).
LOG_FLUSH_TIMEOUT_S = 2.0
STOP_GRACE_S = 2.0

# Environment variables the worker inherits from this process; everything else is set explicitly.
_INHERITED = ("PATH", "VIRTUAL_ENV", "TMPDIR", "SYSTEMROOT")


@dataclass
class InvokeResult:
    """The outcome of one invocation, as the Lambda service would report it to its caller.

    ``status`` is "ok", "error" (handler raised, init failed, worker died), "timeout" (the
    function ran past its Timeout; the worker was killed), "throttled" (no worker became free in
    time) or "too_large" (request over Lambda's 6 MB limit).
    """

    request_id: str
    status: str
    payload: Any = None
    error: dict[str, Any] | None = None
    cold_start: bool = False
    init_ms: float | None = None
    duration_ms: float = 0.0
    max_memory_mb: int | None = None
    worker_pid: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def worker_environment(function: Function, aws_env: Mapping[str, str]) -> dict[str, str]:
    """The complete environment of a worker process for ``function`` (log stream name aside).

    Order matters: the function's own variables (Globals merged in) come first, then what Lambda
    reserves and the emulator endpoint/credentials, which a template cannot override. X-Ray is
    disabled because there is no X-Ray daemon locally.
    """
    env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
    env.update({"LANG": "C.UTF-8", "TZ": ":UTC"})
    env.update(function.environment)
    env.update(
        {
            # Keep the developer's ~/.aws profiles out of the function, like a Lambda role would.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            **aws_env,
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.name}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.runtime or 'python3'}",
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            "_HANDLER": function.handler,
            "LAMBDA_TASK_ROOT": str(function.code_uri),
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    )
    return env


class FunctionWorker:
    """One worker process. Not thread-safe: the pool hands it to one request at a time."""

    def __init__(
        self,
        function: Function,
        env: Mapping[str, str],
        on_stdout_line: Callable[[str], object] | None = None,
    ) -> None:
        self.function = function
        self.invoked_function_arn = function.arn + (
            f":{function.auto_publish_alias}" if function.auto_publish_alias else ""
        )
        stream = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self._env = {**env, "AWS_LAMBDA_LOG_STREAM_NAME": stream}
        self._on_stdout_line = on_stdout_line
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._relays: list[threading.Thread] = []
        self._end_seen = threading.Event()
        self._awaiting_end: str | None = None
        self.initialized = False
        self.invocations = 0
        self._spawned_at = 0.0
        self._retired = False  # init failed or timed out: never reused, even before it exits

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return not self._retired and self._proc is not None and self._proc.poll() is None and self._conn is not None

    def start(self) -> None:
        parent_sock, child_sock = socket.socketpair()
        self._spawned_at = time.perf_counter()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-u", str(BOOTSTRAP), str(child_sock.fileno())]
                + [str(p) for p in self.function.layers],
                env=self._env,
                cwd=self.function.code_uri,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(child_sock.fileno(),),
                # Own process group: a Ctrl-C in the terminal reaches the stack, which then stops
                # its workers cleanly, instead of every worker printing a KeyboardInterrupt.
                start_new_session=True,
            )
        finally:
            child_sock.close()
        self._conn = Connection(parent_sock.detach())
        assert self._proc.stdout is not None and self._proc.stderr is not None
        for stream, is_stdout in ((self._proc.stdout, True), (self._proc.stderr, False)):
            thread = threading.Thread(
                target=self._relay,
                args=(stream, is_stdout),
                name=f"sklambda-log-{self.function.logical_id}-{self._proc.pid}",
                daemon=True,
            )
            thread.start()
            self._relays.append(thread)

    def _relay(self, stream: IO[bytes], is_stdout: bool) -> None:
        """Copy the worker's output to our log; hand EMF lines on; notice the END of a request."""
        name = self.function.logical_id
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if is_stdout and self._on_stdout_line is not None:
                self._on_stdout_line(line)
            function_log.info("[%s] %s", name, line)
            if is_stdout and self._awaiting_end and line == f"END RequestId: {self._awaiting_end}":
                self._end_seen.set()
        stream.close()

    # --------------------------------------------------------------------------------- invoke
    def invoke(self, request: bytes, request_id: str) -> InvokeResult:
        """Send one encoded invoke message and wait for its result (killing the worker on timeout)."""
        assert self._conn is not None and self._proc is not None
        cold = not self.initialized
        result = InvokeResult(request_id=request_id, status="error", cold_start=cold, worker_pid=self.pid)
        self._end_seen.clear()
        self._awaiting_end = request_id
        try:
            self._conn.send_bytes(request)
            if cold:
                message = self._receive(INIT_TIMEOUT_S)
                if message is None:
                    return self._timed_out(result, INIT_TIMEOUT_S, "init")
                if message["type"] == "init":
                    # Lambda's Init Duration covers starting the runtime and importing the handler.
                    result.init_ms = (time.perf_counter() - self._spawned_at) * 1000
                    self.initialized = True
                else:  # init failed: the worker exits on its own; Lambda retries init next time
                    self._retired = True
                    result.error = message["error"]
                    return result
            message = self._receive(float(self.function.timeout))
            if message is None:
                return self._timed_out(result, float(self.function.timeout), "task")
            result.duration_ms = message["duration_ms"]
            result.max_memory_mb = message.get("max_memory_mb")
            if message["ok"]:
                result.payload = json.loads(self._conn.recv_bytes())
                result.status = "ok"
            else:
                result.error = message["error"]
            self._end_seen.wait(LOG_FLUSH_TIMEOUT_S)  # its log (and EMF lines) has been relayed
            return result
        except (EOFError, OSError, ValueError) as exc:
            try:
                code: int | None = self._proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                code = None
            result.error = {
                "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: {code} ({exc})",
                "errorType": "Runtime.ExitError",
            }
            return result
        finally:
            self._awaiting_end = None
            self.invocations += 1

    def _receive(self, timeout: float) -> dict[str, Any] | None:
        assert self._conn is not None
        if not self._conn.poll(timeout):
            return None
        return json.loads(self._conn.recv_bytes())

    def _timed_out(self, result: InvokeResult, seconds: float, phase: str) -> InvokeResult:
        what = "Task" if phase == "task" else "Init phase"
        function_log.warning(
            "[%s] %s %s timed out after %.2f seconds",
            self.function.logical_id,
            result.request_id,
            what,
            seconds,
        )
        self._retired = True
        self.kill()
        result.status = "timeout"
        result.duration_ms = seconds * 1000
        result.error = {
            "errorMessage": f"{result.request_id} {what} timed out after {seconds:.2f} seconds",
            "errorType": "Sandbox.Timedout",
        }
        return result

    # ------------------------------------------------------------------------------ lifecycle
    def kill(self) -> None:
        """Kill the worker and anything it spawned (its whole process group) right away."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
        self._cleanup()

    def stop(self) -> None:
        """Close the connection (the worker exits its loop), then kill it if it lingers."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=STOP_GRACE_S)
        self.kill()

    def _cleanup(self) -> None:
        if self._proc is not None:
            self._proc.wait()
            # A daemon left behind in the group would keep the pipes open; it got SIGKILL too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
        for thread in self._relays:
            thread.join(timeout=STOP_GRACE_S)
        self._relays = []
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class FunctionPool:
    """Up to ``max_concurrency`` workers for one function, created lazily, one request each at a time."""

    def __init__(
        self,
        function: Function,
        env: Mapping[str, str],
        *,
        max_concurrency: int = 4,
        on_stdout_line: Callable[[str], object] | None = None,
    ) -> None:
        self.function = function
        self.env = dict(env)
        self.max_concurrency = max_concurrency
        self._on_stdout_line = on_stdout_line
        self._slots = threading.BoundedSemaphore(max(max_concurrency, 0))
        self._lock = threading.Lock()
        self._idle: list[FunctionWorker] = []
        self._busy: set[FunctionWorker] = set()
        self._closed = False
        self.cold_starts = 0
        self.invocations = 0

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "function": self.function.logical_id,
                "workers": len(self._idle) + len(self._busy),
                "busy": len(self._busy),
                "cold_starts": self.cold_starts,
                "invocations": self.invocations,
                "worker_pids": sorted(w.pid for w in [*self._idle, *self._busy] if w.pid),
            }

    def invoke(
        self,
        event: Any,
        *,
        request_id: str | None = None,
        queue_timeout: float | None = None,
        invoked_function_arn: str | None = None,
    ) -> InvokeResult:
        """Invoke the function synchronously with ``event`` (RequestResponse, like API Gateway does).

        When all workers are busy the call waits up to ``queue_timeout`` seconds (default: the
        function's Timeout) for one to free up, then reports "throttled". ``invoked_function_arn``
        (default: the function's ARN, with its AutoPublishAlias) is the handler's
        ``context.invoked_function_arn``.
        """
        request_id = request_id or str(uuid.uuid4())
        event_json = json.dumps(event)
        if len(event_json) > MAX_REQUEST_BYTES:
            return InvokeResult(
                request_id,
                "too_large",
                error={
                    "errorMessage": f"Request must be smaller than {MAX_REQUEST_BYTES} bytes "
                    "for the InvokeFunction operation",
                    "errorType": "RequestTooLargeException",
                },
            )
        wait = self.function.timeout if queue_timeout is None else queue_timeout
        # max_concurrency 0 is a function whose reserved concurrency is 0: always throttled.
        if self._closed or self.max_concurrency <= 0 or not self._slots.acquire(timeout=wait):
            return InvokeResult(
                request_id,
                "throttled",
                error={"errorMessage": "Rate Exceeded.", "errorType": "TooManyRequestsException"},
            )
        try:
            worker = self._checkout()
            if worker is None:
                return InvokeResult(
                    request_id, "error", error={"errorMessage": "stack stopped", "errorType": "ServiceException"}
                )
            header = {
                "type": "invoke",
                "request_id": request_id,
                "timeout_ms": self.function.timeout * 1000,
                "invoked_function_arn": invoked_function_arn or worker.invoked_function_arn,
            }
            # The event is serialised once: spliced into the message rather than re-encoded.
            request = json.dumps(header)[:-1] + ', "event": ' + event_json + "}"
            result = worker.invoke(request.encode(), request_id)
            self._report(result)
            self._checkin(worker)
            return result
        finally:
            self._slots.release()

    def _checkout(self) -> FunctionWorker | None:
        dead: list[FunctionWorker] = []
        try:
            with self._lock:
                if self._closed:
                    return None
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive:
                        self._busy.add(worker)
                        return worker
                    dead.append(worker)  # exited while idle: next request is a cold start
                worker = FunctionWorker(self.function, self.env, self._on_stdout_line)
                self._busy.add(worker)
        finally:
            for corpse in dead:
                corpse.kill()
        try:
            worker.start()
        except BaseException:
            with self._lock:
                self._busy.discard(worker)
            raise
        return worker

    def _checkin(self, worker: FunctionWorker) -> None:
        with self._lock:
            self._busy.discard(worker)
            self.invocations += 1
            keep = worker.alive and not self._closed
            if keep:
                self._idle.append(worker)
        if not keep:
            worker.kill()  # died, timed out, failed init, or the pool closed under it

    def _report(self, result: InvokeResult) -> None:
        """Lambda's REPORT log line, with the Init Duration of a cold start."""
        if result.cold_start:
            with self._lock:
                self.cold_starts += 1
        parts = [
            f"REPORT RequestId: {result.request_id}",
            f"Duration: {result.duration_ms:.2f} ms",
            f"Billed Duration: {math.ceil(result.duration_ms)} ms",
            f"Memory Size: {self.function.memory_size} MB",
        ]
        if result.max_memory_mb is not None:
            parts.append(f"Max Memory Used: {result.max_memory_mb} MB")
        if result.init_ms is not None:
            parts.append(f"Init Duration: {result.init_ms:.2f} ms")
        function_log.info("[%s] %s", self.function.logical_id, "\t".join(parts))
        if result.max_memory_mb and result.max_memory_mb > self.function.memory_size:
            function_log.warning(
                "[%s] used %d MB, above its MemorySize of %d MB: Lambda would kill it",
                self.function.logical_id,
                result.max_memory_mb,
                self.function.memory_size,
            )

    def close(self) -> None:
        """Stop idle workers gracefully and kill busy ones (their callers get an error result)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = list(self._busy)
        for worker in busy:
            if worker.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.pid, signal.SIGKILL)
        for worker in idle:
            worker.stop()
        deadline = time.monotonic() + STOP_GRACE_S * 2
        while time.monotonic() < deadline:  # busy workers are cleaned up by their invoking thread
            with self._lock:
                if not self._busy:
                    break
            time.sleep(0.02)
