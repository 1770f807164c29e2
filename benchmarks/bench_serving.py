"""Serving benchmark: cold start, warm single-row latency, 1,000-row batches and package sizes of the
predict function, each against a baseline measured in the same run, for issue 5's four targets.

    .venv/bin/python benchmarks/bench_serving.py           # full run, rewrites RESULTS.md's serving section
    .venv/bin/python benchmarks/bench_serving.py --quick   # smoke check; writes benchmarks/.work/RESULTS-quick.md

Setup: an in-process moto ThreadedMotoServer (real HTTP on loopback) holds a registry bucket. Two
models are trained with ``sklambda.training`` (RandomForest, 100 trees, max_depth 12, 20,000 rows),
published (each gets the lean ``sklambda-trees`` artifact when it converts, which both do) and
promoted: ``demo`` (the churn data: 8 numeric + 4 one-hot categorical features) and ``numeric20``
(20 numeric features). Then, per model:

1. cold start: fresh ``python`` processes (benchmarks/_cold_child.py) alternate between the
   sklambda handler (functions/predict/app.py) and the naive baseline (benchmarks/naive_handler.py);
   each is timed from Popen to its first answer, and reports its own breakdown.
2. warm: benchmarks/_warm_worker.py calls both handlers and scikit-learn's bare ``predict_proba``
   (the same version's model.joblib) in interleaved blocks, per call with perf_counter.
3. batch: the same worker, 1,000-row requests.

Then the packages: a real ``sam build`` (as tests/infra does), the unzipped size of every function
and layer, and the effect of the shipped bytecode: fresh python3.12 processes run the handler from
the built function and layers (as Lambda's /var/task and /opt/python), files dated 1980 as in
SAM's zips and bytecode writes off (Lambda's file system is read-only), with and without the
``.pyc`` files, alternating.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import select
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _support as S

COLD_CHILD = S.BENCH / "_cold_child.py"
WARM_WORKER = S.BENCH / "_warm_worker.py"
VARIANTS = ("sklambda", "naive")
# "floor": a process that only imports what any handler here needs (numpy, pydantic, Powertools'
# logger and metrics, botocore) and creates an S3 client: the part of a cold start no handler code changes.
COLD_VARIANTS = (*VARIANTS, "floor")
CHILD_TIMEOUT_S = 180

FULL = {
    "cold_runs": 15,
    "calls": 2000,
    "block": 100,
    "warmup": 200,
    "batch_calls": 40,
    "batch_block": 4,
    "layer_calls": 500,
    "profile_calls": 500,
    "pyc_runs": 10,
}
QUICK = {
    "cold_runs": 2,
    "calls": 200,
    "block": 50,
    "warmup": 30,
    "batch_calls": 4,
    "batch_block": 2,
    "layer_calls": 50,
    "profile_calls": 50,
    "pyc_runs": 2,
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- cold start
def cold_once(variant: str, env: dict[str, str], tag: str, python: list[str] | None = None) -> dict[str, Any]:
    """Spawn one fresh process; time Popen → first result line; return the child's report too."""
    child_env = dict(env)
    tmp = S.WORK / f"naive-tmp-{uuid.uuid4().hex[:8]}.joblib"  # an empty "/tmp" per sandbox
    child_env["NAIVE_MODEL_PATH"] = str(tmp)
    err_path = S.WORK / f"cold-{tag}-{variant}.stderr"
    read_fd, write_fd = os.pipe()
    try:
        with open(err_path, "wb") as err:
            spawned = time.clock_gettime(time.CLOCK_MONOTONIC)
            proc = subprocess.Popen(
                [*(python or [sys.executable]), str(COLD_CHILD), variant, repr(spawned), str(write_fd)],
                env=child_env,
                cwd=S.ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                pass_fds=(write_fd,),
            )
            os.close(write_fd)
            write_fd = -1
            data = b""
            deadline = spawned + CHILD_TIMEOUT_S
            while not data.endswith(b"\n"):
                left = deadline - time.clock_gettime(time.CLOCK_MONOTONIC)
                ready, _, _ = select.select([read_fd], [], [], max(0.0, left))
                if not ready:
                    proc.kill()
                    raise RuntimeError(f"{variant} cold start timed out; see {err_path}")
                chunk = os.read(read_fd, 65536)
                if not chunk:
                    break
                data += chunk
            answered = time.clock_gettime(time.CLOCK_MONOTONIC)
            code = proc.wait(timeout=CHILD_TIMEOUT_S)
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
        tmp.unlink(missing_ok=True)
    if not data.endswith(b"\n") or code != 0:
        raise RuntimeError(f"{variant} child failed (exit {code}):\n{err_path.read_text()[-3000:]}")
    report = json.loads(data)
    if report["status"] != 200:
        raise RuntimeError(f"{variant} child answered {report['status']}; see {err_path}")
    report["parent_s"] = answered - spawned
    err_path.unlink(missing_ok=True)
    return report


def run_cold(env: dict[str, str], runs: int) -> dict[str, list[dict[str, Any]]]:
    # One untimed run each first: bytecode caches written, files in the page cache, for both alike.
    for v in COLD_VARIANTS:
        cold_once(v, env, "warmup")
    out: dict[str, list[dict[str, Any]]] = {v: [] for v in COLD_VARIANTS}
    for i in range(runs):
        for v in COLD_VARIANTS if i % 2 == 0 else COLD_VARIANTS[::-1]:  # A B C C B A ...
            r = cold_once(v, env, str(i))
            out[v].append(r)
            log(
                f"  cold {i + 1:2d}/{runs} {v:8s} {r['parent_s'] * 1000:8.1f} ms "
                f"(interpreter {r['interpreter_s'] * 1000:.0f}, import {r['import_s'] * 1000:.0f}, "
                f"first invoke {r['first_invoke_s'] * 1000:.0f})"
            )
    probs = {v: out[v][0]["probabilities"] for v in VARIANTS}
    if probs["sklambda"] != probs["naive"]:
        raise RuntimeError(f"the two handlers disagree: {probs}")
    return out


# ----------------------------------------------------------------------------- models
NUMERIC20_FEATURES = [f"x{i:02d}" for i in range(20)]


def numeric20_data(rows: int, seed: int) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 20))
    logit = x[:, 0] - 0.8 * x[:, 1] + 0.6 * x[:, 2] * x[:, 3] + 0.4 * np.sin(3 * x[:, 4]) + 0.3 * x[:, 5:10].sum(axis=1)
    y = (logit + rng.normal(0, 0.7, rows) > 0).astype(int)
    return x, y


def numeric20_instances(rows: int, seed: int) -> list[dict[str, float]]:
    x, _ = numeric20_data(rows, seed)
    return [dict(zip(NUMERIC20_FEATURES, map(float, r), strict=True)) for r in x.tolist()]


def publish_numeric20(endpoint: str, bucket: str, *, rows: int = S.DEMO_ROWS) -> S.Registry:
    """The issue's second model: a 100-tree random-forest pipeline on 20 numeric features."""
    import boto3

    from sklambda.lifecycle import training
    from sklambda.registry.features import FeatureSchema, FeatureSpec
    from sklambda.registry.store import ModelRegistry

    registry = ModelRegistry(boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1"), bucket)
    schema = FeatureSchema(features=[FeatureSpec(name=n, type="number") for n in NUMERIC20_FEATURES])
    x, y = numeric20_data(rows, 0)
    started = time.perf_counter()
    trained = training.train(x, y, schema, task="classification", target="label", params=S.DEMO_PARAMS)
    seconds = time.perf_counter() - started
    manifest = training.publish(registry, "numeric20", trained, description="benchmark model, 20 numeric features")
    registry.promote("numeric20", manifest.version, reason="benchmark")
    return S.Registry(
        endpoint=endpoint,
        bucket=bucket,
        model="numeric20",
        version=manifest.version,
        model_key=registry.version_prefix("numeric20", manifest.version) + manifest.primary_artifact,
        artifact_bytes=manifest.artifacts[manifest.primary_artifact].bytes,
        train_seconds=seconds,
        holdout=trained.metrics["holdout"],
    )


def model_facts(reg: S.Registry) -> dict[str, Any]:
    import boto3

    from sklambda.registry.store import ModelRegistry

    registry = ModelRegistry(boto3.client("s3", endpoint_url=reg.endpoint, region_name="us-east-1"), reg.bucket)
    manifest = registry.get_manifest(reg.model, reg.version)
    lean = manifest.lean.model_dump() if manifest.lean else None
    return {
        "artifacts": {f: r.bytes for f, r in manifest.artifacts.items() if f.startswith("model.")},
        "lean": lean,
        "features": len(manifest.features),
        "holdout": reg.holdout,
    }


def write_events(model: str, single: list[dict[str, Any]], batch: list[dict[str, Any]]) -> tuple[Path, Path]:
    template = json.loads((S.ROOT / "events" / "predict_default.json").read_text())
    paths = []
    for kind, rows in (("single", single), ("batch", batch)):
        event = dict(template)
        event["body"] = json.dumps({"instances": rows})
        path = S.WORK / f"event-{model}-{kind}.json"
        path.write_text(json.dumps(event))
        paths.append(path)
    return paths[0], paths[1]


# ----------------------------------------------------------------------------- warm + batch
def run_warm(env: dict[str, str], cfg: dict[str, int], model: str, event: Path, batch_event: Path) -> dict[str, Any]:
    out_path = S.WORK / f"warm-{model}.json"
    prof_path = S.WORK / f"warm-handler-{model}.prof"
    err_path = S.WORK / f"warm-{model}.stderr"
    child_env = dict(env)
    child_env["NAIVE_MODEL_PATH"] = str(S.WORK / f"naive-tmp-warm-{model}.joblib")
    cmd = [sys.executable, str(WARM_WORKER), str(out_path), "--event", str(event), "--batch-event", str(batch_event)]
    for key in ("calls", "block", "warmup", "batch_calls", "batch_block", "layer_calls", "profile_calls"):
        cmd += [f"--{key.replace('_', '-')}", str(cfg[key])]
    cmd += ["--prof", str(prof_path)]
    with open(err_path, "wb") as err:
        code = subprocess.call(
            cmd,
            env=child_env,
            cwd=S.ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            timeout=2400,
        )
    Path(child_env["NAIVE_MODEL_PATH"]).unlink(missing_ok=True)
    if code != 0:
        raise RuntimeError(f"warm worker failed (exit {code}):\n{err_path.read_text()[-4000:]}")
    return json.loads(out_path.read_text())


# ----------------------------------------------------------------------------- packages
def sam_cli() -> Path | None:
    configured = os.environ.get("SAM_CLI")
    path = Path(configured) if configured else S.ROOT / ".venv-sam" / "bin" / "sam"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def python312() -> Path | None:
    done = subprocess.run([str(S.ROOT / "scripts" / "find-python312")], capture_output=True, text=True, check=False)
    return Path(done.stdout.strip()) if done.returncode == 0 else None


def tree_bytes(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() or p.is_symlink())


def sam_build(sam: Path, py312: Path) -> tuple[Path, float]:
    """`sam build` of template.yaml into .work/sam-build (cached in .work/sam-cache)."""
    build = S.WORK / "sam-build"
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "PATH": f"{py312.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [str(sam), "build", "--template-file", str(S.ROOT / "template.yaml"), "--base-dir", str(S.ROOT)]
    cmd += ["--build-dir", str(build), "--cached", "--cache-dir", str(S.WORK / "sam-cache"), "--parallel"]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=S.WORK, env=env, capture_output=True, text=True, timeout=1500, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"sam build failed:\n{(done.stdout + done.stderr)[-4000:]}")
    return build, time.perf_counter() - started


def package_sizes(build: Path) -> dict[str, Any]:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((build / "template.yaml").read_text(), Loader=Loader)
    resources = template["Resources"]
    layers = {
        name: tree_bytes(build / res["Properties"]["ContentUri"])
        for name, res in resources.items()
        if res["Type"] == "AWS::Serverless::LayerVersion"
    }
    functions = {}
    for name, res in resources.items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        used = [layer.get("Ref") for layer in res["Properties"].get("Layers", []) if isinstance(layer, dict)]
        parts = {"code": tree_bytes(build / res["Properties"]["CodeUri"]), **{u: layers[u] for u in used}}
        functions[name] = {"parts": parts, "total": sum(parts.values())}
    pyc = {
        name: sum(p.stat().st_size for p in (build / name).rglob("*.pyc")) for name in layers if (build / name).is_dir()
    }
    return {"layers": layers, "functions": functions, "pyc_bytes": pyc}


def lambda_like_tree(build: Path, dest: Path, *, keep_pyc: bool) -> None:
    """A copy of the built predict function and its layers, dated 1980 like SAM's zip entries."""
    import shutil

    if dest.exists():
        shutil.rmtree(dest)
    for part in ("PredictFunction", "SklambdaLayer", "DepsLayer", "SklearnLayer"):
        shutil.copytree(build / part, dest / part, symlinks=True)
    if not keep_pyc:
        for cache in list(dest.rglob("__pycache__")):
            shutil.rmtree(cache)
    stamp = dt.datetime(1980, 1, 1, tzinfo=dt.UTC).timestamp()
    for path in dest.rglob("*"):
        if not path.is_symlink():
            os.utime(path, (stamp, stamp))


def run_pyc_effect(build: Path, py312: Path, env: dict[str, str], runs: int) -> dict[str, list[dict[str, Any]]]:
    trees = {"pyc": S.WORK / "lambda-pyc", "no-pyc": S.WORK / "lambda-nopyc"}
    lambda_like_tree(build, trees["pyc"], keep_pyc=True)
    lambda_like_tree(build, trees["no-pyc"], keep_pyc=False)
    variants = {
        "sklambda, .pyc shipped": ("sklambda", trees["pyc"]),
        "sklambda, no .pyc": ("sklambda", trees["no-pyc"]),
        "naive, same layers": ("naive", trees["pyc"]),
    }

    def child_env(tree: Path) -> dict[str, str]:
        e = dict(env)
        layers = [str(tree / layer / "python") for layer in ("SklambdaLayer", "DepsLayer", "SklearnLayer")]
        e.update(
            {
                "PYTHONPATH": os.pathsep.join([*layers, str(S.BENCH)]),
                "PYTHONDONTWRITEBYTECODE": "1",  # /var/task and /opt are read-only on Lambda
                "PYTHONNOUSERSITE": "1",
                "BENCH_CODE_DIR": str(tree / "PredictFunction"),
            }
        )
        return e

    python = [str(py312), "-S"]  # -S: nothing from the interpreter's own site-packages, only the layers
    for variant, tree in variants.values():
        cold_once(variant, child_env(tree), "warmup-312", python)
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    names = list(variants)
    for i in range(runs):
        for name in names if i % 2 == 0 else names[::-1]:
            variant, tree = variants[name]
            r = cold_once(variant, child_env(tree), f"312-{i}", python)
            out[name].append(r)
            log(f"  lambda-like {i + 1:2d}/{runs} {name:24s} {r['parent_s'] * 1000:8.1f} ms")
    return out


# ----------------------------------------------------------------------------- report
def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "n/a"


def profile_top(text: str, n: int) -> list[str]:
    """The first n rows of a pstats listing, paths shortened to package-relative."""
    rows, started = [], False
    for line in text.splitlines():
        if line.strip().startswith("ncalls"):
            started = True
            continue
        if started and line.strip():
            rows.append(shorten(line))
            if len(rows) == n:
                break
    return rows


def shorten(line: str) -> str:
    for marker in ("site-packages/", "/layers/sklambda/", "/functions/predict/", "/lib/python3."):
        if marker in line:
            head, _, tail = line.partition(marker)
            prefix = head.rsplit(" ", 1)[0] if " " in head else ""
            line = f"{prefix} {tail if marker != '/lib/python3.' else 'stdlib/' + tail.split('/', 1)[-1]}"
            break
    return line


MB = 1_000_000
SIZE_TARGET = 200 * MB


def targets(results: dict[str, Any]) -> list[tuple[str, str, str, str, bool]]:
    """(target, model, measured, goal, met) rows of the summary."""
    rows = []
    for model, r in results["models"].items():
        cold = {v: S.summarise([x["parent_s"] for x in r["cold"][v]]) for v in VARIANTS}
        cr = cold["sklambda"]["median"] / cold["naive"]["median"]
        rows.append(
            (
                "cold start ≤ ¼ of naive",
                model,
                f"{S.fmt_ms(cold['sklambda']['median'], 0)} vs {S.fmt_ms(cold['naive']['median'], 0)} ms = {cr:.2f}×",
                "≤ 0.25×",
                cr <= 0.25,
            )
        )
        single = {k: S.summarise(v) for k, v in r["warm"]["single"].items()}
        speed = single["bare"]["median"] / single["sklambda"]["median"]
        rows.append(
            (
                "warm median ≥ 20× below bare predict_proba",
                model,
                f"{S.fmt_ms(single['sklambda']['median'], 3)} vs {S.fmt_ms(single['bare']['median'], 2)} ms = "
                f"{speed:.1f}× faster",
                "≥ 20×",
                speed >= 20,
            )
        )
        p99 = single["sklambda"]["p99"]
        rows.append(("warm p99 < 1 ms", model, f"{S.fmt_ms(p99, 3)} ms", "< 1 ms", p99 < 0.001))
        rows_n = r["warm"]["batch_rows"]
        per_row = statistics.median(r["warm"]["batch"]["sklambda"]) / rows_n
        br = single["sklambda"]["median"] / per_row
        rows.append(
            (
                f"{rows_n:,}-row batch: per-row cost ≥ 5× below single-row",
                model,
                f"{S.fmt_ms(per_row, 4)} vs {S.fmt_ms(single['sklambda']['median'], 3)} ms = {br:.1f}×",
                "≥ 5×",
                br >= 5,
            )
        )
    sizes = results.get("sizes")
    if sizes:
        biggest = max(sizes["functions"].items(), key=lambda kv: kv[1]["total"])
        rows.append(
            (
                "every function's package ≤ 200 MB",
                "all",
                f"largest {biggest[0]} {biggest[1]['total'] / MB:.1f} MB",
                "≤ 200 MB",
                all(f["total"] <= SIZE_TARGET for f in sizes["functions"].values()),
            )
        )
    return rows


def render(results: dict[str, Any], cfg: dict[str, int], quick: bool, started: dt.datetime, wall_s: float) -> str:
    m, libs = S.machine(), S.library_versions()
    lines: list[str] = []
    add = lines.append
    add("## Serving: cold start, warm latency, batch, packages (`benchmarks/bench_serving.py`)")
    add("")
    if quick:
        add("> **--quick smoke run: too few samples to quote.**")
        add("")
    add(f"- **Date:** {started:%Y-%m-%d %H:%M} UTC (benchmark wall time {wall_s / 60:.1f} min)")
    add(
        f"- **Machine:** {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), "
        f"{m['ram_gib']:.1f} GiB RAM, {m['os']}; shared and noisy, so compare the ratios"
    )
    add(
        f"- **Python:** {m['python']} (cold start, warm, batch); {results.get('python312', 'no python3.12')} (packages)"
    )
    add("- **Libraries:** " + ", ".join(f"{k} {v}" for k, v in libs.items()))
    add(
        "- **Reproduce:** `.venv/bin/python benchmarks/bench_serving.py` (this benchmark) or `make bench` (every "
        "`benchmarks/bench_*.py`); `--quick` for a smoke run; `--no-build` skips the `sam build` part"
    )
    add(
        "- **Handler environment:** template.yaml defaults: `ALIAS_CHECK_SECONDS=30` (the conditional GET on the "
        "alias is amortised as deployed), `MAX_BATCH_ROWS=1000`, `POWERTOOLS_LOG_LEVEL=INFO`; "
        "`POWERTOOLS_TRACE_DISABLED=true` (no X-Ray daemon here: the handler then does not import the X-Ray "
        "SDK; on Lambda `Tracing: Active` adds that import, ≈0.1 s, to a cold start without SnapStart); logs and the "
        "EMF metric line are produced and serialised inside every timed call, then dropped"
    )
    add(
        "- **Baselines, measured in the same run:** *naive* = `benchmarks/naive_handler.py`, the aws-samples "
        "pattern (module-level `import sklearn, joblib`, boto3 `download_file` of model.joblib to an empty /tmp, "
        "`joblib.load` at import; handler = `json.loads` → rows in a hard-coded order → `predict_proba` → "
        "`json.dumps`; no validation, registry, integrity check, logs or metrics). *bare* = scikit-learn's "
        "`predict_proba` of the same version's pipeline (model.joblib) on the matrix the handler builds."
    )
    add("")
    for model, r in results["models"].items():
        f = r["facts"]
        lean = f["lean"] or {}
        par = lean.get("parity", {})
        arts = ", ".join(f"`{k}` {v / 1e6:.2f} MB" for k, v in f["artifacts"].items())
        add(
            f"- **Model `{model}`:** {f['features']} features, RandomForest 100 trees, max_depth 12, 20,000 rows "
            f"(80 % fitted); {arts}; served by **{r['warm']['runtime']}** "
            f"(parity on {par.get('rows', 0):,} held-out rows: labels equal {par.get('labels_equal')}, max |Δp| "
            f"{par.get('max_abs_diff', float('nan')):.3g}, bit-identical {par.get('exact')})"
        )
    add("")
    add("### Targets (issue 5)")
    add("")
    add("| target | model | measured (medians) | goal | met |")
    add("|---|---|---|---|---|")
    for target, model, measured, goal, met in targets(results):
        add(f"| {target} | {model} | {measured} | {goal} | {'**yes**' if met else '**no**'} |")
    add("")

    # ------------------------------------------------------------------ cold
    add("### 1. Cold start to first prediction")
    add("")
    add(
        f"{cfg['cold_runs']} fresh processes per variant and model, alternating (A B B A …) after one untimed "
        "process each (bytecode caches written, files in the page cache: this measures Python work, not disk). "
        "*Total* is measured by the parent from `Popen` to the first result line on a pipe; the breakdown is the "
        "child's own clock: *interpreter up* = Popen → first statement; *import* = importing the handler module "
        "(the naive handler downloads and loads the model here); *first invoke* = the first `lambda_handler` call "
        "(sklambda fetches the alias, manifest and artifact from the emulator, checks sha256, loads). *floor* = a "
        "process that only imports numpy, pydantic, Powertools' logger and metrics and botocore and creates an S3 "
        "client (its import column). Lambda's sandbox and runtime bootstrap are not part of it. Times in ms."
    )
    add("")
    add("| model | variant | total median | p90 | min – max | interpreter up | import | first invoke | sklearn? |")
    add("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for model, r in results["models"].items():
        for v in COLD_VARIANTS:
            runs = r["cold"][v]
            tot = S.summarise([x["parent_s"] for x in runs])
            med = {k: statistics.median(x[k] for x in runs) for k in ("interpreter_s", "import_s", "first_invoke_s")}
            imported = "yes" if any(x.get("sklearn_imported") for x in runs) else "no"
            add(
                f"| {model} | {v} | **{S.fmt_ms(tot['median'], 0)}** | {S.fmt_ms(tot['p90'], 0)} | "
                f"{S.fmt_ms(tot['min'], 0)} – {S.fmt_ms(tot['max'], 0)} | {S.fmt_ms(med['interpreter_s'], 0)} | "
                f"{S.fmt_ms(med['import_s'], 0)} | {S.fmt_ms(med['first_invoke_s'], 0)} | {imported} |"
            )
    add("")
    for model, r in results["models"].items():
        a = [x["parent_s"] for x in r["cold"]["sklambda"]]
        b = [x["parent_s"] for x in r["cold"]["naive"]]
        paired = [x / y for x, y in zip(a, b, strict=True)]
        floor = statistics.median(x["parent_s"] for x in r["cold"]["floor"])
        add(
            f"**{model}: sklambda / naive** {ratio(statistics.median(a), statistics.median(b))} (ratio of medians); "
            f"median of the {len(a)} adjacent-pair ratios {statistics.median(paired):.2f}× "
            f"(range {min(paired):.2f}× – {max(paired):.2f}×). The *floor* process (imports and an S3 client, "
            f"nothing else) takes {S.fmt_ms(floor, 0)} ms, {floor / statistics.median(a):.0%} of sklambda's cold start "
            f"and already {ratio(floor, statistics.median(b))} of the naive one."
        )
        add("")

    # ------------------------------------------------------------------ warm
    add("### 2. Warm single-row latency (in-process)")
    add("")
    w0 = next(iter(results["models"].values()))["warm"]
    add(
        f"`lambda_handler(event, context)` called directly with a one-row request, after {cfg['warmup']} warm-up "
        f"calls each; {len(w0['single']['sklambda']):,} timed calls per variant in interleaved blocks of "
        f"{cfg['block']} (order rotated every round), each call timed alone with `perf_counter`, garbage collector "
        "on. The three answers are checked equal (to the last bit) before timing. Times in ms."
    )
    add("")
    add("| model | variant | median | p90 | p99 | min – max | bare / variant (median) |")
    add("|---|---|---:|---:|---:|---:|---:|")
    for model, r in results["models"].items():
        single = {k: S.summarise(v) for k, v in r["warm"]["single"].items()}
        for v, label in (("sklambda", "sklambda handler"), ("naive", "naive handler"), ("bare", "bare predict_proba")):
            s = single[v]
            add(
                f"| {model} | {label} | **{S.fmt_ms(s['median'], 3)}** | {S.fmt_ms(s['p90'], 3)} | "
                f"{S.fmt_ms(s['p99'], 3)} | {S.fmt_ms(s['min'], 3)} – {S.fmt_ms(s['max'], 1)} | "
                f"{single['bare']['median'] / s['median']:.1f}× |"
            )
        add(
            f"| {model} | alias re-checks in the timed calls | {r['warm']['single_alias_checks']} | | | | "
            f"({r['warm']['single_wall_s']:.0f} s loop) |"
        )
    add("")

    # ------------------------------------------------------------------ batch
    rows_n = w0["batch_rows"]
    add(f"### 3. Batch: {rows_n:,} rows in one request")
    add("")
    add(
        f"{rows_n:,}-row requests (objects keyed by feature name) through each handler; {cfg['batch_calls']} timed "
        "calls per variant, interleaved. *per row* = median / rows; *single / per row* = the variant's single-row "
        "median divided by its per-row cost in the batch. Times in ms."
    )
    add("")
    add("| model | variant | median per request | p90 | min – max | per row | single / per row |")
    add("|---|---|---:|---:|---:|---:|---:|")
    for model, r in results["models"].items():
        single = {k: S.summarise(v) for k, v in r["warm"]["single"].items()}
        batch = {k: S.summarise(v) for k, v in r["warm"]["batch"].items()}
        for v, label in (("sklambda", "sklambda handler"), ("naive", "naive handler"), ("bare", "bare predict_proba")):
            s = batch[v]
            per_row = s["median"] / rows_n
            add(
                f"| {model} | {label} | **{S.fmt_ms(s['median'], 1)}** | {S.fmt_ms(s['p90'], 1)} | "
                f"{S.fmt_ms(s['min'], 1)} – {S.fmt_ms(s['max'], 1)} | {S.fmt_ms(per_row, 4)} | "
                f"{single[v]['median'] / per_row:,.1f}× |"
            )
    add("")

    # ------------------------------------------------------------------ packages
    sizes = results.get("sizes")
    add("### 4. Packages after `sam build`")
    add("")
    if not sizes:
        add(f"Not measured in this run ({results.get('sizes_skipped', 'skipped')}).")
        add("")
    else:
        add(
            f"`sam build` of template.yaml with {results.get('python312')} ({results['sam_build_s']:.0f} s, cached). "
            "Unzipped bytes (what Lambda counts); MB = 10⁶ bytes; target 200 MB per function, Lambda's limit "
            "262,144,000 bytes."
        )
        add("")
        add("| layer | MB | of which .pyc |")
        add("|---|---:|---:|")
        for name, size in sizes["layers"].items():
            add(f"| {name} | {size / MB:.1f} | {sizes['pyc_bytes'].get(name, 0) / MB:.1f} |")
        add("")
        add("| function | code MB | layers | total MB |")
        add("|---|---:|---|---:|")
        for name, f in sizes["functions"].items():
            layer_names = ", ".join(k for k in f["parts"] if k != "code")
            add(f"| {name} | {f['parts']['code'] / MB:.3f} | {layer_names} | **{f['total'] / MB:.1f}** |")
        add("")
    pyc = results.get("pyc_effect")
    if pyc:
        add(
            f"**The shipped bytecode, measured** ({len(next(iter(pyc.values())))} fresh python3.12 processes per "
            "variant, alternating, model `demo`). The handler runs from a copy of the built PredictFunction and its "
            "layers on PYTHONPATH (as /var/task and /opt/python), every file dated 1980-01-01 as in SAM's zips, "
            "`PYTHONDONTWRITEBYTECODE=1` (Lambda's file system is read-only, so nothing compiled is ever kept), "
            "`python3.12 -S`. *no .pyc* = the same tree with every `__pycache__` removed (what a build without "
            "bytecode ships: every cold start compiles every module it imports). The SklearnLayer ships no "
            ".pyc (size budget), so the naive handler on the same layers compiles scikit-learn and scipy on every "
            "cold start, as it would on Lambda. Times in ms."
        )
        add("")
        add("| variant | total median | p90 | min – max | import | first invoke |")
        add("|---|---:|---:|---:|---:|---:|")
        for name, runs in pyc.items():
            tot = S.summarise([x["parent_s"] for x in runs])
            imp = statistics.median(x["import_s"] for x in runs)
            first = statistics.median(x["first_invoke_s"] for x in runs)
            add(
                f"| {name} | **{S.fmt_ms(tot['median'], 0)}** | {S.fmt_ms(tot['p90'], 0)} | "
                f"{S.fmt_ms(tot['min'], 0)} – {S.fmt_ms(tot['max'], 0)} | {S.fmt_ms(imp, 0)} | {S.fmt_ms(first, 0)} |"
            )
        meds = {k: statistics.median(x["parent_s"] for x in v) for k, v in pyc.items()}
        add("")
        saved = meds["sklambda, no .pyc"] - meds["sklambda, .pyc shipped"]
        add(
            f"Shipping unchecked-hash `.pyc` saves {S.fmt_ms(saved, 0)}"
            f" ms per cold start ({ratio(meds['sklambda, no .pyc'], meds['sklambda, .pyc shipped'])}); on these "
            f"layers sklambda / naive is {ratio(meds['sklambda, .pyc shipped'], meds['naive, same layers'])}."
        )
        add("")

    # ------------------------------------------------------------------ where the time goes
    add("### Where the warm time goes")
    add("")
    add(
        "Each layer is the one above without some wrapping, so the difference is that wrapping's cost (medians of "
        f"{cfg['layer_calls']} calls of each layer, interleaved call by call; the batch: {max(5, cfg['batch_calls'])} "
        "calls). Times in ms."
    )
    add("")
    steps = [
        ("handler", "`lambda_handler`", "Powertools decorators: logger context + correlation id, EMF flush and print"),
        (
            "fast_predict",
            "`_fast_predict(event)`",
            "routing, content type, body parsed and validated, response `json.dumps`",
        ),
        ("score", "`_score(name, instances)`", "metrics (dimensions, Predictions, PredictLatency), capture (off here)"),
        (
            "service.predict",
            "`ModelService.predict`",
            "alias-cache check, row validation and matrix build, prediction ids",
        ),
        ("model.predict", "`LoadedModel.predict(matrix)`", "argmax, `.tolist()`"),
        ("predict_proba", "the runtime's `predict_proba`", "preprocessing and the trees (the innermost layer)"),
    ]
    header = (
        "| layer | "
        + " | ".join(f"{m} 1 row | {m} {rows_n:,} rows" for m in results["models"])
        + " | the difference is |"
    )
    add(header)
    add("|---|" + "---:|" * (2 * len(results["models"])) + "---|")
    meds = {
        m: (
            {k: statistics.median(v) for k, v in r["warm"]["layers"].items()},
            {k: statistics.median(v) for k, v in r["warm"]["batch_layers"].items()},
        )
        for m, r in results["models"].items()
    }
    for key, label, what in steps:
        cells = []
        for m in results["models"]:
            one, many = meds[m]
            cells += [S.fmt_ms(one[key], 3), S.fmt_ms(many[key], 2)]
        add(f"| {label} | " + " | ".join(cells) + f" | {what} |")
    for key, label in (
        ("to_matrix", "`validator.to_matrix`, part of service.predict"),
        ("body", "`PredictRequest.model_validate_json`, part of fast_predict"),
    ):
        cells = []
        for m in results["models"]:
            one, many = meds[m]
            cells += [S.fmt_ms(one[key], 3), S.fmt_ms(many[key], 2)]
        add(f"| {label} | " + " | ".join(cells) + " | |")
    add("")
    demo = results["models"].get("demo")
    if demo:
        top = profile_top(demo["warm"]["profile"].get("real", {}).get("tottime", ""), 12)
        if top:
            add(
                f"cProfile, {cfg['profile_calls']} warm single-row calls of the `demo` handler, top functions by own "
                "time (full profiles in `benchmarks/.work/warm-handler-*.prof`; cProfile inflates Python-heavy code):"
            )
            add("")
            add("```")
            add("   ncalls  tottime  percall  cumtime  percall filename:lineno(function)")
            lines.extend(top)
            add("```")
            add("")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few runs, for a smoke check (does not touch RESULTS.md)")
    p.add_argument("--cold-runs", type=int, help="fresh processes per variant and model")
    p.add_argument("--calls", type=int, help="timed warm single-row calls per variant")
    p.add_argument("--batch-calls", type=int, help="timed 1,000-row calls per variant")
    p.add_argument("--no-build", action="store_true", help="skip sam build, package sizes and the .pyc effect")
    p.add_argument("--output", type=Path, help="markdown file whose serving section is rewritten")
    args = p.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    for key in ("cold_runs", "calls", "batch_calls"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    output = args.output or (S.WORK / "RESULTS-quick.md" if args.quick else S.RESULTS)

    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    S.WORK.mkdir(parents=True, exist_ok=True)
    S.isolate_from_real_aws()
    for var in ("POWERTOOLS_DEV", "POWERTOOLS_METRICS_DISABLED"):  # both would skip the EMF serialisation
        os.environ.pop(var, None)

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    results: dict[str, Any] = {"models": {}}
    server, endpoint = S.start_moto()
    try:
        from sklambda.lifecycle import demo as demo_data

        log(f"moto at {endpoint}; training the demo model ({S.DEMO_ROWS:,} rows)")
        demo_reg = S.publish_demo(endpoint, log=log)
        log("training the numeric20 model")
        num_reg = publish_numeric20(endpoint, demo_reg.bucket)
        columns, _ = demo_data.generate(1000, seed=7)
        batches = {
            "demo": (json.loads((S.ROOT / "events/predict_default.json").read_text()), demo_data.to_instances(columns)),
            "numeric20": (None, numeric20_instances(1000, 7)),
        }
        for reg in (demo_reg, num_reg):
            model = reg.model
            template, batch_rows = batches[model]
            single_rows = json.loads(template["body"])["instances"] if template else numeric20_instances(1, 11)
            event, batch_event = write_events(model, single_rows, batch_rows)
            # PREDICTION_ID_KEY: the template signs prediction ids (an HMAC per row), so the benchmark does too.
            extra = {"DEFAULT_MODEL": model, "BENCH_EVENT": str(event), "PREDICTION_ID_KEY": "bench-signing-key"}
            if model == "numeric20":
                extra["NAIVE_FEATURES"] = ",".join(NUMERIC20_FEATURES)
            env = S.handler_env(reg, **extra)
            log(f"[{model}] cold start: {cfg['cold_runs']} processes per variant")
            cold = run_cold(env, cfg["cold_runs"])
            log(
                f"[{model}] warm + batch: {cfg['calls']} single-row calls, {cfg['batch_calls']} batch calls per variant"
            )
            warm = run_warm(env, cfg, model, event, batch_event)
            results["models"][model] = {"facts": model_facts(reg), "cold": cold, "warm": warm}
            if model == "demo":
                demo_env = env
        if args.no_build:
            results["sizes_skipped"] = "--no-build"
        else:
            sam, py312 = sam_cli(), python312()
            if sam is None or py312 is None:
                results["sizes_skipped"] = "no SAM CLI (.venv-sam or $SAM_CLI) or no python3.12"
            else:
                done = subprocess.run([str(py312), "--version"], capture_output=True, text=True, check=False)
                results["python312"] = done.stdout.strip() or str(py312)
                log("sam build (cached)")
                build, seconds = sam_build(sam, py312)
                results["sam_build_s"] = seconds
                results["sizes"] = package_sizes(build)
                log(f"the .pyc effect: {cfg['pyc_runs']} python3.12 processes per variant")
                results["pyc_effect"] = run_pyc_effect(build, py312, demo_env, cfg["pyc_runs"])
    finally:
        server.stop()
    wall = time.perf_counter() - t0
    (S.WORK / "serving-results.json").write_text(json.dumps(results, default=str))
    text = render(results, cfg, args.quick, started, wall)
    S.write_section("serving", text, output)
    print(text)
    log(f"wrote the serving section of {output} ({wall:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
