"""The user's path: `sklambda serve` in a terminal, then the CLI against it, then Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import joblib
import pytest
import requests

from tests.support.helpers import ROOT, trained_demo
from tests.support.wait import process_alive, wait_for

CLI = [sys.executable, "-m", "sklambda_dev.cli"]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[dict]:
    state = tmp_path_factory.mktemp("cli") / "local.json"
    env = {**os.environ, "SKLAMBDA_STATE_FILE": str(state), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            *CLI,
            "serve",
            "--port",
            "0",
            "--rows",
            "3000",
            "--trees",
            "10",
            "--param",
            "AliasCheckSeconds=1",
            "--schedule-interval",
            "0",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    api = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"API\s+(http://127\.0\.0\.1:\d+)", line)
        if found:
            api = found.group(1)
        if "Ctrl-C stops it" in line:
            break
    assert api, "serve did not print its API URL:\n" + "".join(lines)
    # keep reading its output so a full pipe never blocks the server
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    info = {"proc": proc, "api": api, "env": env, "banner": "".join(lines)}
    yield info
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)


def run(served: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*CLI, *args], cwd=ROOT, env=served["env"], capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_serve_trains_the_demo_model_and_prints_where_it_is(served):
    banner = served["banner"]
    assert "sklambda is serving demo v1" in banner
    assert f"Swagger UI  {served['api']}/docs" in banner
    r = requests.post(
        served["api"] + "/predict", json=json.loads((ROOT / "events/sample_request.json").read_text()), timeout=60
    )
    assert r.status_code == 200 and r.json()["model"]["version"] == "1"


def test_cli_lifecycle_train_publish_promote_rollback(served, tmp_path: Path):
    assert "demo" in run(served, "models").stdout

    out = run(served, "train-demo", "--rows", "2000", "--trees", "5", "--drift", "0.5").stdout
    assert "published demo v2" in out

    model_file = tmp_path / "model.joblib"
    joblib.dump(trained_demo().estimator, model_file)
    schema = tmp_path / "schema.json"
    from sklambda.lifecycle import demo

    schema.write_text(demo.DEMO_SCHEMA.model_dump_json())
    assert (
        "published demo v3" in run(served, "publish", str(model_file), "--name", "demo", "--schema", str(schema)).stdout
    )

    csv = tmp_path / "houses.csv"
    csv.write_text(
        "rooms,area,city,price\n"
        + "\n".join(f"{i % 5 + 1},{40 + i},{['oslo', 'bergen'][i % 2]},{100 + 3 * i + 20 * (i % 5)}" for i in range(60))
    )
    out = run(
        served, "train", "--csv", str(csv), "--target", "price", "--name", "houses", "--trees", "5", "--promote"
    ).stdout
    assert "published houses v1" in out and "promoted houses v1" in out

    versions = run(served, "versions", "demo").stdout
    assert re.search(r"v1 .*← production", versions) and "v3" in versions

    assert "production → v3" in run(served, "promote", "demo", "v3", "--reason", "cli test").stdout

    def served_version() -> str:
        return requests.post(
            served["api"] + "/predict",
            json={"instances": [json.loads((ROOT / "events/sample_request.json").read_text())["instances"][0]]},
            timeout=60,
        ).json()["model"]["version"]

    wait_for(lambda: served_version() == "3", timeout=60, interval=0.5, message="demo v3 served after the promotion")

    assert "rolled back → v1" in run(served, "rollback", "demo").stdout
    show = run(served, "show", "demo").stdout
    assert "production → v1" in show and "rollback" in show and "/ready → 200" in show

    houses = requests.post(
        served["api"] + "/models/houses/predict",
        json={"instances": [{"rooms": 3, "area": 70, "city": "oslo"}]},
        timeout=60,
    )
    assert houses.status_code == 200 and isinstance(houses.json()["predictions"][0], float)


def test_traffic_with_labels_then_drift_run_and_report(served, tmp_path: Path):
    out = run(
        served, "traffic", "--requests", "70", "--batch", "10", "--drift", "1.0", "--labels", "--rate", "0"
    ).stdout
    assert "70 requests, 70 answered 200" in out
    run_out = run(served, "drift", "run").stdout
    assert re.search(r"demo\s+v\d+\s+7\d\d\s+evaluated\s+drift", run_out), run_out
    assert "support_calls" in run_out and "PSI" in run_out
    report = tmp_path / "report.html"
    out = run(served, "drift", "report", "--out", str(report)).stdout
    assert "drift score" in out and report.read_text().lower().startswith("<!doctype html>")


def test_cli_errors_are_clear_and_nonzero(served):
    bad = run(served, "promote", "demo", "99", check=False)
    assert bad.returncode == 1 and "has no version '99'" in bad.stderr and "Traceback" not in bad.stderr
    missing = run(served, "train", "--csv", "/nonexistent.csv", "--target", "y", "--name", "x", check=False)
    assert missing.returncode == 1 and "no such file" in missing.stderr


def test_cli_publishes_a_users_pipeline_with_its_training_csv(served, tmp_path: Path):
    """`sklambda publish MODEL_FILE --name NAME --data CSV --target COLUMN --promote`: the schema, baseline and
    training set come from the CSV; string categories are categories; the API answers like the pipeline."""
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "age (years)": rng.integers(18, 80, 400),
            "spend/month": rng.gamma(2.0, 30.0, 400).round(2),
            "plan": rng.choice(["basic", "pro", "team"], 400),
        }
    )
    frame["churned"] = np.where((frame["plan"] == "basic") & (frame["spend/month"] < 50), "yes", "no")
    csv = tmp_path / "customers.csv"
    frame.to_csv(csv, index=False)
    x = pd.read_csv(csv).drop(columns="churned")
    pre = ColumnTransformer(
        [("num", StandardScaler(), ["age (years)", "spend/month"]), ("cat", OneHotEncoder(), ["plan"])]
    )
    pipeline = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=500))]).fit(x, frame["churned"])
    model_file = tmp_path / "customers.joblib"
    joblib.dump(pipeline, model_file)

    publish = ("publish", str(model_file), "--name", "customers")
    out = run(served, *publish, "--data", str(csv), "--target", "churned", "--promote").stdout
    assert "published customers v1" in out and "promoted customers v1" in out
    assert "lean runtime" in out and "lacks" not in out

    meta = requests.get(served["api"] + "/models/customers", timeout=30).json()
    types = {f["name"]: (f["type"], f.get("categories")) for f in meta["features"]}
    assert types["plan"] == ("category", ["basic", "pro", "team"]) and types["spend/month"][0] == "number"
    rows = x.head(5).to_dict("records")
    answer = requests.post(served["api"] + "/models/customers/predict", json={"instances": rows}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == pipeline.predict(x.head(5)).tolist()
    bad = requests.post(
        served["api"] + "/models/customers/predict", json={"instances": [{**rows[0], "plan": "gold"}]}, timeout=60
    )
    assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "instances[0].plan"

    nodata = run(served, *publish).stdout
    assert "published customers v2" in nodata and "lacks no drift baseline" in nodata and "--data" in nodata


def test_ctrl_c_stops_everything_cleanly(served):
    proc = served["proc"]

    def group() -> list[str]:
        return subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()

    # Positive control: the function workers run in sessions of their own (not in the group), so
    # they are found as the server's children while it runs, and must be gone after.
    assert requests.get(served["api"] + "/health", timeout=60).status_code == 200  # a predict worker is up
    workers = [
        int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    ]
    assert workers and all(process_alive(pid) for pid in workers), workers
    assert str(proc.pid) in group()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    wait_for(
        lambda: not [pid for pid in workers if process_alive(pid)], timeout=30, message=f"the workers {workers} to exit"
    )
    leftovers = group()
    assert leftovers == [], f"processes left behind: {leftovers}"
    with pytest.raises(requests.ConnectionError):
        requests.get(served["api"] + "/health", timeout=5)
    state = Path(served["env"]["SKLAMBDA_STATE_FILE"])
    assert not state.exists()
