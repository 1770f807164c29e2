import time

T_UP = time.clock_gettime(time.CLOCK_MONOTONIC)  # first user statement: the interpreter is up

"""One cold start of a bring-your-own-model version, in a fresh process (benchmarks/_cold_child.py's protocol).

    python _byom_cold_child.py {sklambda|naive|floor} SPAWNED_AT RESULT_FD

``sklambda`` imports functions/predict/app.py, ``naive`` benchmarks/_byom_naive_handler.py (the version's own
naive handler), ``floor`` only what any handler here imports (numpy, pydantic, Powertools, botocore) and an S3
client; the first two answer the event in ``BENCH_EVENT`` once. One JSON line goes to RESULT_FD: the child's
clock breakdown, the answer, and what was imported. With ``BYOM_NO_PANDAS=1`` pandas cannot be imported, as on
Lambda. With ``BYOM_PHASES=1`` (profiling runs only, never the timed ones) the sklambda variant also times the
steps of its first request by wrapping the library's functions: S3 client, alias, manifest, compatibility
check, verified artifact fetch, deserialisation (``BYOM_RUNTIME=sklambda-lean``: the lean runtime's import and
``lean.load`` as steps of their own), the first prediction. Diagnostics for profiling runs only: ``BYOM_GC_TIME=1``
times the cyclic garbage collector (``gc.callbacks``), ``BYOM_GC_OFF=1`` disables it for the whole process.
"""

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _NoPandas:
    """Makes pandas unimportable, as on Lambda (the layers do not ship it; lifecycle.serving_check does the same).

    scikit-learn imports pandas when it can (sklearn.utils.fixes); in this development venv it can.
    """

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r} (the Lambda layers do not ship pandas)", name=name)
        return None


if os.environ.get("BYOM_NO_PANDAS") == "1":
    sys.meta_path.insert(0, _NoPandas())

if os.environ.get("BYOM_GC_OFF") == "1":  # diagnostic only: the cold start with the cyclic collector off
    import gc

    gc.disable()

GC = {"collections": 0, "seconds": 0.0, "gen2": 0}
if os.environ.get("BYOM_GC_TIME") == "1":  # profiling runs only: time spent in the cyclic garbage collector
    import gc

    _gc_started = [0.0]

    def _gc_callback(phase, info):
        if phase == "start":
            _gc_started[0] = time.perf_counter()
        else:
            GC["collections"] += 1
            GC["gen2"] += info["generation"] == 2
            GC["seconds"] += time.perf_counter() - _gc_started[0]

    gc.callbacks.append(_gc_callback)


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


def _instrument(phases: dict) -> None:
    """Wrap the first request's steps with timers (the wrappers add microseconds; used only when profiling)."""
    import app

    from sklambda.registry.store import ModelRegistry
    from sklambda.serving import loader, service

    pc = time.perf_counter

    def timed(label, fn):
        def wrapper(*args, **kwargs):
            started = pc()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[label] = phases.get(label, 0.0) + pc() - started

        return wrapper

    app.s3_client = timed("S3 client (botocore session, endpoint, client)", app.s3_client)
    for name, label in (
        ("get_alias_if_changed", "alias read (S3 GET)"),
        ("get_alias", "alias read (S3 GET)"),
        ("get_manifest", "manifest read + pydantic parse"),
        ("get_artifact", "artifact fetch + sha256"),
    ):
        setattr(ModelRegistry, name, timed(label, getattr(ModelRegistry, name)))
    runtime = os.environ.get("BYOM_RUNTIME")
    if runtime == "sklambda-lean":  # the lean runtime's modules, imported here so their import is a step of its own
        started = pc()
        from sklambda.serving import lean

        phases["import the lean runtime (sklambda.serving.lean)"] = pc() - started
        lean.load = timed("lean.load (parse + check the artifact)", lean.load)
    loader.check_compatibility = timed("scikit-learn version check (importlib.metadata)", loader.check_compatibility)
    loader.deserialise_sklearn = timed("joblib.load (imports joblib, scikit-learn, scipy)", loader.deserialise_sklearn)
    service.load_version = timed("load_version (all of loading)", service.load_version)
    loader.LoadedModel.predict = timed("first prediction", loader.LoadedModel.predict)


def main() -> None:
    variant, spawned_at, result_fd = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    clock = time.clock_gettime
    mono = time.CLOCK_MONOTONIC
    phases: dict = {}
    if variant == "sklambda":
        sys.path.insert(0, os.path.join(ROOT, "functions", "predict"))  # template.yaml: CodeUri functions/predict
        import app as handler_module
    elif variant == "naive":
        import _byom_naive_handler as handler_module  # benchmarks/ is sys.path[0]
    elif variant == "floor":
        # What any handler on this stack imports before it can answer (as in _cold_child.py): numpy, pydantic,
        # Powertools' logger and metrics, botocore and an S3 client. Answers nothing else.
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
    if variant == "sklambda" and os.environ.get("BYOM_PHASES") == "1":
        _instrument(phases)  # part of the first invoke: the lean runtime's import happens there without it too
    with open(os.environ["BENCH_EVENT"]) as f:
        event = json.load(f)
    response = handler_module.lambda_handler(event, _Context())
    t_answered = clock(mono)
    body = json.loads(response["body"])
    line = json.dumps(
        {
            "variant": variant,
            "status": response["statusCode"],
            "predictions": body.get("predictions"),
            "probabilities": body.get("probabilities"),
            "interpreter_s": T_UP - spawned_at,
            "import_s": t_imported - T_UP,
            "first_invoke_s": t_answered - t_imported,
            "total_s": t_answered - spawned_at,
            "sklearn_imported": "sklearn" in sys.modules,
            "scipy_imported": "scipy" in sys.modules,
            "pandas_imported": "pandas" in sys.modules,
            "phases": phases,
            "gc": GC,
        }
    )
    with os.fdopen(result_fd, "w") as out:
        out.write(line + "\n")


if __name__ == "__main__":
    main()
