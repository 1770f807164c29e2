"""Hostile input: schemathesis (its own venv) runs the API's OpenAPI document against the local stack.

Every check (`--checks all`): no 5xx, every status documented, every body matching its schema,
invalid bodies refused, … over every phase (examples, coverage, fuzzing, stateful). Bounded in
examples per operation and in time. The two check settings that do not apply, and why, are in
tests/e2e/schemathesis.toml.

The typed per-model documents (GET /models/{name}/openapi.json) are run the same way, for the demo
model and a user's pipeline with string categories published with ``publish_user_model``, and held
to more: a body the document accepts must be scored (positive data acceptance: 2xx only), since
there every feature is typed as the validator checks it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.helpers import ROOT

CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "40"))


def _cli() -> str:
    configured = os.environ.get("SCHEMATHESIS_CLI") or str(ROOT / ".venv-schemathesis/bin/st")
    if not Path(configured).exists() and not shutil.which(configured):
        pytest.skip(f"schemathesis not installed at {configured}: run `make test` or `make test-e2e`")
    return configured


def test_schemathesis_finds_no_server_error_and_no_schema_violation(api, tmp_path):
    st = _cli()
    result = subprocess.run(
        [
            st,
            "--config-file",
            str(CONFIG),
            "--no-color",
            "run",
            f"{api}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--request-timeout",
            "60",
            "--exclude-checks",
            "unsupported_method",  # an HTTP API answers 404, not 405, for an undeclared method
            "--workers",
            "1",  # CPython 3.11's ast is not thread-safe under hypothesis' workers (SystemError)
            "--generation-deterministic",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=540,
    )
    summary = result.stdout[-6000:]
    assert result.returncode == 0, summary + result.stderr[-2000:]
    found = re.search(r"(\d+) generated", result.stdout)
    assert found, summary
    cases = int(found[1])
    print(f"schemathesis: {cases} test cases generated, no failure")
    assert cases >= 100, summary


# The per-model documents type every feature, so a schema-valid body must be scored: 2xx only; a body
# the document refuses must be a 4xx (413 for more instances than maxItems included).
MODEL_CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx"]

[checks.negative_data_rejection]
expected-statuses = ["4xx"]
"""


@pytest.fixture(scope="module")
def user_model(registry) -> str:
    """A user's pandas pipeline with string categories (one nullable, unknown values ignored), a nullable
    number, names with spaces and slashes, and string classes, published with publish_user_model."""
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    from sklambda.lifecycle.user_model import publish_user_model

    rng = np.random.default_rng(5)
    n = 500
    frame = pd.DataFrame(
        {
            "basket (EUR)": rng.normal(40, 12, n),
            "tenure/months": rng.integers(0, 60, n),
            "plan": rng.choice(["free", "plus", "pro"], n),
            "region": rng.choice(["north/east", "south west", None], n, p=[0.45, 0.45, 0.1]),
        }
    )
    frame.loc[rng.random(n) < 0.05, "basket (EUR)"] = np.nan
    y = np.where(frame["basket (EUR)"].fillna(40) + np.where(frame["plan"] == "pro", 15, 0) > 45, "churn", "stay")
    numbers = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    pre = ColumnTransformer(
        [
            ("num", numbers, ["basket (EUR)", "tenure/months"]),
            ("plan", OrdinalEncoder(), ["plan"]),
            ("region", OneHotEncoder(handle_unknown="ignore"), ["region"]),
        ]
    )
    pipeline = Pipeline([("pre", pre), ("model", LogisticRegression(max_iter=1000))]).fit(frame, y)
    version = publish_user_model(registry, "shop", pipeline, frame, y).manifest.version
    registry.promote("shop", version)
    return "shop"


@pytest.mark.parametrize("model", ["demo", "user"])
def test_schemathesis_holds_each_model_to_its_typed_document(api, user_model, model, tmp_path):
    st = _cli()
    name = user_model if model == "user" else "demo"
    config = tmp_path / "schemathesis.toml"
    config.write_text(MODEL_CONFIG)
    result = subprocess.run(
        [
            st,
            "--config-file",
            str(config),
            "--no-color",
            "run",
            f"{api}/models/{name}/openapi.json",
            "--url",
            api,
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES * 2),
            "--request-timeout",
            "60",
            "--exclude-checks",
            "unsupported_method",  # an HTTP API answers 404, not 405, for an undeclared method
            "--workers",
            "1",
            "--generation-deterministic",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=540,
    )
    summary = result.stdout[-6000:]
    assert result.returncode == 0, summary + result.stderr[-2000:]
    found = re.search(r"(\d+) generated", result.stdout)
    assert found, summary
    print(f"schemathesis, {name}'s document: {found[1]} test cases generated, no failure")
    assert int(found[1]) >= 50, summary
