"""The template through the transforms CloudFormation runs at deploy (LanguageExtensions, then SAM),
for every AuthType — `sam validate --lint` does not translate, so this is what catches a template
that lints but cannot deploy."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _translate(parameters: dict[str, str]) -> dict:
    sam = Path(os.environ.get("SAM_CLI", ROOT / ".venv-sam/bin/sam"))
    python = sam.parent / "python"
    assert python.exists(), f"the SAM CLI's venv is missing ({python}); run `make test`"
    result = subprocess.run(
        [
            str(python),
            str(Path(__file__).with_name("_sam_translate.py")),
            str(ROOT / "template.yaml"),
            json.dumps(parameters),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("auth", "expected"),
    [("AWS_IAM", [{"AWS_IAM": []}]), ("JWT", [{"JwtAuthorizer": []}]), ("NONE", None)],
)
def test_the_template_translates_for_each_auth_type(auth, expected):
    parameters = {"AuthType": auth}
    if auth == "JWT":
        parameters |= {
            "JwtIssuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_example",
            "JwtAudience": "example-client-id",
        }
    answer = _translate(parameters)
    assert answer["ok"], answer.get("errors")
    assert "POST /predict" in answer["security"] and "POST /feedback" in answer["security"]
    assert all(value == expected for value in answer["security"].values()), answer["security"]
