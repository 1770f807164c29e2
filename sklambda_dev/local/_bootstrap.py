"""The runtime loop inside one local function worker process (a Lambda execution environment).

Started by ``worker.py`` as ``python -I -u _bootstrap.py <rpc-fd> [layer-dir ...]`` with the
function's environment. It is stdlib-only and run by path in isolated mode, so nothing of
sklambda_dev (nor the current directory) is importable by the handler: like /var/task in Lambda,
CodeUri comes first on sys.path, then the layer directories.

Protocol on the RPC fd (multiprocessing Connection framing, JSON payloads); stdout and stderr are
left to the handler's logs and EMF metrics, exactly as in Lambda:
  parent → {"type": "invoke", "request_id", "event", "timeout_ms", "invoked_function_arn"}
  child  → {"type": "init", "init_ms"}                     first invoke only, after the import
  child  → {"type": "result", "ok": true, "duration_ms", "max_memory_mb"} then the payload bytes
         | {"type": "result", "ok": false, "error": {...}, "fatal": bool, ...}
The loop ends when the parent closes the connection.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

# Lambda's synchronous response limit ("Response payload size exceeded maximum allowed payload
# size (6291556 bytes).").
MAX_RESPONSE_BYTES = 6291556


class LambdaContext:
    """The attributes and method of the Python runtime's context object (awslambdaric)."""

    def __init__(self, request_id: str, deadline_ms: int, invoked_function_arn: str) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        # A string in the real runtime too (it is read from the environment).
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def log(self, message: str) -> None:
        sys.stdout.write(message)

    def __repr__(self) -> str:
        return (
            f"LambdaContext(aws_request_id={self.aws_request_id!r}, "
            f"function_name={self.function_name!r}, "
            f"invoked_function_arn={self.invoked_function_arn!r})"
        )


def _error(exc: BaseException, error_type: str | None = None, message: str | None = None) -> dict[str, Any]:
    frames = traceback.extract_tb(exc.__traceback__)[1:]  # drop this loop's own frame
    return {
        "errorMessage": str(exc) if message is None else message,
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_list(frames),
    }


def _log_error(error: dict[str, Any]) -> None:
    # What the Python runtime writes to the function's log for an uncaught error.
    print(f"[ERROR] {error['errorType']}: {error['errorMessage']}", flush=True)
    if error["stackTrace"]:
        print("Traceback (most recent call last):\n" + "".join(error["stackTrace"]).rstrip(), flush=True)


def _load_handler(spec: str) -> Any:
    """Import ``module.function`` the way Lambda does, mapping failures to Lambda's error types."""
    module_name, _, function_name = spec.rpartition(".")
    module_name = module_name.replace("/", ".")
    try:
        module = importlib.import_module(module_name)
    except SyntaxError as exc:
        raise _InitError(_error(exc, "Runtime.UserCodeSyntaxError")) from exc
    except ImportError as exc:
        raise _InitError(
            _error(exc, "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}")
        ) from exc
    except Exception as exc:
        raise _InitError(_error(exc)) from exc
    handler = getattr(module, function_name, None)
    if not callable(handler):
        raise _InitError(
            {
                "errorMessage": f"Handler '{function_name}' missing on module '{module_name}'",
                "errorType": "Runtime.HandlerNotFound",
                "stackTrace": [],
            }
        )
    return handler


class _InitError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["errorMessage"])
        self.error = error


def _max_memory_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KiB on Linux


def main() -> int:
    conn = Connection(int(sys.argv[1]))
    sys.path[:0] = [os.environ["LAMBDA_TASK_ROOT"], *sys.argv[2:]]
    sys.argv = [sys.argv[0]]
    handler = None
    version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    while True:
        try:
            message = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return 0
        request_id = message["request_id"]
        print(f"START RequestId: {request_id} Version: {version}", flush=True)
        if handler is None:
            started = time.perf_counter()
            try:
                handler = _load_handler(os.environ["_HANDLER"])
            except _InitError as exc:
                _log_error(exc.error)
                print(f"END RequestId: {request_id}", flush=True)
                conn.send_bytes(json.dumps({"type": "result", "ok": False, "fatal": True, "error": exc.error}).encode())
                return 1  # Lambda discards an environment whose init failed
            init_ms = (time.perf_counter() - started) * 1000
            conn.send_bytes(json.dumps({"type": "init", "init_ms": init_ms}).encode())
        deadline_ms = int(time.time() * 1000) + int(message["timeout_ms"])
        context = LambdaContext(request_id, deadline_ms, message["invoked_function_arn"])
        started = time.perf_counter()
        error = payload = None
        try:
            result = handler(message["event"], context)
            try:
                payload = json.dumps(result).encode()
            except (TypeError, ValueError) as exc:
                error = {
                    "errorMessage": f"Unable to marshal response: {exc}",
                    "errorType": "Runtime.MarshalError",
                    "stackTrace": [],
                }
            else:
                if len(payload) > MAX_RESPONSE_BYTES:
                    error = {
                        "errorMessage": "Response payload size exceeded maximum allowed payload size "
                        f"({MAX_RESPONSE_BYTES} bytes).",
                        "errorType": "Function.ResponseSizeTooLarge",
                        "stackTrace": [],
                    }
        except Exception as exc:
            error = _error(exc)
        duration_ms = (time.perf_counter() - started) * 1000
        if error is not None:
            error["requestId"] = request_id
            _log_error(error)
        sys.stdout.flush()
        sys.stderr.flush()
        print(f"END RequestId: {request_id}", flush=True)
        header = {"type": "result", "ok": error is None, "duration_ms": duration_ms}
        header["max_memory_mb"] = _max_memory_mb()
        if error is not None:
            header["error"] = error
        conn.send_bytes(json.dumps(header).encode())
        if payload is not None and error is None:
            conn.send_bytes(payload)


if __name__ == "__main__":
    sys.exit(main())
