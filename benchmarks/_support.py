"""Shared plumbing for the benchmarks: the local S3 emulator, the demo model, the environment the
handlers read, machine facts, summary statistics and the RESULTS.md writer.

Only the parent (orchestrating) process imports this; the measured child processes do not.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work"
RESULTS = BENCH / "RESULTS.md"

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
LIBRARIES = ("scikit-learn", "numpy", "scipy", "joblib", "aws-lambda-powertools", "pydantic", "boto3", "moto")
# template.yaml defaults for the predict function.
TEMPLATE_ALIAS_CHECK_SECONDS = "30"
TEMPLATE_LOG_LEVEL = "INFO"
# The demo model of the benchmark (the brief): RandomForest, 100 trees, depth 12, 20,000 rows.
DEMO_ROWS = 20_000
DEMO_PARAMS = {"n_estimators": 100, "max_depth": 12, "random_state": 0}


def isolate_from_real_aws() -> None:
    """Fake credentials and no profile: nothing here can reach a real AWS account."""
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(FAKE_CREDENTIALS)


# ----------------------------------------------------------------------------- emulator + model
@dataclass
class Registry:
    endpoint: str
    bucket: str
    model: str
    version: str
    model_key: str
    artifact_bytes: int
    train_seconds: float
    holdout: dict[str, Any]


def start_moto() -> tuple[Any, str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def publish_demo(endpoint: str, *, rows: int = DEMO_ROWS, log=print) -> Registry:
    """Train the demo churn model, publish it as demo v1 into a fresh bucket and promote it."""
    import boto3

    from sklambda.lifecycle import demo, training
    from sklambda.registry.store import ModelRegistry

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    bucket = f"bench-registry-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    registry = ModelRegistry(s3, bucket)

    columns, y = demo.generate(rows, seed=0)
    started = time.perf_counter()
    trained = training.train(
        demo.to_matrix(columns),
        y,
        demo.DEMO_SCHEMA,
        task="classification",
        target=demo.TARGET,
        params=DEMO_PARAMS,
        progress=lambda m: log(f"  train: {m}"),
    )
    train_seconds = time.perf_counter() - started
    manifest = training.publish(registry, "demo", trained, description="benchmark model")
    registry.promote("demo", manifest.version, reason="benchmark")
    key = registry.version_prefix("demo", manifest.version) + manifest.primary_artifact
    return Registry(
        endpoint=endpoint,
        bucket=bucket,
        model="demo",
        version=manifest.version,
        model_key=key,
        artifact_bytes=manifest.artifacts[manifest.primary_artifact].bytes,
        train_seconds=train_seconds,
        holdout=trained.metrics["holdout"],
    )


def handler_env(reg: Registry, **extra: str) -> dict[str, str]:
    """The environment a predict function gets on Lambda (template.yaml), pointed at the emulator."""
    env = {k: v for k, v in os.environ.items() if k != "AWS_PROFILE"}
    env.update(FAKE_CREDENTIALS)
    env.update(
        {
            "AWS_ENDPOINT_URL": reg.endpoint,
            "MODEL_BUCKET": reg.bucket,
            "DEFAULT_MODEL": reg.model,
            "MODEL_ALIAS": "production",
            "ALIAS_CHECK_SECONDS": TEMPLATE_ALIAS_CHECK_SECONDS,
            "POWERTOOLS_METRICS_NAMESPACE": "sklambda",
            "POWERTOOLS_SERVICE_NAME": "predict",
            "POWERTOOLS_LOG_LEVEL": TEMPLATE_LOG_LEVEL,
            "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here (template: Tracing: Active)
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",  # set by the Lambda runtime (the predict app reads it)
            "MODEL_KEY": reg.model_key,  # the naive handler reads this fixed key
        }
    )
    env.update(extra)
    return env


# ----------------------------------------------------------------------------- machine facts
def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return found.group(1).strip() if found else "unknown"


def ram_gib() -> float | None:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    found = re.search(r"^MemTotal:\s*(\d+) kB", text, re.M)
    return int(found.group(1)) / 1024**2 if found else None


def machine() -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_gib": ram_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }


def library_versions() -> dict[str, str]:
    out = {}
    for dist in LIBRARIES:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


# ----------------------------------------------------------------------------- statistics
def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on sorted values."""
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarise(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "median": statistics.median(ordered),
        "mean": statistics.fmean(ordered),
        "p90": percentile(ordered, 0.90),
        "p99": percentile(ordered, 0.99),
        "min": ordered[0],
        "max": ordered[-1],
    }


def fmt_ms(seconds: float, digits: int | None = None) -> str:
    ms = seconds * 1000
    if digits is None:
        digits = 3 if ms < 1 else 2 if ms < 10 else 1 if ms < 1000 else 0
    return f"{ms:,.{digits}f}"


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f}"


# ----------------------------------------------------------------------------- RESULTS.md
HEADER = (
    "# sklambda benchmarks\n\n"
    "Generated by the scripts in this directory (`make bench` runs them all). Each section is "
    "rewritten by the benchmark that owns it; numbers come from one run on the machine named in the "
    "section. The machine is shared and noisy, so every section compares against a baseline measured "
    "in the same run and the ratios matter more than the absolute times.\n"
)


def write_section(name: str, text: str, path: Path = RESULTS) -> None:
    """Replace the ``name`` section of RESULTS.md (between its markers), keeping the rest."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{text.rstrip()}\n{end}\n"
    current = path.read_text() if path.exists() else HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(current):
        updated = pattern.sub(lambda _m: block, current, count=1)
    else:
        updated = current.rstrip() + "\n\n" + block
    path.write_text(updated)
