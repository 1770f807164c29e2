"""The Open Inference Protocol routes driven by a stock Triton client, ``tritonclient[http]``, over real
HTTP against the local stack from template.yaml (gateway → predict worker → moto).

tritonclient lives in its own venv (``.venv-triton``, ``requirements/tritonclient.lock``; it brings gevent
and its own numpy pin), so each scenario runs as a small client script in that interpreter
(``TRITON_PYTHON``); the answers come back as JSON and are checked here against the JSON API's answer
for the same rows (``requests``), and against the user's own scikit-learn pipeline for a bring-your-own
model with string categories and string classes.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from sklambda.lifecycle import demo
from tests.support.helpers import ROOT, demo_rows

CLIENT = r'''
"""Runs one scenario with tritonclient.http and prints its outcome as JSON."""
import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

url, scenario, payload = sys.argv[1], sys.argv[2], json.loads(open(sys.argv[3]).read())
client = httpclient.InferenceServerClient(url=url, network_timeout=120.0, connection_timeout=60.0)
DTYPES = {
    "FP64": np.float64, "FP32": np.float32, "INT64": np.int64, "INT32": np.int32, "BOOL": np.bool_, "BYTES": np.object_
}


def tensors(spec, *, binary=True):
    """[{name, datatype, values, shape?}] -> InferInputs with numpy data."""
    out = []
    for t in spec:
        array = np.array(t["values"], dtype=DTYPES[t["datatype"]])
        if "shape" in t:
            array = array.reshape(t["shape"])
        tensor = httpclient.InferInput(t["name"], list(array.shape), t["datatype"])
        tensor.set_data_from_numpy(array, binary_data=binary)
        out.append(tensor)
    return out


def plain(result, names):
    got = {}
    for name in names:
        array = result.as_numpy(name)
        if array is None:
            got[name] = None
        elif array.dtype == np.object_:
            values = [v.decode() if isinstance(v, bytes) else v for v in array.ravel().tolist()]
            got[name] = {"shape": list(array.shape), "values": values}
        else:
            got[name] = {"shape": list(array.shape), "values": array.ravel().tolist(), "dtype": str(array.dtype)}
    return got


def infer(model, spec, *, binary=True, outputs=None, version="", request_id=""):
    requested = None
    if outputs is not None:
        requested = [httpclient.InferRequestedOutput(o["name"], binary_data=o.get("binary", True)) for o in outputs]
    result = client.infer(
        model, tensors(spec, binary=binary), model_version=version, outputs=requested, request_id=request_id
    )
    response = result.get_response()
    return {
        "outputs": plain(result, ["predict", "predict_proba", "prediction_ids"]),
        "response": {k: v for k, v in response.items() if k != "outputs"},
        "listed": [{k: v for k, v in o.items() if k != "data"} for o in response["outputs"]],
    }


def refused(call):
    try:
        call()
    except InferenceServerException as err:
        return {"status": err.status(), "message": err.message()}
    return {"status": None, "message": "accepted"}


if scenario == "health":
    print(json.dumps({
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(payload["model"]),
        "version_ready": client.is_model_ready(payload["model"], "1"),
        "unserved_version_ready": client.is_model_ready(payload["model"], "99"),
        "ghost_ready": client.is_model_ready("ghost"),
        "server": client.get_server_metadata(),
        "model": client.get_model_metadata(payload["model"]),
        "version": client.get_model_metadata(payload["model"], "1"),
    }))
elif scenario == "infer":
    print(json.dumps(infer(payload["model"], payload["inputs"], binary=payload.get("binary", True),
                           outputs=payload.get("outputs"), version=payload.get("version", ""),
                           request_id=payload.get("id", ""))))
elif scenario == "refused":
    out = []
    for case in payload["cases"]:
        out.append(refused(lambda case=case: infer(case.get("model", payload["model"]), case["inputs"],
                                                   binary=case.get("binary", True), outputs=case.get("outputs"),
                                                   version=case.get("version", ""))))
    out.append(refused(lambda: client.get_model_metadata("ghost")))
    print(json.dumps(out))
'''

DECLARED = {"number": "FP64", "integer": "INT64", "category": "BYTES", "boolean": "BOOL"}


@pytest.fixture(scope="module")
def triton(tmp_path_factory, api):
    """Run one tritonclient scenario against the local stack; its outcome as parsed JSON."""
    python = os.environ.get("TRITON_PYTHON") or str(ROOT / ".venv-triton/bin/python")
    if not Path(python).exists():
        pytest.skip(f"tritonclient not installed at {python}: run `make test` or `make test-e2e`")
    folder = tmp_path_factory.mktemp("tritonclient")
    script = folder / "client.py"
    script.write_text(CLIENT)
    host = api.removeprefix("http://")
    counter = iter(range(10_000))

    def run(scenario: str, payload: dict[str, Any]) -> Any:
        path = folder / f"payload-{next(counter)}.json"
        path.write_text(json.dumps(payload))
        done = subprocess.run(
            [python, str(script), host, scenario, str(path)], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-4000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    return run


def _inputs(rows: list[dict[str, Any]], *, float32: bool = False) -> list[dict[str, Any]]:
    out = []
    for f in demo.DEMO_SCHEMA.features:
        datatype = "FP32" if float32 and f.type == "number" else DECLARED[f.type]
        out.append({"name": f.name, "datatype": datatype, "values": [row[f.name] for row in rows]})
    return out


def _json_api(api: str, rows: list[dict[str, Any]], model: str = "demo") -> dict[str, Any]:
    answer = requests.post(f"{api}/models/{model}/predict", json={"instances": rows}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _proba(expected: dict[str, Any]) -> list[float]:
    return [p for row in expected["probabilities"] for p in row]


def test_health_and_metadata(triton):
    got = triton("health", {"model": "demo"})
    assert got["live"] and got["ready"] and got["model_ready"] and got["version_ready"]
    assert not got["unserved_version_ready"] and not got["ghost_ready"]
    assert got["server"]["name"] == "sklambda" and "binary_tensor_data" in got["server"]["extensions"]
    model = got["model"]
    assert [(i["name"], i["datatype"]) for i in model["inputs"]] == [
        (f.name, DECLARED[f.type]) for f in demo.DEMO_SCHEMA.features
    ]
    assert [o["name"] for o in model["outputs"]] == ["predict", "predict_proba", "prediction_ids"]
    assert got["version"] == model


def test_one_row_with_the_clients_defaults(triton, api):
    """Binary inputs, no outputs listed: the client asks every output as binary data."""
    rows = demo_rows(1, seed=3)
    got = triton("infer", {"model": "demo", "inputs": _inputs(rows), "id": "one-row"})
    expected = _json_api(api, rows)
    assert got["response"]["id"] == "one-row" and got["response"]["model_name"] == "demo"
    assert all("binary_data_size" in o["parameters"] for o in got["listed"])
    outputs = got["outputs"]
    assert outputs["predict"] == {"shape": [1], "values": expected["predictions"], "dtype": "int64"}
    assert outputs["predict_proba"]["shape"] == [1, 2] and outputs["predict_proba"]["values"] == _proba(expected)
    assert outputs["prediction_ids"]["shape"] == [1] and outputs["prediction_ids"]["values"][0].startswith("demo.v")


def test_a_batch_as_json_only(triton, api):
    """binary_data=False on the inputs and on every requested output: JSON both ways."""
    rows = demo_rows(60, seed=4)
    outputs = [{"name": "predict", "binary": False}, {"name": "predict_proba", "binary": False}]
    got = triton("infer", {"model": "demo", "inputs": _inputs(rows), "binary": False, "outputs": outputs})
    assert all("binary_data_size" not in (o.get("parameters") or {}) for o in got["listed"])
    expected = _json_api(api, rows)
    assert got["outputs"]["predict"]["values"] == expected["predictions"]
    assert got["outputs"]["predict_proba"]["shape"] == [60, 2]
    assert got["outputs"]["predict_proba"]["values"] == _proba(expected)
    assert len(set(got["outputs"]["prediction_ids"]["values"])) == 60


def test_a_batch_of_float32_inputs_and_a_matrix_of_bytes(triton, api):
    rows = demo_rows(40, seed=6)
    got = triton("infer", {"model": "demo", "inputs": _inputs(rows, float32=True)})
    as_float32 = [{k: float(np.float32(v)) if isinstance(v, float) else v for k, v in r.items()} for r in rows]
    assert got["outputs"]["predict_proba"]["values"] == _proba(_json_api(api, as_float32))
    names = [f.name for f in demo.DEMO_SCHEMA.features]
    matrix = [[str(r[n]) for n in names] for r in rows]  # one [n, 12] BYTES tensor, numbers as decimal text
    got = triton("infer", {"model": "demo", "inputs": [{"name": "INPUT0", "datatype": "BYTES", "values": matrix}]})
    assert got["outputs"]["predict_proba"]["values"] == _proba(_json_api(api, rows))


def test_predict_proba_only_and_a_pinned_version(triton, api):
    rows = demo_rows(5, seed=8)
    payload = {"model": "demo", "inputs": _inputs(rows), "outputs": [{"name": "predict_proba"}], "version": "1"}
    got = triton("infer", payload)
    assert got["outputs"]["predict"] is None
    assert got["outputs"]["predict_proba"]["values"] == _proba(_json_api(api, rows))
    assert [o["name"] for o in got["listed"]] == ["predict_proba", "prediction_ids"]
    assert got["response"]["model_version"] == "1"


def test_bad_inputs_are_refused_with_the_servers_reason(triton):
    row = demo_rows(1)[0]
    good = _inputs([row])
    plan = next(i for i, t in enumerate(good) if t["name"] == "plan")
    gold = [*good[:plan], {**good[plan], "values": ["gold"]}, *good[plan + 1 :]]
    float_plan = [*good[:plan], {"name": "plan", "datatype": "FP32", "values": [1.0]}, *good[plan + 1 :]]
    many = _inputs(demo_rows(101))  # the stack's MaxBatchRows is 100
    cases = [
        {"inputs": gold},
        {"inputs": good[1:]},
        {"inputs": float_plan},
        {"inputs": many},
        {"inputs": good, "outputs": [{"name": "scores"}]},
        {"inputs": good, "version": "42"},
        {"inputs": good, "model": "ghost"},
        {"inputs": gold, "binary": False},
    ]
    got = triton("refused", {"model": "demo", "cases": cases})
    expected = [
        ("422", "input 'plan' row 0: unknown category 'gold'"),
        ("422", "input 'age' is missing"),
        ("422", "datatype FP32 for a category feature"),
        ("413", "101 rows exceed the limit of 100"),
        ("422", "output 'scores': not an output of this model"),
        ("404", "version '42' is not served"),
        ("404", "model 'ghost' not found"),
        ("422", "input 'plan' row 0: unknown category 'gold'"),
        ("404", "model 'ghost' not found"),
    ]
    outcome = [(g["status"], text in g["message"]) for g, (_, text) in zip(got, expected, strict=True)]
    assert outcome == [(status, True) for status, _ in expected], got


# ------------------------------------------------------------------------------ a user's own pipeline
@pytest.fixture(scope="module")
def shop(registry):
    """A user's pandas pipeline with string categories (nullable) and string classes, published as `shop`."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from sklambda.lifecycle.user_model import publish_user_model

    rng = np.random.default_rng(11)
    n = 600
    frame = pd.DataFrame(
        {
            "basket (EUR)": rng.normal(40, 12, n),
            "tenure/months": rng.gamma(2.0, 6.0, n),
            "plan": rng.choice(["free", "plus", "pro"], n),
            "region": rng.choice(["north/east", "south west", None], n, p=[0.45, 0.45, 0.1]),
        }
    )
    frame.loc[rng.random(n) < 0.05, "basket (EUR)"] = np.nan
    y = np.where(frame["basket (EUR)"].fillna(40) + np.where(frame["plan"] == "pro", 15, 0) > 45, "churn", "stay")
    pre = ColumnTransformer(
        [
            (
                "num",
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                ["basket (EUR)", "tenure/months"],
            ),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
        ]
    )
    pipeline = Pipeline([("pre", pre), ("model", LogisticRegression(max_iter=1000))]).fit(frame, y)
    published = publish_user_model(registry, "shop", pipeline, frame, y)
    registry.promote("shop", published.manifest.version)
    return pipeline, frame


def test_a_users_pipeline_with_string_categories_and_classes(triton, shop):
    pipeline, frame = shop
    sample = frame.head(30)
    sample = sample[sample["region"].notna()]  # BYTES binary data has no null; NaN marks a missing number
    inputs = [
        {"name": "basket (EUR)", "datatype": "FP64", "values": sample["basket (EUR)"].tolist()},
        {"name": "tenure/months", "datatype": "FP64", "values": sample["tenure/months"].tolist()},
        {"name": "plan", "datatype": "BYTES", "values": sample["plan"].tolist()},
        {"name": "region", "datatype": "BYTES", "values": sample["region"].tolist()},
    ]
    got = triton("infer", {"model": "shop", "inputs": inputs})
    assert got["outputs"]["predict"]["values"] == pipeline.predict(sample).tolist()
    assert [o["datatype"] for o in got["listed"]] == ["BYTES", "FP64", "BYTES"]
    proba = np.asarray(got["outputs"]["predict_proba"]["values"]).reshape(len(sample), 2)
    assert np.abs(proba - pipeline.predict_proba(sample)).max() <= 1e-9
    listed = {o["name"]: o for o in got["listed"]}
    assert listed["predict_proba"]["parameters"]["classes"] == ["churn", "stay"]
