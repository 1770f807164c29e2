import time

T_UP = time.clock_gettime(time.CLOCK_MONOTONIC)  # first user statement: the interpreter is up

"""One cold start, in a fresh process: import a handler, answer one event, report, exit.

    python _cold_child.py {sklambda|naive} SPAWNED_AT RESULT_FD

SPAWNED_AT is the parent's CLOCK_MONOTONIC reading taken just before Popen (the clock is
system-wide on Linux, so both processes read the same one). One JSON line goes to RESULT_FD;
stdout (the handler's JSON logs and EMF metric lines) is /dev/null, set by the parent.
Everything the child needs comes from the environment the parent sets, as on Lambda.
"""

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

# os.path rather than pathlib: the harness should add as little import time as it can.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Context:
    """The attributes Powertools reads from a Lambda context."""

    function_name = "sklambda-predict"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:sklambda-predict"
    aws_request_id = "00000000-0000-4000-8000-000000000001"
    log_group_name = "/aws/lambda/sklambda-predict"
    log_stream_name = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def main() -> None:
    variant, spawned_at, result_fd = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    clock = time.clock_gettime
    mono = time.CLOCK_MONOTONIC
    if variant == "sklambda":
        # template.yaml: CodeUri functions/predict, Handler app.lambda_handler (BENCH_CODE_DIR: a
        # `sam build` output, whose layers the parent puts on PYTHONPATH as Lambda puts /opt/python)
        sys.path.insert(0, os.environ.get("BENCH_CODE_DIR") or os.path.join(ROOT, "functions", "predict"))
        import app as handler_module
    elif variant == "naive":
        import naive_handler as handler_module  # benchmarks/ is sys.path[0]
    elif variant == "floor":
        # What any handler on this stack imports before it can answer: numpy, pydantic, Powertools'
        # logger and metrics, botocore and an S3 client. Answers nothing else.
        import types

        import botocore.session
        import numpy  # noqa: F401
        import pydantic  # noqa: F401
        from aws_lambda_powertools import Logger, Metrics  # noqa: F401

        botocore.session.get_session().create_client("s3")
        handler_module = types.SimpleNamespace(lambda_handler=lambda e, c: {"statusCode": 200, "body": "{}"})
    else:
        raise SystemExit(f"unknown variant {variant!r}")
    t_imported = clock(mono)
    with open(os.environ.get("BENCH_EVENT") or os.path.join(ROOT, "events", "predict_default.json")) as f:
        event = json.load(f)
    response = handler_module.lambda_handler(event, _Context())
    t_answered = clock(mono)
    body = json.loads(response["body"])
    line = json.dumps(
        {
            "variant": variant,
            "status": response["statusCode"],
            "probabilities": body.get("probabilities"),
            "interpreter_s": T_UP - spawned_at,
            "import_s": t_imported - T_UP,
            "first_invoke_s": t_answered - t_imported,
            "total_s": t_answered - spawned_at,
            "sklearn_imported": "sklearn" in sys.modules,
        }
    )
    with os.fdopen(result_fd, "w") as out:
        out.write(line + "\n")


if __name__ == "__main__":
    main()
