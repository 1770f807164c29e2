"""Pre-traffic check of a new predict function version (the CodeDeploy hook of `sam deploy`).

Before CodeDeploy shifts any traffic of the ``live`` alias to a new version of the predict function,
``PreTrafficCheck`` invokes that version directly with an HTTP API (payload 2.0) ``POST /predict``
event built from fixed sample rows, and accepts it only if the answer is right:

- the invocation succeeds (no function error) and the answer is HTTP 200 with a JSON body;
- one prediction and one prediction id (distinct, non-empty) per row;
- the model is the default model, at a version the registry's alias (``MODEL_ALIAS``, read from S3)
  routes to: its version, or its model-level canary's version while one runs (a request is routed
  to the canary by its id, so either may answer). The alias is read before and after the invoke, so
  a promotion racing the check is not a failure. This is what catches new code that serves the wrong
  model (stale default, wrong alias, broken alias resolution);
- for a classifier (the served version's manifest says so): one probability row per instance, one
  column per class, each row in [0, 1] and summing to 1; a regressor answers no probabilities.

With no alias at all (a stack where nothing has been promoted yet) there is nothing to score
against: the version passes if it answers a well-formed JSON error (404/503) without crashing.

``report`` sends the verdict to CodeDeploy (``PutLifecycleEventHookExecutionStatus``). Anything
unexpected (S3 unreadable, an invoke error) fails the deployment: the check fails closed.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sklambda.core.errors import SklambdaError
from sklambda.registry.store import ModelRegistry

PROBABILITY_TOLERANCE = 1e-6
_NO_MODEL_STATUSES = {404, 503}


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """The CodeDeploy lifecycle status this result reports."""
        return "Succeeded" if self.ok else "Failed"


def load_sample_rows(directory: str | Path, model: str) -> list[Any]:
    """The fixed rows for ``model``: ``<directory>/<model>.json``, a predict request body."""
    path = Path(directory) / f"{model}.json"
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no sample rows for model {model!r}: add {path.name} to the hook") from None
    instances = body.get("instances") if isinstance(body, dict) else None
    if not isinstance(instances, list) or not instances:
        raise ValueError(f"{path.name}: expected {{'instances': [...]}} with at least one row")
    return instances


def predict_event(instances: list[Any], *, path: str = "/predict", request_id: str | None = None) -> dict[str, Any]:
    """An HTTP API payload 2.0 ``POST <path>`` event, as API Gateway would send it."""
    now = time.time()
    request_id = request_id or f"pretraffic-{uuid.uuid4()}"
    user_agent = "sklambda-pretraffic-hook"
    return {
        "version": "2.0",
        "routeKey": f"POST {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "user-agent": user_agent},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "pretraffic",
            "domainName": "pretraffic.local",
            "domainPrefix": "pretraffic",
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": user_agent,
            },
            "requestId": request_id,
            "routeKey": f"POST {path}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": json.dumps({"instances": instances}),
        "isBase64Encoded": False,
    }


def served_versions(registry: ModelRegistry, model: str, alias: str) -> set[str] | None:
    """Versions the alias routes requests to (its version and its canary's); None: no alias."""
    found = registry.get_alias(model, alias)
    if found is None:
        return None
    record = found.record
    return {record.version} | ({record.canary.version} if record.canary else set())


def answer_problems(
    body: Any, rows: int, *, model: str, versions: set[str], task: str | None, classes: list[Any] | None
) -> list[str]:
    """What is wrong with a 200 predict answer to ``rows`` rows (empty: nothing)."""
    if not isinstance(body, dict):
        return [f"body is {type(body).__name__}, not an object"]
    problems = []
    ref = body.get("model") or {}
    if ref.get("name") != model:
        problems.append(f"model.name is {ref.get('name')!r}, expected {model!r}")
    if ref.get("version") not in versions:
        problems.append(f"model.version is {ref.get('version')!r}, the registry routes to {sorted(versions)}")
    predictions = body.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != rows:
        problems.append(f"{_count(predictions)} predictions for {rows} rows")
    elif any(p is None for p in predictions):
        problems.append("a prediction is null")
    ids = body.get("prediction_ids")
    if not isinstance(ids, list) or len(ids) != rows:
        problems.append(f"{_count(ids)} prediction ids for {rows} rows")
    elif not all(isinstance(i, str) and i for i in ids) or len(set(ids)) != rows:
        problems.append("prediction ids are not distinct non-empty strings")
    probabilities = body.get("probabilities")
    if task == "classification":
        problems.extend(_probability_problems(probabilities, rows, classes if classes else body.get("classes")))
    elif task == "regression" and probabilities is not None:
        problems.append("a regressor answered probabilities")
    return problems


def _probability_problems(probabilities: Any, rows: int, classes: Any) -> list[str]:
    if not isinstance(probabilities, list) or len(probabilities) != rows:
        return [f"{_count(probabilities)} probability rows for {rows} rows"]
    width = len(classes) if isinstance(classes, list) and classes else None
    for i, row in enumerate(probabilities):
        if not isinstance(row, list) or not row or not all(_is_number(p) for p in row):
            return [f"probabilities[{i}] is not a list of numbers"]
        if width is not None and len(row) != width:
            return [f"probabilities[{i}] has {len(row)} columns for {width} classes"]
        if any(p < -PROBABILITY_TOLERANCE or p > 1 + PROBABILITY_TOLERANCE for p in row):
            return [f"probabilities[{i}] has a value outside [0, 1]"]
        if abs(sum(row) - 1) > PROBABILITY_TOLERANCE * len(row) + 1e-9:
            return [f"probabilities[{i}] sums to {sum(row):.9f}, not 1"]
    return []


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any) -> str:
    return str(len(value)) if isinstance(value, list) else "no"


class PreTrafficCheck:
    """Invoke ``target`` (a version ARN) with the sample rows and judge the answer."""

    def __init__(
        self,
        lambda_client: Any,
        registry: ModelRegistry,
        *,
        target: str,
        model: str,
        alias: str,
        instances: list[Any],
        path: str = "/predict",
    ) -> None:
        self.lambda_client = lambda_client
        self.registry = registry
        self.target = target
        self.model = model
        self.alias = alias
        self.instances = instances
        self.path = path

    def run(self) -> CheckResult:
        try:
            return self._run()
        except Exception as err:
            return CheckResult(False, f"check could not complete: {type(err).__name__}: {str(err)[:300]}")

    def _run(self) -> CheckResult:
        details: dict[str, Any] = {"target": self.target, "model": self.model, "rows": len(self.instances)}
        try:
            before = served_versions(self.registry, self.model, self.alias)
        except SklambdaError as err:
            return CheckResult(False, f"registry unreadable: {err.message}", details)
        started = time.perf_counter()
        event = predict_event(self.instances, path=self.path)
        response = self.lambda_client.invoke(
            FunctionName=self.target, InvocationType="RequestResponse", Payload=json.dumps(event).encode()
        )
        details["invoke_ms"] = round((time.perf_counter() - started) * 1000, 1)
        raw = response["Payload"].read()
        if response.get("FunctionError"):
            return CheckResult(False, f"the function raised ({response['FunctionError']}): {raw[:300]!r}", details)
        try:
            answer = json.loads(raw)
            status = int(answer["statusCode"])
            body = json.loads(answer.get("body") or "null")
        except (ValueError, TypeError, KeyError) as err:
            return CheckResult(False, f"not an HTTP API answer: {err}: {raw[:300]!r}", details)
        details["status"] = status
        try:
            after = served_versions(self.registry, self.model, self.alias)
        except SklambdaError as err:
            return CheckResult(False, f"registry unreadable: {err.message}", details)
        if before is None and after is None:
            if status in _NO_MODEL_STATUSES and isinstance(body, dict) and body.get("error"):
                return CheckResult(
                    True, f"no {self.alias!r} alias for {self.model}: the code answers {status}", details
                )
            return CheckResult(
                False, f"no {self.alias!r} alias for {self.model}, yet HTTP {status}: {body!r:.300}", details
            )
        versions = (before or set()) | (after or set())
        details["expected_versions"] = sorted(versions)
        if status != 200:
            return CheckResult(False, f"HTTP {status}: {json.dumps(body)[:300]}", details)
        version = (body.get("model") or {}).get("version") if isinstance(body, dict) else None
        details["served_version"] = version
        task = classes = None
        if version in versions:
            try:
                manifest = self.registry.get_manifest(self.model, str(version))
            except SklambdaError as err:
                return CheckResult(False, f"manifest of {self.model} v{version} unreadable: {err.message}", details)
            task, classes = manifest.task, manifest.classes
        problems = answer_problems(
            body, len(self.instances), model=self.model, versions=versions, task=task, classes=classes
        )
        if problems:
            return CheckResult(False, "wrong answer: " + "; ".join(problems), details)
        return CheckResult(True, f"{len(self.instances)} rows scored correctly by {self.model} v{version}", details)


def report(codedeploy: Any, event: dict[str, Any], result: CheckResult) -> None:
    """Tell CodeDeploy the verdict for the lifecycle hook execution named in ``event``."""
    codedeploy.put_lifecycle_event_hook_execution_status(
        deploymentId=event["DeploymentId"],
        lifecycleEventHookExecutionId=event["LifecycleEventHookExecutionId"],
        status=result.status,
    )
