"""Open Inference Protocol benchmark: the warm handler time of a V2 infer against the JSON predict route,
one row and 1,000 rows, in the same run, interleaved, medians.

    .venv/bin/python benchmarks/bench_oip.py           # full run, rewrites RESULTS.md's "oip" section
    .venv/bin/python benchmarks/bench_oip.py --quick   # smoke check; writes benchmarks/.work/RESULTS-oip-quick.md

Setup as bench_serving.py: moto's server in this process holds a registry; ``demo`` (12 features, four
of them categories) and ``numeric20`` (20 numbers) are trained (RandomForest, 100 trees, depth 12, 20,000
rows), published with their lean artifacts and promoted. A worker process of its own (this file with
``--worker``) then calls functions/predict/app.py's ``lambda_handler`` with prepared payload-2.0 events,
built by the local gateway's code from template.yaml's routes (a binary body base64-encoded, as API
Gateway passes it), in interleaved blocks, each call timed alone with perf_counter:

- ``json``: POST /models/{name}/predict, ``{"instances": [objects keyed by feature name]}``;
- ``v2 json``: POST /v2/models/{name}/infer, one tensor per feature with JSON data, JSON outputs;
- ``v2 binary``: the same as Triton's binary tensor data (what ``tritonclient.http`` sends with its
  defaults: every input binary, every output asked as binary).

All three answers are checked equal (probabilities to the last bit) before anything is timed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import io
import json
import logging
import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("json", "v2 json", "v2 binary")
FULL = {"calls": 2000, "block": 100, "warmup": 200, "batch_calls": 60, "batch_block": 4}
QUICK = {"calls": 200, "block": 50, "warmup": 30, "batch_calls": 6, "batch_block": 2}
DECLARED = {"number": "FP64", "integer": "INT64", "category": "BYTES", "boolean": "BOOL"}


def log(msg: str) -> None:
    print(f"[bench_oip {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- events
def _event(method: str, path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    from sklambda_dev.local.gateway import Router, build_event
    from sklambda_dev.local.template import Template

    match = Router(Template(ROOT / "template.yaml").routes).match(method, path)
    assert match is not None, path
    return build_event(
        match.route,
        method=method,
        raw_path=path,
        headers=list(headers.items()),
        body=body,
        path_parameters=match.path_parameters,
        now=0,
    )


def events(model: str, features: list[Any], rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The three requests for ``rows``: JSON API, V2 with JSON data, V2 with binary tensor data."""
    import numpy as np

    json_type = {"content-type": "application/json"}
    columns = {f.name: [row[f.name] for row in rows] for f in features}
    n = len(rows)
    v2_json = {
        "inputs": [
            {"name": f.name, "datatype": DECLARED[f.type], "shape": [n], "data": columns[f.name]} for f in features
        ],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],  # JSON data (no binary_data asked)
    }
    inputs, blobs = [], []
    for f in features:
        values = columns[f.name]
        if f.type == "category":
            blob = b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)
        else:
            blob = np.asarray(values, dtype="<i8" if f.type == "integer" else "<f8").tobytes()
        size = {"binary_data_size": len(blob)}
        inputs.append({"name": f.name, "shape": [n], "datatype": DECLARED[f.type], "parameters": size})
        blobs.append(blob)
    header = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}}).encode()
    return {
        "json": _event("POST", f"/models/{model}/predict", json.dumps({"instances": rows}).encode(), json_type),
        "v2 json": _event("POST", f"/v2/models/{model}/infer", json.dumps(v2_json).encode(), json_type),
        "v2 binary": _event(
            "POST",
            f"/v2/models/{model}/infer",
            header + b"".join(blobs),
            {"inference-header-content-length": str(len(header))},  # no content type, as tritonclient sends
        ),
    }


# ----------------------------------------------------------------------------- worker (own process)
class _Context:
    function_name = "sklambda-predict"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:sklambda-predict"
    aws_request_id = "00000000-0000-4000-8000-000000000003"
    log_group_name = "/aws/lambda/sklambda-predict"
    log_stream_name = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def _probabilities(variant: str, answer: dict[str, Any]) -> list[float]:
    """The flat probabilities of an answer, whichever way it came."""
    import base64

    import numpy as np

    assert answer["statusCode"] == 200, answer["body"][:400]
    if variant == "json":
        return [p for row in json.loads(answer["body"])["probabilities"] for p in row]
    if variant == "v2 json":
        outputs = json.loads(answer["body"])["outputs"]
        return next(o for o in outputs if o["name"] == "predict_proba")["data"]
    raw = base64.b64decode(answer["body"])
    length = int(answer["headers"]["Inference-Header-Content-Length"])
    offset = length
    for output in json.loads(raw[:length])["outputs"]:
        size = output["parameters"]["binary_data_size"]
        if output["name"] == "predict_proba":
            return np.frombuffer(raw[offset : offset + size], dtype="<f8").tolist()
        offset += size
    raise AssertionError("no predict_proba in the binary answer")


def _interleaved(calls: dict[str, Any], *, rounds: int, block: int) -> dict[str, list[float]]:
    names = list(calls)
    out: dict[str, list[float]] = {n: [] for n in names}
    pc = time.perf_counter
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn, args = calls[name]
            samples = out[name]
            for _ in range(block):
                t = pc()
                fn(*args)
                samples.append(pc() - t)
    return out


def worker(out_path: str, events_path: str, cfg: dict[str, int]) -> None:
    sys.stdout = _NullSink()  # logs and EMF lines are still serialised, then dropped
    sys.path.insert(0, str(ROOT / "functions" / "predict"))
    import app  # functions/predict/app.py

    ctx = _Context()
    prepared = json.loads(Path(events_path).read_text())
    results: dict[str, Any] = {}
    for size, by_variant in prepared.items():
        answers = {v: _probabilities(v, app.lambda_handler(e, ctx)) for v, e in by_variant.items()}
        assert answers["json"] == answers["v2 json"] == answers["v2 binary"], f"{size}: the answers differ"
        calls = {v: (app.lambda_handler, (e, ctx)) for v, e in by_variant.items()}
        single = size == "1"
        block = cfg["block"] if single else cfg["batch_block"]
        total = cfg["calls"] if single else cfg["batch_calls"]
        _interleaved(calls, rounds=1, block=cfg["warmup"] if single else 2)
        gc.collect()
        results[size] = _interleaved(calls, rounds=-(-total // block), block=block)
    Path(out_path).write_text(json.dumps(results))


class _NullSink(io.TextIOBase):
    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        return len(s)


# ----------------------------------------------------------------------------- report
def render(results: dict[str, Any], cfg: dict[str, int], started: dt.datetime, wall_s: float) -> str:
    import _support as S

    m = S.machine()
    lib = S.library_versions()
    lines = [
        "## Open Inference Protocol: V2 infer against the JSON predict route (`benchmarks/bench_oip.py`)",
        "",
        f"- **Date:** {started:%Y-%m-%d %H:%M} UTC (benchmark wall time {wall_s / 60:.1f} min)",
        f"- **Machine:** {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {m['os']}; shared and noisy, "
        "so compare the ratios",
        f"- **Python:** {m['python']}; numpy {lib['numpy']}, aws-lambda-powertools {lib['aws-lambda-powertools']}, "
        f"pydantic {lib['pydantic']}",
        "- **Reproduce:** `.venv/bin/python benchmarks/bench_oip.py` (`--quick` for a smoke run)",
        "- **Handler environment:** as the serving benchmark: template defaults (`ALIAS_CHECK_SECONDS=30`, "
        "`MAX_BATCH_ROWS=1000`, `POWERTOOLS_LOG_LEVEL=INFO`), prediction ids signed, tracing off, no capture "
        "stream (capture costs every route alike); logs and the EMF line serialised inside every timed call",
        "- **Models:** demo (12 features, 4 categories) and numeric20 (20 numbers), RandomForest 100 trees, "
        "depth 12, served by the lean runtime",
        f"- **Method:** `lambda_handler(event, context)` in a process of its own; one row: {cfg['calls']:,} timed "
        f"calls per variant in interleaved blocks of {cfg['block']} after {cfg['warmup']} warm-up calls; 1,000 "
        f"rows: {cfg['batch_calls']} calls per variant in blocks of {cfg['batch_block']}. The three answers are "
        "checked equal (probabilities bit for bit) first. *json*: `POST /models/{name}/predict` with objects; "
        "*v2 json*: `POST /v2/models/{name}/infer`, one tensor per feature, JSON data in and out; *v2 binary*: "
        "the same with Triton's binary tensor data both ways (tritonclient's defaults), body base64-encoded in "
        "the event as API Gateway passes it",
        "",
        "| model | rows | variant | median | p90 | per row | / json |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for model, by_size in results.items():
        for size, by_variant in by_size.items():
            base = S.summarise(by_variant["json"])["median"]
            for variant in VARIANTS:
                stats = S.summarise(by_variant[variant])
                per_row = stats["median"] / int(size)
                lines.append(
                    f"| {model} | {int(size):,} | {variant} | **{S.fmt_ms(stats['median'])}** | "
                    f"{S.fmt_ms(stats['p90'])} | {S.fmt_ms(per_row, 4)} | {stats['median'] / base:.2f}× |"
                )
    lines += ["", "Times in ms. */ json* = the variant's median over the JSON route's median, same model and rows."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--output", type=Path)
    p.add_argument("--worker", nargs=2, metavar=("OUT", "EVENTS"), help=argparse.SUPPRESS)
    p.add_argument("--cfg", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    if args.worker:
        worker(args.worker[0], args.worker[1], json.loads(args.cfg))
        return 0

    import _support as S
    from bench_serving import numeric20_instances, publish_numeric20

    output = args.output or (S.WORK / "RESULTS-oip-quick.md" if args.quick else S.RESULTS)
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    S.WORK.mkdir(parents=True, exist_ok=True)
    S.isolate_from_real_aws()
    for var in ("POWERTOOLS_DEV", "POWERTOOLS_METRICS_DISABLED"):
        os.environ.pop(var, None)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server, endpoint = S.start_moto()
    results: dict[str, Any] = {}
    try:
        from sklambda.lifecycle import demo
        from sklambda.registry.features import FeatureSpec

        log(f"moto at {endpoint}; training demo ({S.DEMO_ROWS:,} rows)")
        demo_reg = S.publish_demo(endpoint, log=lambda _m: None)
        log("training numeric20")
        num_reg = publish_numeric20(endpoint, demo_reg.bucket)
        columns, _ = demo.generate(1000, seed=7)
        numeric = [FeatureSpec(name=f"x{i:02d}", type="number") for i in range(20)]
        models = {
            "demo": (demo_reg, list(demo.DEMO_SCHEMA.features), demo.to_instances(columns)),
            "numeric20": (num_reg, numeric, numeric20_instances(1000, 7)),
        }
        for model, (reg, features, rows) in models.items():
            prepared = {"1": events(model, features, rows[:1]), "1000": events(model, features, rows)}
            events_path, out_path = S.WORK / f"oip-events-{model}.json", S.WORK / f"oip-{model}.json"
            events_path.write_text(json.dumps(prepared))
            env = S.handler_env(reg, DEFAULT_MODEL=model, PREDICTION_ID_KEY="bench-signing-key", MAX_BATCH_ROWS="1000")
            log(f"[{model}] {cfg['calls']} one-row and {cfg['batch_calls']} 1,000-row calls per variant")
            cmd = [sys.executable, __file__, "--worker", str(out_path), str(events_path), "--cfg", json.dumps(cfg)]
            err_path = S.WORK / f"oip-{model}.stderr"
            with open(err_path, "wb") as err:
                code = subprocess.call(cmd, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stderr=err, timeout=2400)
            if code != 0:
                raise RuntimeError(f"worker failed (exit {code}):\n{err_path.read_text()[-4000:]}")
            results[model] = json.loads(out_path.read_text())
    finally:
        server.stop()
    text = render(results, cfg, started, time.perf_counter() - t0)
    if output == S.RESULTS:
        S.write_section("oip", text)
    else:
        output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
