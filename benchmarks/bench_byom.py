"""Bring-your-own-model benchmark: users' own fitted pipelines, published with
``sklambda.lifecycle.user_model.publish_user_model``, served by the real predict handler, against each
pipeline's own naive handler and the user's own estimator, measured in the same run.

    .venv/bin/python benchmarks/bench_byom.py            # full run, rewrites RESULTS.md's "byom" section
    .venv/bin/python benchmarks/bench_byom.py --quick    # smoke check; writes benchmarks/.work/RESULTS-quick.md
    .venv/bin/python benchmarks/bench_byom.py --only knn,onehot   # cases whose name contains one of these

Setup: an in-process moto ThreadedMotoServer (real HTTP on loopback) holds a registry bucket. Every case
(``_byom_pipelines.CASES``: scikit-learn's bundled data sets loaded ``as_frame=True`` and one generated
numeric/string table with missing values) is split 75/25, fitted on the training DataFrame as a user would,
published with ``publish_user_model(registry, name, estimator, X_train, y_train, x_holdout=..., y_holdout=...)``
(the lean ``sklambda-lean`` artifact when the pipeline converts exactly, else the scikit-learn fallback) and
promoted. Then, per case:

1. what serves it and why: the manifest's ``lean`` record (accepted, reason, parity) and the publish-time
   ``serving_check`` (the clean-process check of the user's rows);
2. cold start: fresh ``python`` processes (``_byom_cold_child.py``) rotate between the sklambda handler
   (functions/predict/app.py), that version's naive handler (``_byom_naive_handler.py``: module-level
   scikit-learn import, ``joblib.load`` of the same model.joblib) and a *floor* process (the imports and S3
   client any handler here needs); Popen → first answer, with the child's own breakdown;
3. warm: ``_byom_warm_worker.py`` times the handler on a one-row request against the user's own estimator's
   bare ``predict_proba`` / ``predict`` on that row as a one-row DataFrame, in interleaved blocks.

Targets (reported, never asserted): a lean-served version's cold start ≤ 0.35× its naive handler's and its warm
single row ≥ 20× faster than the bare call; a scikit-learn-served version's cold start ≤ 1.0× its naive
handler's. For every scikit-learn-served case the first request is profiled in extra processes (steps timed by
wrapping the library's functions; ``python -X importtime`` for the imports by package).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import select
import statistics
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _byom_pipelines as P
import _support as S

COLD_CHILD = S.BENCH / "_byom_cold_child.py"
WARM_WORKER = S.BENCH / "_byom_warm_worker.py"
# Cold-start variants: label -> (the child's handler, pandas importable). On Lambda pandas is not (the layers do not
# ship it), so the measured variants block it; "+pandas" repeats a handler as this development venv runs it, where
# scikit-learn's import pulls pandas in (sklearn.utils.fixes), to show what that does to a baseline.
COLD_VARIANTS = {
    "sklambda": ("sklambda", False),
    "naive": ("naive", False),
    "floor": ("floor", False),
    "naive+pandas": ("naive", True),
}
FALLBACK_EXTRA = {"sklambda+pandas": ("sklambda", True)}  # the fallback imports scikit-learn too
CHILD_TIMEOUT_S = 180
TOLERANCE = 1e-9
LEAN_COLD_TARGET = 0.35  # sklambda / naive, at most
LEAN_WARM_TARGET = 20.0  # bare / handler, at least
FALLBACK_COLD_TARGET = 1.0  # sklambda / naive, at most
SECTION = "byom"

FULL = {"cold_runs": 9, "calls": 600, "block": 100, "warmup": 100, "profile_runs": 5}
QUICK = {"cold_runs": 2, "calls": 100, "block": 25, "warmup": 20, "profile_runs": 1}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- publish
def make_registry(endpoint: str) -> Any:
    import boto3

    from sklambda.registry.store import ModelRegistry

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    bucket = f"bench-byom-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return ModelRegistry(s3, bucket)


def request_row(x_holdout: Any) -> int:
    """The held-out row the single-row requests send: the first with a missing value if there is one (so nulls
    go through both handlers), else the first."""
    missing = x_holdout.isna().any(axis=1).to_numpy()
    return int(missing.argmax()) if missing.any() else 0


def publish_case(case: P.Case, registry: Any, endpoint: str) -> dict[str, Any]:
    """Fit the case's pipeline as a user would, publish it, promote it; write the files its processes read."""
    import joblib

    from sklambda.lifecycle.user_model import publish_user_model

    x, y = P.dataset(case.dataset)
    x_train, x_test, y_train, y_test = P.split(x, y)
    started = time.perf_counter()
    estimator = case.build().fit(x_train, y_train)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    published = publish_user_model(
        registry, case.name, estimator, x_train, y_train, x_holdout=x_test, y_holdout=y_test, target=str(y.name)
    )
    publish_s = time.perf_counter() - started
    manifest = published.manifest
    registry.promote(case.name, manifest.version, reason="benchmark")

    i = request_row(x_test)
    frame = x_test.iloc[[i]]
    instance = P.instance(frame.iloc[0])
    template = json.loads((S.ROOT / "events" / "predict_default.json").read_text())
    event = {**template, "body": json.dumps({"instances": [instance]})}
    files = {
        "event": S.WORK / f"byom-event-{case.name}.json",
        "user_model": S.WORK / f"byom-user-{case.name}.joblib",
        "user_row": S.WORK / f"byom-row-{case.name}.pkl",
    }
    files["event"].write_text(json.dumps(event))
    joblib.dump(estimator, files["user_model"])
    frame.to_pickle(files["user_row"])

    model_key = registry.version_prefix(case.name, manifest.version) + manifest.primary_artifact
    reg = S.Registry(
        endpoint=endpoint,
        bucket=registry.bucket,
        model=case.name,
        version=manifest.version,
        model_key=model_key,
        artifact_bytes=manifest.artifacts[manifest.primary_artifact].bytes,
        train_seconds=fit_s,
        holdout=manifest.metrics.get("holdout", {}),
    )
    env = S.handler_env(
        reg,
        DEFAULT_MODEL=case.name,
        BENCH_EVENT=str(files["event"]),
        PREDICTION_ID_KEY="bench-signing-key",  # the template signs prediction ids, so the benchmark does too
        NAIVE_FEATURES_JSON=json.dumps(manifest.schema.names),
        NAIVE_TASK=manifest.task,
    )
    lean = manifest.lean.model_dump() if manifest.lean else None
    return {
        "case": {"name": case.name, "label": case.label, "dataset": case.dataset, "expect": case.expect},
        "env": env,
        "files": {k: str(v) for k, v in files.items()},
        "facts": {
            "task": manifest.task,
            "features": len(manifest.features),
            "categories": sum(1 for f in manifest.features if f.type == "category"),
            "nullable": sum(1 for f in manifest.features if f.nullable),
            "train_rows": len(y_train),
            "holdout_rows": len(y_test),
            "request_row": instance,
            "runtime": published.runtime,
            "lean": lean,
            "serving_check": published.serving_check,
            "artifacts": {f: r.bytes for f, r in manifest.artifacts.items() if f.startswith("model.")},
            "holdout": manifest.metrics.get("holdout", {}),
            "fit_s": fit_s,
            "publish_s": publish_s,
        },
    }


# ----------------------------------------------------------------------------- cold start
def cold_once(
    variant: str,
    env: dict[str, str],
    tag: str,
    *,
    pandas: bool = False,
    extra_env: dict[str, str] | None = None,
    importtime: bool = False,
) -> dict[str, Any]:
    """Spawn one fresh process; time Popen → first result line; return the child's report too."""
    child_env = {**env, **(extra_env or {})}
    if not pandas:
        child_env["BYOM_NO_PANDAS"] = "1"
    tmp = S.WORK / f"byom-naive-tmp-{uuid.uuid4().hex[:8]}.joblib"  # an empty "/tmp" per sandbox
    child_env["NAIVE_MODEL_PATH"] = str(tmp)
    err_path = S.WORK / f"byom-cold-{tag}-{variant}.stderr"
    read_fd, write_fd = os.pipe()
    python = [sys.executable, *(["-X", "importtime"] if importtime else [])]
    try:
        with open(err_path, "wb") as err:
            spawned = time.clock_gettime(time.CLOCK_MONOTONIC)
            proc = subprocess.Popen(
                [*python, str(COLD_CHILD), variant, repr(spawned), str(write_fd)],
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
    if report["pandas_imported"] and not pandas:
        raise RuntimeError(f"{variant} imported pandas although it was blocked")
    if importtime:
        report["importtime"] = parse_importtime(err_path.read_text())
    err_path.unlink(missing_ok=True)
    return report


def same_answer(a: dict[str, Any], b: dict[str, Any]) -> tuple[bool, float]:
    """(labels equal, max |Δ| of probabilities or regression values) between two children's answers."""
    if a["probabilities"] is not None or b["probabilities"] is not None:
        labels = a["predictions"] == b["predictions"]
        pa, pb = a["probabilities"] or [], b["probabilities"] or []
    else:
        labels, pa, pb = True, [a["predictions"]], [b["predictions"]]
    flat_a = [v for row in pa for v in (row if isinstance(row, list) else [row])]
    flat_b = [v for row in pb for v in (row if isinstance(row, list) else [row])]
    if len(flat_a) != len(flat_b):
        return False, float("inf")
    return labels, max((abs(x - y) for x, y in zip(flat_a, flat_b, strict=True)), default=0.0)


def run_cold(name: str, env: dict[str, str], runs: int, *, fallback: bool) -> dict[str, Any]:
    variants = {**COLD_VARIANTS, **(FALLBACK_EXTRA if fallback else {})}
    labels_in_order = list(variants)
    for child, pandas in variants.values():  # one untimed run each: bytecode and page caches warm
        cold_once(child, env, f"{name}-warmup", pandas=pandas)
    out: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for i in range(runs):
        for label in labels_in_order if i % 2 == 0 else labels_in_order[::-1]:  # A B C D D C B A ...
            if label.endswith("+pandas") and i % 2:
                continue  # the pandas-importable repeats: every other round (context, not a target)
            child, pandas = variants[label]
            out[label].append(cold_once(child, env, f"{name}-{i}", pandas=pandas))
        log(
            f"  cold {i + 1:2d}/{runs} "
            + "  ".join(f"{label} {out[label][-1]['parent_s'] * 1000:6.0f}" for label in labels_in_order if out[label])
            + " ms"
        )
    labels, diff = same_answer(out["sklambda"][0], out["naive"][0])
    if not labels or not diff <= TOLERANCE:
        raise RuntimeError(f"{name}: the sklambda and naive handlers disagree (labels equal {labels}, max |Δ| {diff})")
    return {"runs": out, "answers_labels_equal": labels, "answers_max_diff": diff}


# ----------------------------------------------------------------------------- warm
def run_warm(name: str, env: dict[str, str], files: dict[str, str], cfg: dict[str, int]) -> dict[str, Any]:
    out_path = S.WORK / f"byom-warm-{name}.json"
    err_path = S.WORK / f"byom-warm-{name}.stderr"
    cmd = [sys.executable, str(WARM_WORKER), str(out_path), "--event", files["event"]]
    cmd += ["--user-model", files["user_model"], "--user-row", files["user_row"]]
    for key in ("calls", "block", "warmup"):
        cmd += [f"--{key}", str(cfg[key])]
    with open(err_path, "wb") as err:
        code = subprocess.call(
            cmd, env=env, cwd=S.ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=2400
        )
    if code != 0:
        raise RuntimeError(f"warm worker failed for {name} (exit {code}):\n{err_path.read_text()[-4000:]}")
    err_path.unlink(missing_ok=True)
    return json.loads(out_path.read_text())


# ----------------------------------------------------------------------------- profiles
_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)\s*$")
PACKAGE_GROUPS = {
    "sklearn": "scikit-learn",
    "scipy": "scipy",
    "joblib": "joblib",
    "numpy": "numpy",
    "pandas": "pandas",
    "botocore": "boto3 + botocore",
    "boto3": "boto3 + botocore",
    "s3transfer": "boto3 + botocore",
    "urllib3": "boto3 + botocore",
    "dateutil": "boto3 + botocore",
    "jmespath": "boto3 + botocore",
    "pydantic": "pydantic",
    "pydantic_core": "pydantic",
    "annotated_types": "pydantic",
    "typing_extensions": "pydantic",
    "aws_lambda_powertools": "Powertools",
    "sklambda": "sklambda",
    "app": "sklambda",
    "_byom_naive_handler": "the naive handler module (client, download, joblib.load)",
    "threadpoolctl": "scikit-learn",
}


def parse_importtime(text: str) -> dict[str, float]:
    """Self time (s) of every module ``-X importtime`` logged, summed by package group."""
    out: dict[str, float] = defaultdict(float)
    stdlib = set(sys.stdlib_module_names)
    for line in text.splitlines():
        found = _IMPORTTIME.match(line)
        if not found:
            continue
        top = found.group(4).split(".")[0]
        group = PACKAGE_GROUPS.get(top) or ("stdlib" if top.lstrip("_") in stdlib or top in stdlib else "other")
        out[group] += int(found.group(1)) / 1e6
    return dict(out)


def run_phases(name: str, env: dict[str, str], runs: int, runtime: str) -> list[dict[str, Any]]:
    """sklambda's first request, step by step (extra processes, wrapped library functions)."""
    extra = {"BYOM_PHASES": "1", "BYOM_RUNTIME": runtime, "BYOM_GC_TIME": "1"}
    return [cold_once("sklambda", env, f"{name}-phases-{i}", extra_env=extra) for i in range(runs)]


def run_gc_off(name: str, env: dict[str, str], runs: int) -> dict[str, list[dict[str, Any]]]:
    """What-if, not a measurement of shipped code: sklambda's cold start with the cyclic garbage collector disabled
    for the whole process (``gc.disable()`` first), rotating with the unchanged handler and the naive one."""
    variants = {"on": ("sklambda", {}), "off": ("sklambda", {"BYOM_GC_OFF": "1"}), "naive": ("naive", {})}
    out: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    order = list(variants)
    for i in range(runs):
        for v in order if i % 2 == 0 else order[::-1]:
            child, extra = variants[v]
            out[v].append(cold_once(child, env, f"{name}-gc-{v}-{i}", extra_env=extra))
    return out


def run_importtime(name: str, env: dict[str, str], runs: int) -> dict[str, list[dict[str, Any]]]:
    """Both handlers under ``python -X importtime``, alternating: import self time by package."""
    imports: dict[str, list[dict[str, Any]]] = {"sklambda": [], "naive": []}
    for i in range(runs):
        for v in ("sklambda", "naive") if i % 2 == 0 else ("naive", "sklambda"):
            imports[v].append(cold_once(v, env, f"{name}-importtime-{i}", importtime=True))
    return imports


# ----------------------------------------------------------------------------- report
def med(values: list[float]) -> float:
    return statistics.median(values)


def ms(seconds: float, digits: int | None = None) -> str:
    return S.fmt_ms(seconds, digits)


def summary(r: dict[str, Any]) -> dict[str, Any]:
    """The numbers the tables and the verdict use, for one case."""
    cold = r["cold"]["runs"]
    a = [x["parent_s"] for x in cold["sklambda"]]
    b = [x["parent_s"] for x in cold["naive"]]
    warm = r["warm"]["samples"]
    lean = r["facts"]["runtime"] != "sklearn-joblib"
    cold_ratio = med(a) / med(b)
    a_pd = [x["parent_s"] for x in cold.get("sklambda+pandas", cold["sklambda"])]
    b_pd = [x["parent_s"] for x in cold["naive+pandas"]]
    speed = med(warm["bare"]) / med(warm["sklambda"])
    if lean:
        met = cold_ratio <= LEAN_COLD_TARGET and speed >= LEAN_WARM_TARGET
        goal = f"cold ≤ {LEAN_COLD_TARGET}×, warm ≥ {LEAN_WARM_TARGET:g}×"
        why = []
        if cold_ratio > LEAN_COLD_TARGET:
            why.append("cold")
        if speed < LEAN_WARM_TARGET:
            why.append("warm")
    else:
        met = cold_ratio <= FALLBACK_COLD_TARGET
        goal = f"cold ≤ {FALLBACK_COLD_TARGET}×"
        why = [] if met else ["cold"]
    return {
        "lean": lean,
        "cold": (med(a), med(b), cold_ratio),
        "cold_paired": [x / y for x, y in zip(a, b, strict=True)],
        "cold_pandas": (med(a_pd), med(b_pd), med(a_pd) / med(b_pd)),
        "floor": med([x["parent_s"] for x in cold["floor"]]),
        "warm": (med(warm["sklambda"]), med(warm["bare"]), speed),
        "warm_served": med(warm["bare_served"]),
        "met": met,
        "goal": goal,
        "missed": why,
    }


def why_text(facts: dict[str, Any]) -> str:
    lean = facts["lean"] or {}
    if lean.get("accepted"):
        return "converts exactly"
    return str(lean.get("reason") or "no lean record").replace("|", "\\|")


def parity_text(facts: dict[str, Any]) -> str:
    lean = facts["lean"] or {}
    check = facts["serving_check"]
    served = f"serving check {check['max_abs_diff']:.3g} on {check['rows']} rows"
    par = lean.get("parity") or {}
    if not lean.get("accepted") or not par:
        return f"— (scikit-learn serves); {served}"
    ident = "bit-identical" if par.get("bit_identical") else f"max Δ {par.get('max_abs_diff', float('nan')):.3g}"
    rows = f"{par.get('rows', 0):,} held-out + {par.get('adversarial_rows', 0):,} adversarial rows"
    return f"{ident} ({rows}, max Δ {par.get('max_abs_diff', float('nan')):.3g}); {served}"


def metric_text(holdout: dict[str, Any]) -> str:
    for key in ("accuracy", "roc_auc", "rmse", "r2"):
        if key in holdout:
            value = holdout[key]
            return f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}"
    return "—"


STEP_COLUMNS = (
    ("S3 client", ("S3 client (botocore session, endpoint, client)",)),
    ("alias", ("alias read (S3 GET)",)),
    ("manifest", ("manifest read + pydantic parse",)),
    ("artifact + sha256", ("artifact fetch + sha256",)),
    (
        "runtime import + load",
        (
            "import the lean runtime (sklambda.serving.lean)",
            "lean.load (parse + check the artifact)",
            "scikit-learn version check (importlib.metadata)",
            "joblib.load (imports joblib, scikit-learn, scipy)",
        ),
    ),
    ("first prediction", ("first prediction",)),
)


def _step_medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Per column of STEP_COLUMNS (and module import, other), the median over the profiling runs."""
    per: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        phases = run["phases"]
        total_steps = 0.0
        for column, labels in STEP_COLUMNS:
            value = sum(phases.get(label, 0.0) for label in labels)
            if column == "runtime import + load":
                # load_version wraps the check, the fetch and the deserialisation: count each once
                value = phases.get("import the lean runtime (sklambda.serving.lean)", 0.0) + (
                    phases.get("load_version (all of loading)", 0.0) - phases.get("artifact fetch + sha256", 0.0)
                )
            per[column].append(value)
            total_steps += value
        per["module import"].append(run["import_s"])
        per["interpreter"].append(run["interpreter_s"])
        per["other"].append(run["first_invoke_s"] - total_steps)
        per["total"].append(run["parent_s"])
        per["of which GC"].append(run["gc"]["seconds"])
    return {k: med(v) for k, v in per.items()}


def render_steps(add: Any, profiles: dict[str, Any], sums: dict[str, Any], cases: dict[str, Any], cfg: dict) -> None:
    add("### Where sklambda's cold start goes")
    add("")
    add(
        f"{cfg['profile_runs']} extra processes per case (not the timed ones), the steps of the first request timed by "
        "wrapping the library's functions. *interpreter* = Popen → first statement; *module import* = importing "
        "app.py (Powertools, pydantic, botocore, sklambda); *S3 client* = the first `s3_client()` (botocore "
        "session, endpoint and service model); *runtime import + load* = importing the lean runtime and "
        "`lean.load`, or the scikit-learn version check and `joblib.load` (which imports joblib, scikit-learn and "
        "scipy); *other* = the rest of the first invoke (validation, prediction ids, metrics, logging, the "
        "response). Medians, ms."
    )
    add("")
    columns = ["interpreter", "module import", *(c for c, _ in STEP_COLUMNS), "other", "of which GC"]
    add(
        "| pipeline | runtime | total | "
        + " | ".join(columns)
        + " | naive | floor | what-if GC off: on → off | off / naive |"
    )
    add("|---|---|---:|" + "---:|" * len(columns) + "---:|---:|---:|---:|")
    for name, prof in profiles.items():
        steps = _step_medians(prof["phases"])
        s = sums[name]
        cells = " | ".join(ms(steps[c], 1) for c in columns)
        on, off, naive = (med([x["parent_s"] for x in prof["gc_off"][k]]) for k in ("on", "off", "naive"))
        add(
            f"| {name} | {cases[name]['facts']['runtime']} | {ms(steps['total'], 0)} | {cells} | "
            f"{ms(s['cold'][1], 0)} | {ms(s['floor'], 0)} | {ms(on, 0)} → {ms(off, 0)} ({(off - on) / on:+.0%}) | "
            f"{off / naive:.2f}× (naive {ms(naive, 0)}) |"
        )
    add("")
    add(
        "*of which GC* = time inside the cyclic garbage collector (`gc.callbacks`) during the whole process, spread "
        "over the other columns (mostly the imports). *What-if GC off* is not shipped code: the same handler in "
        f"{len(next(iter(profiles.values()))['gc_off']['on'])} rounds of fresh processes rotating the unchanged "
        "handler, the handler with `gc.disable()` before anything is imported, and the naive handler; *off / naive* "
        "compares the second with the third (same rounds). *naive* and *floor* are the timed runs' medians."
    )
    add("")


def render_imports(add: Any, name: str, prof: dict[str, Any], s: dict[str, Any]) -> None:
    runs = prof["importtime"]
    add(
        f"**{name}, imports by package** (`python -X importtime`, {len(runs['sklambda'])} processes per handler, "
        "alternating; the self time of every module summed by package; importtime's own overhead inflates all of "
        f"them a little). Timed runs: sklambda {ms(s['cold'][0], 0)} vs naive {ms(s['cold'][1], 0)} ms = "
        f"{s['cold'][2]:.2f}×. Medians, ms."
    )
    add("")
    groups = sorted(
        {g for v in runs.values() for run in v for g in run["importtime"]},
        key=lambda g: -max(med([run["importtime"].get(g, 0.0) for run in runs[v]]) for v in runs),
    )
    add("| package | sklambda | naive | sklambda − naive |")
    add("|---|---:|---:|---:|")
    for g in groups:
        a, b = (med([run["importtime"].get(g, 0.0) for run in runs[v]]) for v in ("sklambda", "naive"))
        add(f"| {g} | {ms(a, 1)} | {ms(b, 1)} | {(a - b) * 1000:+,.1f} |")
    a, b = (med([sum(run["importtime"].values()) for run in runs[v]]) for v in ("sklambda", "naive"))
    add(f"| **all imports** | **{ms(a, 1)}** | **{ms(b, 1)}** | **{(a - b) * 1000:+,.1f}** |")
    add("")


def render(results: dict[str, Any], cfg: dict[str, int], quick: bool, started: dt.datetime, wall_s: float) -> str:
    m, libs = S.machine(), S.library_versions()
    try:
        from importlib import metadata

        libs["pandas"] = metadata.version("pandas")
    except Exception:  # a version string only
        libs["pandas"] = "not installed"
    cases = results["cases"]
    sums = {name: summary(r) for name, r in cases.items()}
    lines: list[str] = []
    add = lines.append
    add("## Bring your own model: users' pipelines through publish_user_model (`benchmarks/bench_byom.py`)")
    add("")
    if quick:
        add("> **--quick smoke run: too few samples to quote.**")
        add("")
    add(f"- **Date:** {started:%Y-%m-%d %H:%M} UTC (benchmark wall time {wall_s / 60:.1f} min)")
    add(
        f"- **Machine:** {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {m['ram_gib']:.1f} GiB RAM, "
        f"{m['os']}; shared with other engineers' work and noisy (load average {results['load'][0]:.1f} at the "
        f"start, {results['load'][1]:.1f} at the end), so compare the ratios"
    )
    add(f"- **Python:** {m['python']}")
    add("- **Libraries:** " + ", ".join(f"{k} {v}" for k, v in libs.items()))
    add(f"- **Reproduce:** `{results['command']}` (`--quick` for a smoke run, `--only NAME,…` for some cases)")
    add(
        "- **What a case is:** a bundled scikit-learn data set loaded with `as_frame=True` (or the generated mixed "
        "table), split 75/25 (`train_test_split`, seed 0, stratified for classes), the pipeline fitted on the "
        "training DataFrame, then `publish_user_model(registry, name, estimator, X_train, y_train, "
        "x_holdout=X_test, y_holdout=y_test)` into a moto registry and promoted. The request is one held-out row "
        "as a JSON object (the first with a missing value where the data has any, so nulls go through both handlers)."
    )
    add(
        "- **Baselines, measured in the same run:** *naive* = that version's own naive handler "
        "(`benchmarks/_byom_naive_handler.py`, the shape of `naive_handler.py`: module-level `import sklearn, "
        "joblib`, boto3 `download_file` of the version's model.joblib to an empty /tmp, `joblib.load` at import; "
        "handler = `json.loads` → object rows in the feature order → `predict_proba` or `predict` → `json.dumps`). "
        "*bare* = the user's own fitted estimator (fitted on the DataFrame) called on the request's row as a "
        "one-row DataFrame, `predict_proba` for classifiers, `predict` for regressors. *floor* = a process that "
        "only imports numpy, pydantic, Powertools' logger and metrics and botocore and creates an S3 client."
    )
    add(
        "- **Handler environment:** template.yaml defaults (`ALIAS_CHECK_SECONDS=30`, `POWERTOOLS_LOG_LEVEL=INFO`, "
        "signed prediction ids), `POWERTOOLS_TRACE_DISABLED=true` (no X-Ray daemon); logs and the EMF line are "
        "serialised inside every timed call, then dropped."
    )
    add(
        f"- **Cold start:** {cfg['cold_runs']} fresh processes per variant and case, rotating A B C C B A … after "
        "one untimed process each (bytecode and page caches warm: Python work, not disk), timed by the parent "
        "from `Popen` to the first answer on a pipe. Both handlers' first answers are checked equal (labels, "
        f"values within {TOLERANCE:g}). **Warm:** {cfg['calls']:,} timed calls per variant after {cfg['warmup']} "
        f"warm-up calls, in interleaved blocks of {cfg['block']} (order rotated every round), each call timed "
        "alone with `perf_counter`; the handler's answer is checked against the user's estimator first."
    )
    pandas_cost = med([sums[n]["cold_pandas"][1] - sums[n]["cold"][1] for n in cases])
    add(
        "- **pandas:** the cold-start processes cannot import pandas, as on Lambda (the layers do not ship it; "
        "`lifecycle.serving_check` blocks it the same way). In this development venv `import sklearn` pulls pandas "
        f"in (`sklearn.utils.fixes`): the naive handler then takes {ms(pandas_cost, 0)} ms longer (median over the "
        "cases), time a Lambda never spends. The verdict uses the pandas-free runs; *cold ratio, pandas importable* "
        "repeats both handlers with pandas importable in every other round (sklambda / naive ms), the way "
        "`bench_serving.py` measures "
        "(its naive baseline imports pandas)."
    )
    add(
        f"- **Targets:** lean-served: cold start ≤ {LEAN_COLD_TARGET}× the naive handler's **and** warm single row "
        f"≥ {LEAN_WARM_TARGET:g}× faster than the bare call; scikit-learn-served: cold start ≤ "
        f"{FALLBACK_COLD_TARGET}× the naive handler's. Ratios are ratios of medians."
    )
    add("")
    add("### The table")
    add("")
    add(
        "| pipeline | dataset | runtime | why | parity | cold sklambda ms | cold naive ms | cold ratio | "
        "cold ratio, pandas importable | warm handler ms | warm bare ms | bare / handler | target | met? |"
    )
    add("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for name, r in cases.items():
        f, s = r["facts"], sums[name]
        verdict = "**yes**" if s["met"] else f"**no** ({', '.join(s['missed'])})"
        add(
            f"| {r['case']['label']} | {r['case']['dataset']} | {f['runtime']} | {why_text(f)} | {parity_text(f)} | "
            f"{ms(s['cold'][0], 0)} | {ms(s['cold'][1], 0)} | **{s['cold'][2]:.2f}×** | "
            f"{s['cold_pandas'][2]:.2f}× ({ms(s['cold_pandas'][0], 0)} / {ms(s['cold_pandas'][1], 0)}) | "
            f"{ms(s['warm'][0], 3)} | "
            f"{ms(s['warm'][1], 3)} | **{s['warm'][2]:.1f}×** | {s['goal']} | {verdict} |"
        )
    add("")
    lean_cases = [n for n in cases if sums[n]["lean"]]
    fallback_cases = [n for n in cases if not sums[n]["lean"]]
    add(
        f"**Verdict:** {sum(sums[n]['met'] for n in lean_cases)} of {len(lean_cases)} lean-served pipelines meet both "
        f"lean targets (cold: {sum(sums[n]['cold'][2] <= LEAN_COLD_TARGET for n in lean_cases)} of "
        f"{len(lean_cases)}; warm: {sum(sums[n]['warm'][2] >= LEAN_WARM_TARGET for n in lean_cases)} of "
        f"{len(lean_cases)}); {sum(sums[n]['met'] for n in fallback_cases)} of {len(fallback_cases)} "
        "scikit-learn-served pipelines meet the fallback target."
    )
    add("")
    warm_misses = [n for n in lean_cases if sums[n]["warm"][2] < LEAN_WARM_TARGET]
    if warm_misses:
        bare = [sums[n]["warm"][1] for n in warm_misses]
        handler = [sums[n]["warm"][0] for n in warm_misses]

        def span(values: list[float]) -> str:
            lo, hi = ms(min(values), 3), ms(max(values), 3)
            return lo if lo == hi else f"{lo}–{hi}"

        add(
            f"Warm misses ({', '.join(warm_misses)}): the user's own bare call takes only {span(bare)} ms for these "
            f"models, so {LEAN_WARM_TARGET:g}× would need a handler under "
            f"{span([b / LEAN_WARM_TARGET for b in bare])} ms; the handler's median is {span(handler)} ms, "
            "most of it the per-request work every model pays "
            "(body parsing and validation, prediction ids, metrics, the log line, the response), see "
            "`bench_serving.py`'s layer table."
        )
        add("")
    add("Datasets: " + "; ".join(f"*{k}* = {v}" for k, v in P.DATASET_NOTES.items()) + ".")
    add("")

    # ------------------------------------------------------------------ cold detail
    add("### Cold start, in detail")
    add("")
    add(
        "Child clocks: *import* = importing the handler module (the naive handler downloads and loads the model "
        "here); *first invoke* = the first `lambda_handler` call (sklambda reads the alias, manifest and artifact, "
        "checks sha256, loads the runtime, answers). *pair ratios* = sklambda / naive of each adjacent pair. "
        "Times in ms (medians unless said)."
    )
    add("")
    add(
        "| pipeline | sklambda (p90) | import + first invoke | naive (p90) | import + first invoke | pair ratios "
        "median (range) | floor | floor / naive | scikit-learn imported (sklambda) |"
    )
    add("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, r in cases.items():
        runs, s = r["cold"]["runs"], sums[name]
        cells = []
        for v in ("sklambda", "naive"):
            tot = S.summarise([x["parent_s"] for x in runs[v]])
            imp = med([x["import_s"] for x in runs[v]])
            first = med([x["first_invoke_s"] for x in runs[v]])
            cells += [f"{ms(tot['median'], 0)} ({ms(tot['p90'], 0)})", f"{ms(imp, 0)} + {ms(first, 0)}"]
        paired = s["cold_paired"]
        imported = "yes" if any(x["sklearn_imported"] for x in runs["sklambda"]) else "no"
        add(
            f"| {name} | " + " | ".join(cells) + f" | {med(paired):.2f}× ({min(paired):.2f}–{max(paired):.2f}) | "
            f"{ms(s['floor'], 0)} | {s['floor'] / s['cold'][1]:.2f}× | {imported} |"
        )
    add("")

    # ------------------------------------------------------------------ warm detail
    add("### Warm single row, in detail")
    add("")
    add(
        "*bare served* = the version's model.joblib (the positional copy publish writes: ColumnTransformers select "
        "by position, no fitted feature names) on the matrix the handler's validator builds: scikit-learn without "
        "the DataFrame handling. Times in ms."
    )
    add("")
    add(
        "| pipeline | runtime | handler median | p90 | p99 | bare (DataFrame) median | p90 | bare served (matrix) "
        "median | bare / handler | bare served / handler | answer vs user's estimator |"
    )
    add("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, r in cases.items():
        w, s = r["warm"], sums[name]
        h, b = S.summarise(w["samples"]["sklambda"]), S.summarise(w["samples"]["bare"])
        answer = "bit-identical" if w["answer_exact"] else f"max Δ {w['answer_max_diff']:.3g}"
        add(
            f"| {name} | {w['runtime']} | **{ms(h['median'], 3)}** | {ms(h['p90'], 3)} | {ms(h['p99'], 3)} | "
            f"{ms(b['median'], 3)} | {ms(b['p90'], 3)} | {ms(s['warm_served'], 3)} | {s['warm'][2]:.1f}× | "
            f"{s['warm_served'] / s['warm'][0]:.1f}× | {answer} |"
        )
    add("")

    # ------------------------------------------------------------------ publish facts
    add("### What was published")
    add("")
    add(
        "| pipeline | features (categories, nullable) | train / holdout rows | holdout | model.joblib | "
        "lean artifact | fit s | publish s |"
    )
    add("|---|---:|---:|---|---:|---:|---:|---:|")
    for name, r in cases.items():
        f = r["facts"]
        arts = f["artifacts"]
        lean_bytes = next((v for k, v in arts.items() if k != "model.joblib"), None)
        lean_cell = "—" if lean_bytes is None else f"{lean_bytes / 1e3:,.0f} kB"
        add(
            f"| {name} | {f['features']} ({f['categories']}, {f['nullable']}) | {f['train_rows']:,} / "
            f"{f['holdout_rows']:,} | {metric_text(f['holdout'])} | {arts.get('model.joblib', 0) / 1e3:,.0f} kB | "
            f"{lean_cell} | {f['fit_s']:.2f} | {f['publish_s']:.1f} |"
        )
    add("")
    add(
        "*publish s* = `publish_user_model` end to end: schema, servable copy, lean conversion and parity check, "
        "the clean-process serving check (a fresh interpreter), holdout metrics, drift baseline, the S3 writes."
    )
    add("")

    # ------------------------------------------------------------------ where the cold start goes
    profiles = results.get("profiles", {})
    if profiles:
        render_steps(add, profiles, sums, cases, cfg)
        for name, prof in profiles.items():
            if "importtime" in prof:
                render_imports(add, name, prof, sums[name])
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few runs, for a smoke check (does not touch RESULTS.md)")
    p.add_argument("--cold-runs", type=int, help="fresh processes per variant and case (≥ 7 for quoted numbers)")
    p.add_argument("--calls", type=int, help="timed warm single-row calls per variant (≥ 500 for quoted numbers)")
    p.add_argument("--only", default="", help="comma-separated substrings: only the cases whose name contains one")
    p.add_argument("--output", type=Path, help="markdown file whose byom section is rewritten")
    args = p.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    for key in ("cold_runs", "calls"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    cfg["block"] = min(cfg["block"], cfg["calls"])
    output = args.output or (S.WORK / "RESULTS-quick.md" if args.quick else S.RESULTS)
    wanted = [w for w in args.only.split(",") if w]
    cases = [c for c in P.CASES if not wanted or any(w in c.name for w in wanted)]
    if not cases:
        log(f"no case matches {args.only!r}")
        return 1

    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    S.WORK.mkdir(parents=True, exist_ok=True)
    S.isolate_from_real_aws()
    for var in ("POWERTOOLS_DEV", "POWERTOOLS_METRICS_DISABLED"):  # both would skip the EMF serialisation
        os.environ.pop(var, None)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    command = ".venv/bin/python benchmarks/bench_byom.py" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    results: dict[str, Any] = {"cases": {}, "profiles": {}, "command": command, "load": [os.getloadavg()[0]]}
    server, endpoint = S.start_moto()
    try:
        registry = make_registry(endpoint)
        published = {}
        for case in cases:
            log(f"[{case.name}] fit + publish_user_model ({case.dataset})")
            published[case.name] = publish_case(case, registry, endpoint)
            facts = published[case.name]["facts"]
            log(f"  served by {facts['runtime']}: {why_text(facts)} ({facts['publish_s']:.1f} s)")
        for name, pub in published.items():
            log(f"[{name}] cold start: {cfg['cold_runs']} processes per variant")
            fallback = pub["facts"]["runtime"] == "sklearn-joblib"
            cold = run_cold(name, pub["env"], cfg["cold_runs"], fallback=fallback)
            log(f"[{name}] warm: {cfg['calls']} single-row calls per variant")
            warm = run_warm(name, pub["env"], pub["files"], cfg)
            results["cases"][name] = {"case": pub["case"], "facts": pub["facts"], "cold": cold, "warm": warm}
            log(f"[{name}] the first request step by step: {cfg['profile_runs']} processes")
            profile: dict[str, Any] = {"phases": run_phases(name, pub["env"], cfg["profile_runs"], warm["runtime"])}
            log(f"[{name}] what-if: the cold start with the garbage collector off, {cfg['profile_runs']} rounds")
            profile["gc_off"] = run_gc_off(name, pub["env"], cfg["profile_runs"])
            if fallback:
                log(f"[{name}] imports of the scikit-learn fallback's cold start: {cfg['profile_runs']} processes each")
                profile["importtime"] = run_importtime(name, pub["env"], cfg["profile_runs"])
            results["profiles"][name] = profile
    finally:
        server.stop()
    wall = time.perf_counter() - t0
    results["load"].append(os.getloadavg()[0])
    (S.WORK / "byom-results.json").write_text(json.dumps(results, default=str))
    text = render(results, cfg, args.quick, started, wall)
    S.write_section(SECTION, text, output)
    print(text)
    log(f"wrote the {SECTION} section of {output} ({wall:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
