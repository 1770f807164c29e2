"""Warm, in-process measurements in one process of their own (the S3 emulator lives in the parent).

    python _warm_worker.py OUT.json --event EVENT.json --batch-event BATCH.json
                                    [--calls N] [--block N] [--warmup N] [--batch-calls N]
                                    [--batch-block N] [--profile-calls N] [--layer-calls N] [--prof PATH]

Calls ``lambda_handler`` of functions/predict/app.py and of benchmarks/naive_handler.py directly
(the event dict in, the response dict out, as the Lambda runtime does), and scikit-learn's bare
``predict_proba`` (the version's ``model.joblib`` pipeline) on the row the handler builds, in
interleaved blocks (A B C, B C A, C A B, ...) so machine noise lands on every variant alike. Each
call is timed alone with perf_counter. The handler serves the model it would serve on Lambda: the
lean runtime when the version converted (the manifest says), scikit-learn otherwise.

stdout is replaced by a sink that only counts what is written: the handler's JSON log lines and
its EMF metric line are still formatted and serialised inside the timed call, then dropped.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import sys
import time
from typing import Any


class CountingSink(io.TextIOBase):
    """A null stdout that counts lines and characters (proof the metrics were serialised)."""

    def __init__(self) -> None:
        self.chars = 0
        self.lines = 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.chars += len(s)
        self.lines += s.count("\n")
        return len(s)

    def flush(self) -> None:
        return None


SINK = CountingSink()
sys.stdout = SINK  # before any handler module exists: Powertools' Logger binds sys.stdout at creation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "functions", "predict"))


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
    """Run ``block`` timed calls of each variant per round, rotating the order every round."""
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


def profile(fn: Any, fargs: tuple, calls: int, path: str | None) -> dict[str, str]:
    """cProfile ``calls`` calls; pstats listings by own time and by cumulative time."""
    if not calls:
        return {}
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        fn(*fargs)
    prof.disable()
    if path:
        prof.dump_stats(path)
    out = {}
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(60)
        out[key] = buf.getvalue()
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--event", required=True)
    p.add_argument("--batch-event", required=True)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--block", type=int, default=100)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--batch-calls", type=int, default=40)
    p.add_argument("--batch-block", type=int, default=4)
    p.add_argument("--layer-calls", type=int, default=500)
    p.add_argument("--profile-calls", type=int, default=500)
    p.add_argument("--prof", default=None)
    args = p.parse_args()

    import app  # functions/predict/app.py: Handler app.lambda_handler
    import joblib
    import naive_handler  # benchmarks/naive_handler.py: downloads and loads the model at import

    ctx = _Context()
    with open(args.event) as f:
        event = json.load(f)
    with open(args.batch_event) as f:
        batch_event = json.load(f)

    first = app.lambda_handler(event, ctx)  # cold path: alias, manifest, artifact, verify, load
    assert first["statusCode"] == 200, first
    service = app.service()
    name = service.loaded(app.settings().default_model).name
    loaded = service.model(name)
    manifest = loaded.manifest
    # The bare baseline: scikit-learn's own pipeline of the same version (model.joblib).
    sklearn_model = joblib.load(io.BytesIO(service.registry.get_artifact(manifest, "model.joblib")))
    instances = json.loads(event["body"])["instances"]
    row = loaded.validator.to_matrix(instances)  # the already-built row of the bare baseline

    # The three answers must agree before any of them is timed (the lean runtime is exact).
    ours = json.loads(first["body"])["probabilities"]
    naive = json.loads(naive_handler.lambda_handler(event, ctx)["body"])["probabilities"]
    bare = sklearn_model.predict_proba(row).tolist()
    assert ours == naive == bare, (ours, naive, bare)

    # Count the alias re-checks (conditional GETs) that fall inside timed calls.
    registry = service.registry
    real_check = registry.get_alias_if_changed
    alias_checks = {"count": 0}

    def counted(*a: Any, **kw: Any) -> Any:
        alias_checks["count"] += 1
        return real_check(*a, **kw)

    registry.get_alias_if_changed = counted

    single = {
        "sklambda": (app.lambda_handler, (event, ctx)),
        "naive": (naive_handler.lambda_handler, (event, ctx)),
        "bare": (sklearn_model.predict_proba, (row,)),
    }
    if args.warmup:
        interleaved(single, rounds=1, block=args.warmup)
    sink_before = (SINK.chars, SINK.lines)
    alias_checks["count"] = 0
    rounds = -(-args.calls // args.block)
    gc.collect()
    t_single = time.perf_counter()
    single_samples = interleaved(single, rounds=rounds, block=args.block)
    single_wall = time.perf_counter() - t_single
    sklambda_calls = len(single_samples["sklambda"])
    emitted_chars = SINK.chars - sink_before[0]
    emitted_lines = SINK.lines - sink_before[1]
    single_alias_checks = alias_checks["count"]

    # ------------------------------------------------------------------ batch
    batch_instances = json.loads(batch_event["body"])["instances"]
    batch_matrix = loaded.validator.to_matrix(batch_instances)
    b_ours = app.lambda_handler(batch_event, ctx)
    assert b_ours["statusCode"] == 200, b_ours["body"][:300]
    b_naive = naive_handler.lambda_handler(batch_event, ctx)
    assert json.loads(b_ours["body"])["probabilities"] == json.loads(b_naive["body"])["probabilities"]
    batch = {
        "sklambda": (app.lambda_handler, (batch_event, ctx)),
        "naive": (naive_handler.lambda_handler, (batch_event, ctx)),
        "bare": (sklearn_model.predict_proba, (batch_matrix,)),
    }
    interleaved(batch, rounds=1, block=1)
    alias_checks["count"] = 0
    gc.collect()
    batch_samples = interleaved(batch, rounds=-(-args.batch_calls // args.batch_block), block=args.batch_block)
    batch_alias_checks = alias_checks["count"]

    # ------------------------------------------------------------------ where the time goes
    # Each layer is the one above without some wrapping, so the differences are that wrapping's cost.
    # _score runs without the handler's decorators: its metrics are cleared (untimed) after each call.
    metrics = app.metrics
    estimator = loaded.estimator

    def layer_fns(ev: dict[str, Any], inst: list[Any], matrix: Any) -> dict[str, tuple[Any, tuple]]:
        return {
            "handler": (app.lambda_handler, (ev, ctx)),
            "fast_predict": (app._fast_predict, (ev,)),
            "score": (app._score, (name, inst)),
            "service.predict": (service.predict, (name, inst)),
            "model.predict": (loaded.predict, (matrix,)),
            "predict_proba": (estimator.predict_proba, (matrix,)),
            "to_matrix": (loaded.validator.to_matrix, (inst,)),
            "body": (app.PredictRequest.model_validate_json, (ev["body"],)),
        }

    def run_layers(fns: dict[str, tuple[Any, tuple]], calls: int) -> dict[str, list[float]]:
        samples: dict[str, list[float]] = {n: [] for n in fns}
        pc = time.perf_counter
        for _ in range(calls):
            for key, (fn, fargs) in fns.items():
                t = pc()
                fn(*fargs)
                samples[key].append(pc() - t)
                if key in ("fast_predict", "score"):
                    metrics.clear_metrics()
        return samples

    layers = run_layers(layer_fns(event, instances, row), args.layer_calls)
    batch_layers = run_layers(layer_fns(batch_event, batch_instances, batch_matrix), max(5, args.batch_calls))
    profiles = {
        "real": profile(app.lambda_handler, (event, ctx), args.profile_calls, args.prof),
        "batch": profile(
            app.lambda_handler,
            (batch_event, ctx),
            max(1, args.profile_calls // 25),
            args.prof and args.prof.replace(".prof", "-batch.prof"),
        ),
    }

    result = {
        "model": name,
        "version": loaded.version,
        "runtime": loaded.runtime,
        "features": len(manifest.features),
        "single": single_samples,
        "single_wall_s": single_wall,
        "single_alias_checks": single_alias_checks,
        "emitted_chars_per_call": emitted_chars / max(1, sklambda_calls),
        "emitted_lines_per_call": emitted_lines / max(1, sklambda_calls),
        "batch": batch_samples,
        "batch_rows": len(batch_instances),
        "batch_alias_checks": batch_alias_checks,
        "layers": layers,
        "batch_layers": batch_layers,
        "profile": profiles,
        "response_bytes": {"single": len(first["body"]), "batch": len(b_ours["body"])},
    }
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
