"""Warm, in-process measurements in one process of their own (the S3 emulator lives in the parent).

    python _warm_worker.py OUT.json [--calls N] [--block N] [--warmup N] [--batch-calls N]
                                    [--batch-block N] [--batch-rows N] [--profile-calls N]
                                    [--layer-calls N] [--prof PATH]

Calls ``lambda_handler`` of functions/predict/app.py and of benchmarks/naive_handler.py directly
(the event dict in, the response dict out, as the Lambda runtime does), and scikit-learn's bare
``predict_proba`` on the row the handler builds, in interleaved blocks (A B C, B C A, C A B, ...)
so machine noise lands on every variant alike. Each call is timed alone with perf_counter.

stdout is replaced by a sink that only counts what is written: the handler's JSON log lines and
its EMF metric line are still formatted and serialised inside the timed call, then dropped.
"""

from __future__ import annotations

import argparse
import copy
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


class FrozenEstimator:
    """Answers with probabilities computed once: scikit-learn out of the timed path."""

    def __init__(self, estimator: Any, row: Any) -> None:
        self.classes_ = estimator.classes_
        self._proba = estimator.predict_proba(row)

    def predict_proba(self, _x: Any) -> Any:
        return self._proba


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
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--block", type=int, default=100)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--batch-calls", type=int, default=40)
    p.add_argument("--batch-block", type=int, default=4)
    p.add_argument("--batch-rows", type=int, default=1000)
    p.add_argument("--layer-calls", type=int, default=500)
    p.add_argument("--profile-calls", type=int, default=500)
    p.add_argument("--prof", default=None)
    args = p.parse_args()

    import app  # functions/predict/app.py: Handler app.lambda_handler
    import naive_handler  # benchmarks/naive_handler.py: downloads and loads the model at import
    from sklambda import demo

    ctx = _Context()
    with open(os.path.join(ROOT, "events", "predict_default.json")) as f:
        event = json.load(f)
    pristine = copy.deepcopy(event)

    first = app.lambda_handler(event, ctx)  # cold path: alias, manifest, artifact, verify, load
    assert first["statusCode"] == 200, first
    assert event == pristine, "the handler mutated the event; each call would need a fresh copy"
    service = app.service()
    loaded = service.model("demo")
    estimator = loaded.estimator
    instances = json.loads(event["body"])["instances"]
    row = loaded.validator.to_matrix(instances)  # the already-built row of the bare baseline

    # The three answers must agree before any of them is timed.
    ours = json.loads(first["body"])["probabilities"]
    naive = json.loads(naive_handler.lambda_handler(event, ctx)["body"])["probabilities"]
    bare = estimator.predict_proba(row).tolist()
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
        "bare": (estimator.predict_proba, (row,)),
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
    columns, _ = demo.generate(args.batch_rows, seed=7)
    batch_instances = demo.to_instances(columns)
    batch_event = copy.deepcopy(event)
    batch_event["body"] = json.dumps({"instances": batch_instances})
    batch_matrix = loaded.validator.to_matrix(batch_instances)
    b_ours = app.lambda_handler(batch_event, ctx)
    assert b_ours["statusCode"] == 200, b_ours["body"][:300]
    b_naive = naive_handler.lambda_handler(batch_event, ctx)
    assert json.loads(b_ours["body"])["probabilities"] == json.loads(b_naive["body"])["probabilities"]
    batch = {
        "sklambda": (app.lambda_handler, (batch_event, ctx)),
        "naive": (naive_handler.lambda_handler, (batch_event, ctx)),
        "bare": (estimator.predict_proba, (batch_matrix,)),
    }
    interleaved(batch, rounds=1, block=1)
    alias_checks["count"] = 0
    gc.collect()
    batch_samples = interleaved(batch, rounds=-(-args.batch_calls // args.batch_block), block=args.batch_block)
    batch_alias_checks = alias_checks["count"]

    # ------------------------------------------------------------------ scikit-learn taken out
    # The estimator is swapped for one that returns the probabilities it computed once, in both
    # handlers: what is left is the handlers' own cost, free of predict_proba's noise.
    frozen = FrozenEstimator(estimator, row)
    real_naive_model = naive_handler.model
    loaded.estimator = frozen
    naive_handler.model = frozen
    try:
        assert json.loads(app.lambda_handler(event, ctx)["body"])["probabilities"] == ours
        overhead_variants = {
            "sklambda": (app.lambda_handler, (event, ctx)),
            "naive": (naive_handler.lambda_handler, (event, ctx)),
        }
        interleaved(overhead_variants, rounds=1, block=max(1, args.warmup))
        overhead_samples = interleaved(overhead_variants, rounds=rounds, block=args.block)

        # Layers of the sklambda path: each is the one above without some wrapping, so the
        # differences are that wrapping's cost. resolve() runs without Powertools' decorators, so
        # its metrics are cleared (untimed) after each call instead of being flushed.
        metrics = app.metrics
        resolver = app.app
        body_model = app.PredictRequest

        def resolve_only() -> None:
            resolver.resolve(event, ctx)

        layers = {
            "handler": (app.lambda_handler, (event, ctx)),
            "resolve": (resolve_only, ()),
            "service.predict": (service.predict, ("demo", instances)),
            "model.predict": (loaded.predict, (row,)),
            "to_matrix": (loaded.validator.to_matrix, (instances,)),
            "body_model": (lambda: body_model.model_validate(json.loads(event["body"])), ()),
        }
        layer_samples: dict[str, list[float]] = {n: [] for n in layers}
        pc = time.perf_counter
        for _ in range(args.layer_calls):
            for name, (fn, fargs) in layers.items():
                t = pc()
                fn(*fargs)
                layer_samples[name].append(pc() - t)
                if name == "resolve":
                    metrics.clear_metrics()
        profiles = {
            "stubbed": profile(
                app.lambda_handler,
                (event, ctx),
                args.profile_calls,
                args.prof and args.prof.replace(".prof", "-stubbed.prof"),
            ),
        }
        # Batch: a stub that answers as many rows as it is given; then the same layers, plus the
        # pieces that grow with the rows.
        loaded.estimator = FrozenEstimator(estimator, batch_matrix)
        from aws_lambda_powertools.event_handler.openapi.encoders import jsonable_encoder

        batch_body = service.predict("demo", batch_instances).to_body()
        batch_request = body_model.model_validate(json.loads(batch_event["body"]))

        def resolve_batch() -> None:
            resolver.resolve(batch_event, ctx)

        batch_layer_fns = {
            "handler": (app.lambda_handler, (batch_event, ctx)),
            "resolve": (resolve_batch, ()),
            "service.predict": (service.predict, ("demo", batch_instances)),
            "model.predict": (loaded.predict, (batch_matrix,)),
            "to_matrix": (loaded.validator.to_matrix, (batch_instances,)),
            "json.loads": (json.loads, (batch_event["body"],)),
            "body_model": (body_model.model_validate, (json.loads(batch_event["body"]),)),
            "jsonable_encoder": (jsonable_encoder, (batch_body,)),
            "json.dumps": (resolver._serializer, (batch_body,)),  # the resolver's own serializer
            "repr(request)": (repr, (batch_request,)),
        }
        batch_layers: dict[str, list[float]] = {n: [] for n in batch_layer_fns}
        for _ in range(max(5, args.batch_calls)):
            for name, (fn, fargs) in batch_layer_fns.items():
                t = pc()
                fn(*fargs)
                batch_layers[name].append(pc() - t)
                if name == "resolve":
                    metrics.clear_metrics()
        profiles["batch_stubbed"] = profile(
            app.lambda_handler,
            (batch_event, ctx),
            max(1, args.profile_calls // 25),
            args.prof and args.prof.replace(".prof", "-batch-stubbed.prof"),
        )
    finally:
        loaded.estimator = estimator
        naive_handler.model = real_naive_model
    profiles["real"] = profile(app.lambda_handler, (event, ctx), args.profile_calls, args.prof)

    result = {
        "single": single_samples,
        "single_wall_s": single_wall,
        "single_alias_checks": single_alias_checks,
        "emitted_chars_per_call": emitted_chars / max(1, sklambda_calls),
        "emitted_lines_per_call": emitted_lines / max(1, sklambda_calls),
        "batch": batch_samples,
        "batch_rows": args.batch_rows,
        "batch_alias_checks": batch_alias_checks,
        "overhead": overhead_samples,
        "layers": layer_samples,
        "batch_layers": batch_layers,
        "profile": profiles,
        "response_bytes": {"single": len(first["body"]), "batch": len(b_ours["body"])},
    }
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
