"""Warm, in-process timing of one bring-your-own-model version, in a process of its own.

    python _byom_warm_worker.py OUT.json --event EVENT.json --user-model USER.joblib --user-row ROW.pkl
                                         [--calls N] [--block N] [--warmup N]

Three variants, timed per call with perf_counter in interleaved blocks (A B C, B C A, C A B, ...):

- ``sklambda``: ``lambda_handler(event, context)`` of functions/predict/app.py with a one-row request (the
  runtime the manifest chose: lean numpy, or the scikit-learn fallback);
- ``bare``: the user's own fitted estimator (as they fitted it, on a DataFrame) called on that row as a
  one-row DataFrame: ``predict_proba`` for classifiers, ``predict`` for regressors;
- ``bare_served``: the same call on the version's ``model.joblib`` (the positional copy sklambda publishes)
  with the matrix the handler's validator builds: scikit-learn's cost without the DataFrame handling.

The answers are checked first: the handler must answer like the user's estimator (labels equal, values within
1e-9). stdout is a sink that only counts: the handler's logs and EMF line are still serialised, then dropped.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import sys
import time
from typing import Any


class CountingSink(io.TextIOBase):
    def __init__(self) -> None:
        self.chars = 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.chars += len(s)
        return len(s)

    def flush(self) -> None:
        return None


SINK = CountingSink()
sys.stdout = SINK  # before any handler module exists: Powertools' Logger binds sys.stdout at creation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "functions", "predict"))
TOLERANCE = 1e-9


class _Context:
    function_name = "sklambda-predict"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:sklambda-predict"
    aws_request_id = "00000000-0000-4000-8000-000000000002"
    log_group_name = "/aws/lambda/sklambda-predict"
    log_stream_name = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def interleaved(variants: dict[str, tuple[Any, tuple]], *, rounds: int, block: int) -> dict[str, list[float]]:
    names = list(variants)
    out: dict[str, list[float]] = {n: [] for n in names}
    pc = time.perf_counter
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn, args = variants[name]
            samples = out[name]
            for _ in range(block):
                t = pc()
                fn(*args)
                samples.append(pc() - t)
    return out


def _max_diff(got: Any, want: Any) -> float:
    import numpy as np

    a, b = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--event", required=True)
    p.add_argument("--user-model", required=True)
    p.add_argument("--user-row", required=True)
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--block", type=int, default=100)
    p.add_argument("--warmup", type=int, default=100)
    args = p.parse_args()

    import app  # functions/predict/app.py
    import joblib
    import numpy as np
    import pandas as pd

    ctx = _Context()
    with open(args.event) as f:
        event = json.load(f)
    first = app.lambda_handler(event, ctx)
    assert first["statusCode"] == 200, first
    service = app.service()
    name = app.settings().default_model
    loaded = service.model(name)
    manifest = loaded.manifest
    classifier = manifest.task == "classification"

    user = joblib.load(args.user_model)  # the estimator as the user fitted it
    frame = pd.read_pickle(args.user_row)  # the request's row as a one-row DataFrame
    served = joblib.load(io.BytesIO(service.registry.get_artifact(manifest, "model.joblib")))
    matrix = loaded.validator.to_matrix(json.loads(event["body"])["instances"])
    user_call = user.predict_proba if classifier else user.predict
    served_call = served.predict_proba if classifier else served.predict

    # The handler must answer like the user's own estimator before anything is timed.
    body = json.loads(first["body"])
    want = user_call(frame)
    if classifier:
        want_labels = np.asarray(user.classes_)[np.argmax(want, axis=1)].tolist()
        assert body["predictions"] == want_labels, (body["predictions"], want_labels)
        diff = _max_diff(body["probabilities"], want)
        exact = body["probabilities"] == np.asarray(want).tolist()
    else:
        diff = _max_diff(body["predictions"], want)
        exact = body["predictions"] == np.asarray(want).tolist()
    assert diff <= TOLERANCE, f"the handler differs from the user's estimator by {diff}"
    assert _max_diff(served_call(matrix), want) <= TOLERANCE

    variants = {
        "sklambda": (app.lambda_handler, (event, ctx)),
        "bare": (user_call, (frame,)),
        "bare_served": (served_call, (matrix,)),
    }
    if args.warmup:
        interleaved(variants, rounds=1, block=args.warmup)
    gc.collect()
    started = time.perf_counter()
    samples = interleaved(variants, rounds=-(-args.calls // args.block), block=args.block)
    wall = time.perf_counter() - started
    result = {
        "model": name,
        "version": loaded.version,
        "runtime": loaded.runtime,
        "samples": samples,
        "wall_s": wall,
        "answer_max_diff": diff,
        "answer_exact": exact,
        "pandas_in_worker": "pandas" in sys.modules,
    }
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
