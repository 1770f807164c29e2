"""``sklambda``: serve locally, train, publish, list, promote, roll back and inspect models.

Commands act on the local stack started by ``sklambda serve`` (``make serve``) by default, or on a
deployed stack with ``--stack NAME`` (bucket and API URL come from the stack's outputs; AWS
credentials from the usual boto3 chain).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
STATE_FILE = Path(os.environ.get("SKLAMBDA_STATE_FILE", ROOT / ".sklambda" / "local.json"))
# What `sklambda serve` keeps between runs (published versions, aliases, captures): next to the state file.
STATE_DIR = Path(os.environ.get("SKLAMBDA_STATE_DIR", STATE_FILE.parent / "state"))
DEFAULT_ALIAS = "production"


class CliError(Exception):
    """A user-facing failure: printed without a traceback, exit status 1."""


# ----------------------------------------------------------------------------- output
class Progress:
    """Timestamped progress lines on stderr for long operations."""

    def __init__(self, quiet: bool = False) -> None:
        self.started = time.perf_counter()
        self.quiet = quiet

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"  [{time.perf_counter() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*["-" * w for w in widths])]
    lines += [fmt.format(*[str(x) for x in row]) for row in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- targets
@dataclass
class Target:
    """Where the registry and API live: the local stack or a deployed CloudFormation stack."""

    bucket: str
    api_url: str | None
    endpoint_url: str | None
    description: str
    deployed: bool = False
    capture_bucket: str | None = None
    functions: dict[str, str] | None = None  # logical id → function name
    state_machines: dict[str, str] | None = None  # logical id → ARN

    def client(self, service: str) -> Any:
        import boto3

        if self.endpoint_url:
            return boto3.client(
                service,
                endpoint_url=self.endpoint_url,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return boto3.client(service)

    def s3(self) -> Any:
        import boto3

        if self.endpoint_url:
            return boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return boto3.client("s3")

    def invoke(self, logical_id: str, event: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
        """Invoke a stack function through the Lambda Invoke API (the local gateway serves it too)."""
        import boto3
        from botocore.config import Config

        name = (self.functions or {}).get(logical_id)
        if not name:
            raise CliError(f"this stack has no {logical_id}")
        config = Config(read_timeout=timeout, retries={"max_attempts": 1})
        if self.endpoint_url:
            client = boto3.client(
                "lambda",
                endpoint_url=self.api_url,
                region_name="us-east-1",
                config=config,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        else:
            client = boto3.client("lambda", config=config)
        response = client.invoke(FunctionName=name, Payload=json.dumps(event).encode())
        payload = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            message = payload.get("errorMessage") if isinstance(payload, dict) else payload
            raise CliError(f"{logical_id} failed: {message}")
        return payload

    def registry(self) -> Any:
        from sklambda.registry.store import ModelRegistry

        return ModelRegistry(self.s3(), self.bucket)

    def get(self, path: str, timeout: float = 10) -> tuple[int, Any]:
        """GET an API path; requests to a deployed stack are SigV4-signed (IAM auth)."""
        import requests

        if not self.api_url:
            raise CliError("this target has no API URL")
        url = self.api_url.rstrip("/") + path
        headers: dict[str, str] = {}
        if self.deployed:
            headers = _sigv4_headers("GET", url)
        response = requests.get(url, headers=headers, timeout=timeout)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, response.text


def _sigv4_headers(method: str, url: str, body: bytes | None = None) -> dict[str, str]:
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    session = boto3.Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise CliError("no AWS credentials found to sign the request (IAM-authorised API)")
    request = AWSRequest(method=method, url=url, data=body)
    SigV4Auth(credentials.get_frozen_credentials(), "execute-api", session.region_name or "us-east-1").add_auth(request)
    return dict(request.headers)


def resolve_target(args: argparse.Namespace) -> Target:
    if getattr(args, "stack", None):
        import boto3

        try:
            stack = boto3.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"][0]
        except Exception as err:
            raise CliError(f"could not read stack {args.stack!r}: {err}") from err
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        if "ModelBucketName" not in outputs:
            raise CliError(f"stack {args.stack!r} has no ModelBucketName output; is it an sklambda stack?")
        functions = {k.removesuffix("Name"): v for k, v in outputs.items() if k.endswith("FunctionName")}
        return Target(
            outputs["ModelBucketName"],
            outputs.get("ApiUrl"),
            None,
            f"stack {args.stack}",
            deployed=True,
            capture_bucket=outputs.get("CaptureBucketName"),
            functions=functions,
            state_machines={k.removesuffix("Arn"): v for k, v in outputs.items() if k.endswith("StateMachineArn")},
        )
    if not STATE_FILE.exists():
        raise CliError("no local stack is running: start one with `make serve` (or pass --stack NAME)")
    state = json.loads(STATE_FILE.read_text())
    bucket = getattr(args, "bucket", None) or state["buckets"]["ModelBucket"]
    if not _pid_alive(state.get("pid")):
        raise CliError(f"the local stack recorded in {STATE_FILE} is not running; start it with `make serve`")
    return Target(
        bucket,
        state.get("api_url"),
        state["endpoint_url"],
        f"local stack at {state.get('api_url')}",
        capture_bucket=state["buckets"].get("CaptureBucket"),
        functions=state.get("functions", {}),
        state_machines=state.get("state_machines", {}),
    )


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----------------------------------------------------------------------------- commands
def train_demo_model(
    registry: Any, name: str, *, rows: int, drift: float, seed: int, trees: int, progress: Progress
) -> Any:
    from sklambda.lifecycle import demo, training

    progress(f"generating {rows:,} synthetic customers (drift={drift})")
    columns, y = demo.generate(rows, seed=seed, drift=drift)
    trained = training.train(
        demo.to_matrix(columns),
        y,
        demo.DEMO_SCHEMA,
        task="classification",
        target=demo.TARGET,
        params={"n_estimators": trees, "random_state": seed},
        training_data={"source": "sklambda demo generator", "rows": rows, "seed": seed, "drift": drift},
        progress=progress,
    )
    return training.publish(registry, name, trained, description="sklambda demo churn model", progress=progress)


def cmd_train_demo(args: argparse.Namespace) -> int:
    target = resolve_target(args)
    progress = Progress()
    registry = target.registry()
    manifest = train_demo_model(
        registry, args.name, rows=args.rows, drift=args.drift, seed=args.seed, trees=args.trees, progress=progress
    )
    _report_published(manifest)
    if args.promote:
        registry.promote(args.name, manifest.version, reason="sklambda train-demo")
        print(f"promoted {args.name} v{manifest.version} to {DEFAULT_ALIAS}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from sklambda.lifecycle import training

    target = resolve_target(args)
    progress = Progress()
    path = Path(args.csv)
    if not path.exists():
        raise CliError(f"{path}: no such file")
    progress(f"reading {path}")
    try:
        x, y, schema, task = training.read_csv(path.read_text(), args.target, task=args.task)
    except ValueError as err:
        raise CliError(f"{path}: {err}") from err
    progress(f"{len(x):,} rows, {len(schema.features)} features, task={task}")
    trained = training.train(
        x,
        y,
        schema,
        task=task,
        target=args.target,
        params={"n_estimators": args.trees},
        training_data={"source": str(path.resolve()), "rows": len(x)},
        progress=progress,
    )
    registry = target.registry()
    manifest = training.publish(registry, args.name, trained, progress=progress)
    _report_published(manifest)
    if args.promote:
        registry.promote(args.name, manifest.version, reason=f"sklambda train --csv {path.name}")
        print(f"promoted {args.name} v{manifest.version} to {DEFAULT_ALIAS}")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    import joblib

    from sklambda.lifecycle.user_model import PublishRefused, publish_user_model
    from sklambda.registry.features import FeatureSchema

    target = resolve_target(args)
    progress = Progress()
    path = Path(args.model_file)
    if not path.exists():
        raise CliError(f"{path}: no such file")
    progress(f"loading {path} to read its task, classes and features (only load files you trust)")
    estimator = joblib.load(path)
    schema = None
    if args.schema:
        try:
            raw = json.loads(Path(args.schema).read_text())
            schema = FeatureSchema.model_validate(raw if isinstance(raw, dict) else {"features": raw})
        except (OSError, ValueError) as err:
            raise CliError(f"{args.schema}: not a valid feature schema: {err}") from err
    x = y = None
    source: dict[str, Any] = {"source": "published file", "file": path.name}
    if args.data:
        if not args.target:
            raise CliError("--data needs --target COLUMN: the column of the CSV that holds the label")
        import pandas as pd

        try:
            frame = pd.read_csv(args.data)
        except (OSError, ValueError) as err:
            raise CliError(f"{args.data}: not a readable CSV file: {err}") from err
        if args.target not in frame.columns:
            raise CliError(f"{args.data}: no column {args.target!r} (columns: {', '.join(map(str, frame.columns))})")
        names = getattr(estimator, "feature_names_in_", None)
        features = [str(n) for n in names] if names is not None else [c for c in frame.columns if c != args.target]
        missing = [n for n in features if n not in frame.columns]
        if missing:
            raise CliError(f"{args.data}: the model was fitted on columns the CSV lacks: {', '.join(missing)}")
        x, y = frame[features], frame[args.target]
        source = {**source, "data": Path(args.data).name, "rows": len(frame)}
        progress(f"read {len(frame):,} rows × {len(features)} features from {args.data} (label {args.target!r})")
    try:
        published = publish_user_model(
            target.registry(),
            args.name,
            estimator,
            x,
            y,
            schema=schema,
            target=args.target,
            description=args.description,
            source=source,
            progress=progress,
        )
    except (PublishRefused, ValueError) as err:
        raise CliError(str(err)) from err
    print(published.summary())
    if args.promote:
        target.registry().promote(args.name, published.manifest.version, reason="sklambda publish")
        print(f"promoted {args.name} v{published.manifest.version} to {DEFAULT_ALIAS}")
    return 0


def _report_published(manifest: Any) -> None:
    holdout = manifest.metrics.get("holdout", {})
    scores = ", ".join(f"{k}={v}" for k, v in holdout.items())
    print(f"published {manifest.name} v{manifest.version}" + (f" ({scores})" if scores else ""))


def cmd_models(args: argparse.Namespace) -> int:
    target = resolve_target(args)
    models = target.registry().describe_models()
    if not models:
        print("no models in the registry yet: try `sklambda train-demo`")
        return 0
    rows = []
    for m in models:
        aliases = (
            ", ".join(
                f"{a}→v{r['version']}" + (f" (canary v{r['canary']['version']})" if r["canary"] else "")
                for a, r in m["aliases"].items()
            )
            or "-"
        )
        rows.append([m["name"], aliases])
    print(_table(rows, ["model", "aliases"]))
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    registry = resolve_target(args).registry()
    live = registry.get_alias(args.name, args.alias)
    manifests = registry.list_versions(args.name)
    if not manifests:
        raise CliError(f"model {args.name!r} has no versions")
    rows = []
    for m in manifests:
        metric = m.metrics.get("holdout", {})
        score = next((f"{k}={metric[k]}" for k in ("roc_auc", "accuracy", "r2", "rmse") if k in metric), "-")
        marker = "← " + args.alias if live and live.record.version == m.version else ""
        rows.append([f"v{m.version}", m.created_at, m.task, score, marker])
    print(_table(rows, ["version", "created", "task", "holdout", ""]))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    record = resolve_target(args).registry().promote(args.name, args.version.lstrip("v"), args.alias, args.reason)
    print(f"{args.name} {args.alias} → v{record.version} (previous v{record.previous})")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    record = resolve_target(args).registry().rollback(args.name, args.alias, args.reason)
    print(f"{args.name} {args.alias} rolled back → v{record.version}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    target = resolve_target(args)
    registry = target.registry()
    names = [args.name] if args.name else registry.list_models()
    print(f"target: {target.description} (bucket {target.bucket})")
    for name in names:
        found = registry.get_alias(name, args.alias)
        if found is None:
            print(f"{name}: no {args.alias} alias")
            continue
        manifest = registry.get_manifest(name, found.record.version)
        print(
            f"{name}: {args.alias} → v{manifest.version} (created {manifest.created_at}, {manifest.task}, "
            f"{len(manifest.features)} features, scikit-learn {manifest.libraries.get('scikit-learn')})"
        )
        if found.record.history:
            last = found.record.history[-1]
            print(
                f"  last move: {last.action} v{last.version} at {last.at}"
                + (f" ({last.reason})" if last.reason else "")
            )
    if target.api_url:
        try:
            status, body = target.get("/ready", timeout=15)
            print(f"API {target.api_url}: /ready → {status} {json.dumps(body)}")
        except Exception as err:
            print(f"API {target.api_url}: unreachable ({err})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from sklambda.lifecycle.export import export_version

    bundle = export_version(
        resolve_target(args).registry(),
        args.name,
        args.directory,
        version=args.version,
        alias=args.alias,
        data_rows=not args.no_training_rows,
        force=args.force,
        progress=Progress(),
    )
    print(bundle.summary())
    return 0


def _scheduled_event() -> dict[str, Any]:
    import uuid
    from datetime import UTC, datetime

    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [],
        "detail": {"trigger": "sklambda drift run"},
    }


def cmd_drift_run(args: argparse.Namespace) -> int:
    target = resolve_target(args)
    progress = Progress()
    progress(f"running the drift job on {target.description}")
    summary = target.invoke("DriftFunction", _scheduled_event())
    progress(
        f"read {summary['objects_read']} capture objects, {summary['rows_counted']:,} rows in {summary['seconds']}s"
    )
    bad = sum(summary.get("bad_lines", {}).values()) + sum(summary.get("skipped_rows", {}).values())
    if bad:
        print(f"skipped {bad} bad capture records: {summary['bad_lines'] | summary['skipped_rows']}")
    if not summary["models"]:
        print("no new captured rows since the last run")
        return 0
    rows = [
        [
            m["model"],
            f"v{m['version']}",
            f"{m['rows']:,}",
            m["status"],
            m["verdict"] or "-",
            "-" if m["drift_score"] is None else f"{m['drift_score']:.2f}",
            ", ".join(m["drifted"]) or "-",
        ]
        for m in summary["models"]
    ]
    print(_table(rows, ["model", "version", "rows", "status", "verdict", "drift score", "drifted features"]))
    for m in summary["models"]:
        if m["status"] != "evaluated" or not target.capture_bucket:
            continue
        from sklambda.monitoring.store import CaptureStore

        found = CaptureStore(target.s3(), target.capture_bucket).latest_report(m["model"])
        if found is None:
            continue
        report = json.loads(found[1])
        features = report.get("result", report).get("features", [])
        print(f"\n{m['model']} v{m['version']}:")
        print(
            _table(
                [
                    [
                        f["name"],
                        f["type"],
                        f["verdict"],
                        _fmt(f.get("psi")),
                        f"{f.get('distance_name', '')} {_fmt(f.get('distance'))}",
                        _fmt(f.get("p_value")),
                    ]
                    for f in features
                ],
                ["feature", "type", "verdict", "PSI", "distance", "p-value"],
            )
        )
    pending = [m for m in summary["models"] if m["status"] == "pending"]
    for m in pending:
        print(f"{m['model']} v{m['version']}: {m['rows']:,} rows so far, waiting for the minimum sample")
    return 0


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3g}"


def cmd_drift_report(args: argparse.Namespace) -> int:
    from sklambda.monitoring.store import CaptureStore

    target = resolve_target(args)
    if not target.capture_bucket:
        raise CliError("this stack has no capture bucket")
    found = CaptureStore(target.s3(), target.capture_bucket).latest_report(args.model, "html")
    if found is None:
        raise CliError(f"no drift report for {args.model!r} yet: run `sklambda drift run` after some traffic")
    pointer, html = found
    out = Path(args.out) if args.out else ROOT / ".sklambda" / "reports" / f"{args.model}-{pointer['run_id']}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(html)
    print(
        f"{args.model} v{pointer['version']}: {pointer['verdict']} (drift score {pointer['drift_score']:.2f}), "
        f"run {pointer['run_id']}"
    )
    print(f"report written to {out}")
    if args.open:
        import webbrowser

        webbrowser.open(out.resolve().as_uri())
    return 0


def cmd_traffic(args: argparse.Namespace) -> int:
    """Send realistic requests with a drift knob, at a steady rate, and report what came back."""
    import statistics
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from sklambda.lifecycle import demo

    target = resolve_target(args)
    if not target.api_url:
        raise CliError("this target has no API URL")
    total = args.requests
    seed = args.seed if args.seed is not None else int(time.time())
    columns, truth = demo.generate(total * args.batch, seed=seed, drift=args.drift)
    rows = demo.to_instances(columns)
    url = f"{target.api_url.rstrip('/')}/models/{args.model}/predict"
    session = requests.Session()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    versions: dict[str, int] = {}
    lock = threading.Lock()
    progress = Progress()

    def send(i: int) -> None:
        body = json.dumps({"instances": rows[i * args.batch : (i + 1) * args.batch]}).encode()
        headers = {"content-type": "application/json"}
        if target.deployed:
            headers.update(_sigv4_headers("POST", url, body))
        started = time.perf_counter()
        try:
            response = session.post(url, data=body, headers=headers, timeout=60)
            status = response.status_code
            version = response.json().get("model", {}).get("version") if status == 200 else None
            if status == 200 and args.labels:
                ids = response.json()["prediction_ids"]
                labels = json.dumps(
                    {
                        "feedback": [
                            {"prediction_id": pid, "label": int(truth[i * args.batch + j])} for j, pid in enumerate(ids)
                        ]
                    }
                ).encode()
                feedback_url = f"{str(target.api_url).rstrip('/')}/feedback"
                feedback_headers = {"content-type": "application/json"}
                if target.deployed:
                    feedback_headers.update(_sigv4_headers("POST", feedback_url, labels))
                labelled = session.post(feedback_url, data=labels, headers=feedback_headers, timeout=60)
                if labelled.status_code != 202:
                    status = labelled.status_code
        except requests.RequestException:
            status, version = 0, None
        with lock:
            latencies.append((time.perf_counter() - started) * 1000)
            if len(latencies) % max(1, total // 5) == 0:
                progress(f"{len(latencies):,}/{total:,} answered")
            statuses[status] = statuses.get(status, 0) + 1
            if version:
                versions[version] = versions.get(version, 0) + 1

    progress(
        f"sending {total:,} requests of {args.batch} row(s) to {url} (drift={args.drift}, "
        f"{args.rate:g} req/s, {args.concurrency} at a time)"
    )
    interval = 1.0 / args.rate if args.rate > 0 else 0.0
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        start = time.perf_counter()
        for i in range(total):
            if interval:
                delay = start + i * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            pool.submit(send, i)
    ok = statuses.get(200, 0)
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    print(
        f"{total:,} requests, {ok:,} answered 200, statuses {dict(sorted(statuses.items()))}, "
        f"versions {versions}; latency p50 {quantiles[49]:.1f} ms, p99 {quantiles[98]:.1f} ms"
    )
    return 0 if ok == total else 1


def _retrain_arn(target: Target) -> str:
    arn = (target.state_machines or {}).get("RetrainStateMachine")
    if not arn:
        raise CliError("this stack has no RetrainStateMachine")
    return arn


def cmd_retrain(args: argparse.Namespace) -> int:
    import uuid

    target = resolve_target(args)
    sfn = target.client("stepfunctions")
    payload = {"model": args.model, "source": "sklambda retrain", "reason": args.reason or "started by hand"}
    name = f"manual-{args.model}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    execution = sfn.start_execution(stateMachineArn=_retrain_arn(target), name=name, input=json.dumps(payload))
    print(f"started retrain {name}")
    if not args.wait:
        return 0
    progress = Progress()
    seen: set[str] = set()
    while True:
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        for event in sfn.get_execution_history(executionArn=execution["executionArn"])["events"]:
            entered = event.get("stateEnteredEventDetails")
            if entered and entered["name"] not in seen:
                seen.add(entered["name"])
                progress(f"step {entered['name']}")
        if described["status"] != "RUNNING":
            break
        time.sleep(1)
    print(f"{described['status']}")
    output = json.loads(described.get("output") or "{}")
    outcome = output.get("outcome") or {}
    published = output.get("published") or {}
    evaluation = output.get("evaluation") or {}
    if evaluation:
        print(
            f"holdout {evaluation.get('metric')}: candidate {evaluation.get('candidate_score'):.4f}, "
            f"production {evaluation.get('production_score'):.4f} (required ≥ {evaluation.get('required_score'):.4f},"
            f" floor {evaluation.get('floor')})"
        )
    if published:
        print(
            f"published v{published.get('version')} ({published.get('status')})"
            + (f": {published['reason']}" if published.get("reason") else "")
        )
    if outcome:
        print(
            f"canary: {outcome.get('outcome')}; serving v{outcome.get('serving')}"
            + (f" ({'; '.join(outcome['problems'])})" if outcome.get("problems") else "")
        )
    if output.get("guard") and not output["guard"].get("proceed"):
        print(output["guard"]["reason"])
    return 0 if described["status"] == "SUCCEEDED" else 1


def cmd_batch(args: argparse.Namespace) -> int:
    """Score a file (or an S3 prefix) with the batch state machine; follow it; print the manifest's account."""
    import uuid

    from sklambda.lifecycle.batch.jobs import BatchJobs
    from sklambda.lifecycle.batch.layout import output_location

    target = resolve_target(args)
    arn = (target.state_machines or {}).get("BatchStateMachine")
    if target.deployed:
        import boto3

        stack = boto3.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"][0]
        bucket = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}.get("BatchBucketName")
    else:
        bucket = json.loads(STATE_FILE.read_text())["buckets"].get("BatchBucket")
    if not arn or not bucket:
        raise CliError("this stack has no BatchStateMachine / BatchBucket: deploy (or serve) the current template")
    jobs = BatchJobs(target.s3(), target.client("stepfunctions"), bucket, arn)
    job = args.job or f"{args.model}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    local_output = Path(args.output) if args.output and not args.output.startswith("s3://") else None
    if args.input.startswith("s3://"):
        uri = args.input
    else:
        path = Path(args.input)
        if not path.is_file():
            raise CliError(f"{path} is not a file (pass a local CSV / JSON-lines file or an s3:// URI)")
        uri = jobs.upload(path, job)
        print(f"uploaded {path} ({path.stat().st_size:,} bytes) to {uri}")
    request: dict[str, Any] = {"input": uri, "model": args.model, "job": job}
    s3_output = args.output if args.output and local_output is None else None
    options = {
        "version": args.version,
        "output": s3_output,
        "id_column": args.id_column,
        "input_format": args.input_format,
        "output_format": args.output_format,
        "part_rows": args.part_rows,
        "max_concurrency": args.max_concurrency,
    }
    request.update({k: v for k, v in options.items() if v is not None})
    prefix = output_location(s3_output, bucket, job).key
    execution = jobs.start(request, name=f"{job[:64]}-{uuid.uuid4().hex[:8]}")
    print(f"started batch job {job}: output s3://{bucket}/{prefix}")
    if not args.wait and local_output is None:
        print(f"follow it with `sklambda batch ... --job {job} --wait` (reruns finish it without rescoring)")
        return 0
    progress = Progress()

    def report(state: Any) -> None:
        if state.planned:
            done = f"{state.parts_done}/{state.parts} parts, {state.rows_done:,}/{state.rows:,} rows"
            progress(f"{done} ({state.status})")
        else:
            progress(f"planning ({state.status})")

    described = jobs.wait(execution, prefix, on_progress=report)
    manifest = jobs.manifest(prefix) if described["status"] == "SUCCEEDED" else None
    if manifest is None:
        print(f"{described['status']}: {jobs.failure(described)}")
        if jobs.plan(prefix) is not None:
            print(f"rerun with --job {job} (same input and output) to score only the parts not written yet")
        return 1
    rows, parts = manifest.rows, manifest.parts
    print(
        f"rows in {rows.input:,} = scored {rows.scored:,} + rejected {rows.rejected:,}"
        + (f" ({rows.blank_lines:,} blank lines skipped)" if rows.blank_lines else "")
    )
    pinned = "as asked" if manifest.pinned == "requested" else "the alias's, pinned at the start"
    print(
        f"{manifest.model} v{manifest.version} ({pinned}); "
        f"{parts.total} part(s): {parts.written_this_run} written now, {parts.already_written} already written, "
        f"{parts.retried} retried; {manifest.duration_seconds:.1f} s"
    )
    print(f"manifest {manifest.output}manifest.json")
    if local_output is not None:
        for written in jobs.download(manifest, local_output):
            print(f"wrote {written}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    target = resolve_target(args)
    print(f"target: {target.description}")
    alarms = target.client("cloudwatch").describe_alarms()["MetricAlarms"]
    if alarms:
        print("\nalarms")
        print(
            _table(
                [[a["AlarmName"], a["StateValue"], (a.get("StateReason") or "")[:70]] for a in alarms],
                ["alarm", "state", "reason"],
            )
        )
    arn = (target.state_machines or {}).get("RetrainStateMachine")
    if arn:
        executions = target.client("stepfunctions").list_executions(stateMachineArn=arn, maxResults=10)["executions"]
        print("\nretrain executions")
        if executions:
            print(
                _table(
                    [
                        [e["name"], e["status"], str(e["startDate"])[:19], str(e.get("stopDate") or "")[:19]]
                        for e in executions
                    ],
                    ["execution", "status", "started", "stopped"],
                )
            )
        else:
            print("none yet")
    registry = target.registry()
    for name in registry.list_models():
        found = registry.get_alias(name, DEFAULT_ALIAS)
        live = found.record.version if found else None
        canary = found.record.canary if found else None
        print(
            f"\n{name}: {DEFAULT_ALIAS} → v{live}"
            + (f", canary v{canary.version} at {canary.weight:.0%}" if canary else "")
        )
        rows = [
            [
                f"v{m.version}",
                m.created_at[:19],
                m.status,
                m.parent_version or "-",
                next(
                    (f"{k}={m.metrics['holdout'][k]}" for k in ("accuracy", "r2") if k in m.metrics.get("holdout", {})),
                    "-",
                ),
                (m.status_reason or m.description or "")[:60],
            ]
            for m in registry.list_versions(name)[-8:]
        ]
        print(_table(rows, ["version", "created", "status", "parent", "holdout", "note"]))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from sklambda.registry.store import ModelRegistry
    from sklambda_dev.local.persist import SKLAMBDA_PERSISTED
    from sklambda_dev.local.signals import StopRequest
    from sklambda_dev.local.stack import EmbeddedStack

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log
    bad = [p for p in args.param if "=" not in p]
    if bad:
        raise CliError(f"--param takes KEY=VALUE, got {bad[0]!r}")
    # A local canary does not need ten minutes to show what it does; --param overrides this.
    overrides = {"CanaryWaitSeconds": "20", **dict(p.split("=", 1) for p in args.param)}
    progress = Progress()
    progress("starting the embedded AWS emulator and provisioning template.yaml")
    request = StopRequest()  # Ctrl-C / SIGTERM only set a flag (sklambda_dev/local/signals.py)
    with (
        request.catching(),
        EmbeddedStack(
            TEMPLATE,
            host=args.host,
            port=args.port,
            parameter_overrides=overrides,
            state_file=STATE_FILE,
            schedule_interval=args.schedule_interval or None,
            alarm_interval=args.alarm_interval or None,
            state_dir=args.state_dir,
            persist=SKLAMBDA_PERSISTED,
            fresh=args.fresh,
        ) as stack,
    ):
        kept = sum(stack.restored.values())
        progress(f"{'started empty' if args.fresh else f'restored {kept} object(s)'}; state kept in {args.state_dir}")
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=stack.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        registry = ModelRegistry(s3, stack.bucket("ModelBucket"))
        env = stack.function_env("PredictFunction")
        model = env.get("DEFAULT_MODEL", "demo")
        alias = env.get("MODEL_ALIAS", DEFAULT_ALIAS)
        current = registry.get_alias(model, alias)
        if current is None and not args.no_demo:
            progress(f"no {model!r} model yet: training the demo model")
            manifest = train_demo_model(
                registry, model, rows=args.rows, drift=0.0, seed=0, trees=args.trees, progress=progress
            )
            registry.promote(model, manifest.version, alias, reason="sklambda serve: demo model")
            current = registry.get_alias(model, alias)
            stack.flush_state()  # kept before the banner says it is served
        served = f"{model} v{current.record.version}" if current else f"{model} (not published yet)"
        print(
            "\n".join(
                [
                    "",
                    f"  sklambda is serving {served}",
                    f"  API         {stack.api_url}",
                    f"  Swagger UI  {stack.api_url}/docs",
                    f"  OpenAPI     {stack.api_url}/openapi.json",
                    f"  AWS (moto)  {stack.endpoint_url}   bucket {registry.bucket}",
                    "",
                    f"  curl -s {stack.api_url}/predict -H 'content-type: application/json' \\",
                    "       -d @events/sample_request.json",
                    "",
                    "  Ctrl-C stops it.",
                    "",
                ]
            ),
            flush=True,
        )
        request.wait()
        progress("stopping")
    return 0


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sklambda", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def targeted(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--stack", help="act on this deployed CloudFormation stack instead of the local stack")
        p.add_argument("--bucket", help="override the registry bucket")
        return p

    p = sub.add_parser("serve", help="run the API locally on the embedded AWS emulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", 3000)))
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="template parameter override (repeatable), e.g. AliasCheckSeconds=5",
    )
    p.add_argument("--no-demo", action="store_true", help="do not train the demo model when none is published")
    p.add_argument(
        "--state-dir",
        type=Path,
        default=STATE_DIR,
        help="keep published versions, aliases and captures here between runs (default: %(default)s)",
    )
    p.add_argument("--fresh", action="store_true", help="start with empty buckets: forget what --state-dir kept")
    p.add_argument("--quiet", action="store_true", help="hide function logs and access lines")
    p.add_argument(
        "--schedule-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="run the template's schedules (the drift job) this often locally; 0 = only on demand",
    )
    p.add_argument(
        "--alarm-interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="evaluate the template's alarms this often (a DriftAlarm in ALARM starts a retrain); 0 = off",
    )
    p.add_argument("--rows", type=int, default=20_000, help="demo training rows")
    p.add_argument("--trees", type=int, default=100, help="demo forest size")
    p.set_defaults(func=cmd_serve)

    p = targeted("train-demo", "train the synthetic churn model and publish it as a new version")
    p.add_argument("--name", default="demo")
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--drift", type=float, default=0.0, help="0 = reference population, 1 = strongly shifted")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trees", type=int, default=100)
    p.add_argument("--promote", action="store_true", help="also move the production alias to it")
    p.set_defaults(func=cmd_train_demo)

    p = targeted("train", "train a model from a CSV (header row; one target column) and publish it")
    p.add_argument("--csv", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--task", choices=["classification", "regression"])
    p.add_argument("--trees", type=int, default=100)
    p.add_argument("--promote", action="store_true")
    p.set_defaults(func=cmd_train)

    p = targeted("publish", "publish a fitted scikit-learn model file (joblib) as a new version")
    p.add_argument("model_file")
    p.add_argument("--name", required=True)
    p.add_argument("--schema", help="JSON feature schema: a list of {name, type[, categories, nullable]}")
    p.add_argument("--data", help="CSV (header row) of the training data: schema, drift baseline, retrain set, holdout")
    p.add_argument("--target", help="the label column of --data (without --data: the predicted column's name)")
    p.add_argument("--description")
    p.add_argument("--promote", action="store_true")
    p.set_defaults(func=cmd_publish)

    p = targeted("models", "list models and their aliases")
    p.set_defaults(func=cmd_models)

    for name, func, help_text in [
        ("versions", cmd_versions, "list a model's versions in publish order"),
        ("rollback", cmd_rollback, "move the alias back to the version live before the current one"),
    ]:
        p = targeted(name, help_text)
        p.add_argument("name")
        p.add_argument("--alias", default=DEFAULT_ALIAS)
        if name == "rollback":
            p.add_argument("--reason")
        p.set_defaults(func=func)

    p = targeted("promote", "point the alias at a version (atomic, recorded in the alias history)")
    p.add_argument("name")
    p.add_argument("version")
    p.add_argument("--alias", default=DEFAULT_ALIAS)
    p.add_argument("--reason")
    p.set_defaults(func=cmd_promote)

    drift = sub.add_parser("drift", help="run the drift job now, or fetch its latest report")
    drift_sub = drift.add_subparsers(dest="drift_command", required=True)
    p = drift_sub.add_parser("run", help="run the drift job now and print the verdicts")
    p.add_argument("--stack")
    p.add_argument("--bucket")
    p.set_defaults(func=cmd_drift_run)
    p = drift_sub.add_parser("report", help="write (and optionally open) the latest HTML drift report")
    p.add_argument("--stack")
    p.add_argument("--bucket")
    p.add_argument("--model", default="demo")
    p.add_argument("--out", help="where to write the HTML (default .sklambda/reports/)")
    p.add_argument("--open", action="store_true", help="open it in a browser")
    p.set_defaults(func=cmd_drift_report)

    p = targeted("traffic", "send realistic prediction requests to the API, with a drift knob")
    p.add_argument("--model", default="demo")
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--batch", type=int, default=1, help="rows per request")
    p.add_argument("--rate", type=float, default=50.0, help="requests per second (0 = as fast as possible)")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--drift", type=float, default=0.0, help="0 = reference population, 1 = strongly shifted")
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--labels",
        action="store_true",
        help="also post the true labels to /feedback (the ground truth a retrain learns from)",
    )
    p.set_defaults(func=cmd_traffic)

    p = targeted("retrain", "start the retrain pipeline now (as the drift alarm would)")
    p.add_argument("--model", default="demo")
    p.add_argument("--reason")
    p.add_argument("--wait", action="store_true", help="follow the execution until it ends")
    p.set_defaults(func=cmd_retrain)

    p = targeted("batch", "score a CSV / JSON-lines file (local, uploaded for you) or an S3 URI or prefix, S3 to S3")
    p.add_argument("input", help="a local file, or s3://<batch bucket>/input/... (a file or a prefix of files)")
    p.add_argument("--model", required=True)
    p.add_argument("--version", help="score with this version (default: the production alias's, pinned at the start)")
    p.add_argument("--output", help="a local directory (downloaded when done) or s3://<batch bucket>/output/... prefix")
    p.add_argument("--job", help="the job's name; the same name resumes a job, scoring only the parts not written")
    p.add_argument("--id-column", help="a column (or JSON key) copied to the outputs beside each prediction")
    p.add_argument("--input-format", choices=["csv", "jsonl"], help="default: from the file extension")
    p.add_argument("--output-format", choices=["csv", "jsonl"], help="default: the input's")
    p.add_argument("--part-rows", type=int, help="rows per part (default: the stack's BatchPartRows)")
    p.add_argument("--max-concurrency", type=int, help="parts scored at once (at most the stack's BatchMaxConcurrency)")
    p.add_argument("--wait", action="store_true", help="follow the job and print the manifest's counts")
    p.set_defaults(func=cmd_batch)

    p = targeted("status", "alarms, retrain executions and model versions at a glance")
    p.set_defaults(func=cmd_status)

    p = targeted("show", "show what is served: aliases, versions and the API's readiness")
    p.add_argument("name", nargs="?")
    p.add_argument("--alias", default=DEFAULT_ALIAS)
    p.set_defaults(func=cmd_show)

    p = targeted("export", "write a numpy-only bundle of a lean-served version: artifact, schema, runtime, certificate")
    p.add_argument("name")
    p.add_argument("directory")
    p.add_argument("--version", help="the version to export (default: the one --alias points to)")
    p.add_argument("--alias", default=DEFAULT_ALIAS)
    p.add_argument(
        "--no-training-rows",
        action="store_true",
        help="start the golden rows from a row made from the schema: no stored training row goes into the bundle",
    )
    p.add_argument("--force", action="store_true", help="overwrite a bundle already in the directory")
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    from sklambda.core.errors import SklambdaError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as err:
        print(f"sklambda: {err}", file=sys.stderr)
        return 1
    except SklambdaError as err:
        print(f"sklambda: {err.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
