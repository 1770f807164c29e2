"""checkov (own environment, .venv-checkov) scans template.yaml: nothing fails, and every skip is
written next to its resource with a justification (Metadata.checkov.skip[].comment), so a
finding can never be silenced without a reason on record. `make test` installs checkov and passes
its path in CHECKOV_CLI; these tests fail (never skip) when it is missing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .support import REPO_ROOT, TEMPLATE_PATH

pytestmark = pytest.mark.infra

MIN_COMMENT_CHARS = 40  # a reason, not "ok" or "n/a"


@pytest.fixture(scope="module")
def checkov_cli() -> Path:
    configured = os.environ.get("CHECKOV_CLI")
    path = Path(configured) if configured else REPO_ROOT / ".venv-checkov" / "bin" / "checkov"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"checkov not found at {path}. Install it with `make .venv-checkov/.installed` (or run these "
            "tests through `make test-infra`), or point CHECKOV_CLI at a `checkov` executable.",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def report(checkov_cli) -> dict[str, Any]:
    result = subprocess.run(
        # --skip-download: no call to the Prisma Cloud API (offline, and no guideline links needed).
        [str(checkov_cli), "--skip-download", "--framework", "cloudformation", "-f", str(TEMPLATE_PATH), "-o", "json"],
        cwd=REPO_ROOT,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    try:
        data = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov gave no JSON report (exit {result.returncode}):\n{result.stderr[-3000:]}", pytrace=False)
    assert isinstance(data, dict), f"one report expected (one framework, one file), got {type(data).__name__}"
    return data


def _template_skips(template: dict[str, Any]) -> dict[tuple[str, str], str]:
    skips = {}
    for name, resource in template["Resources"].items():
        for skip in (resource.get("Metadata") or {}).get("checkov", {}).get("skip", []):
            skips[(name, skip.get("id", ""))] = str(skip.get("comment") or "")
    return skips


def test_checkov_parses_every_resource(report, template):
    summary = report["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= len(template["Resources"]) - 5  # SAM expands, never shrinks much


def test_checkov_finds_no_failed_check(report):
    failed = report["results"].get("failed_checks", [])
    listing = "\n".join(f"  {c['check_id']} {c['resource']}: {c['check_name']}" for c in failed)
    assert not failed, f"checkov failed {len(failed)} check(s); fix them or skip with a justification:\n{listing}"
    assert report["summary"]["passed"] > 0


def test_every_skip_is_justified_next_to_its_resource(template):
    skips = _template_skips(template)
    assert skips, "no skip at all: drop this test's expectations if that is true, it is unlikely"
    unjustified = [f"{res} {check}" for (res, check), comment in skips.items() if len(comment) < MIN_COMMENT_CHARS]
    assert not unjustified, f"skips without a real justification (>= {MIN_COMMENT_CHARS} chars): {unjustified}"
    assert all(check.startswith("CKV_") for _res, check in skips)


def test_every_skipped_check_is_one_written_in_the_template_and_still_needed(report, template):
    """No silent skip (every skip checkov applied is in the template with its comment) and no stale
    one (every skip written in the template still silences a check that would otherwise fail)."""
    declared = _template_skips(template)
    applied = {}
    for check in report["results"].get("skipped_checks", []):
        resource = check["resource"].rsplit(".", 1)[-1]
        applied[(resource, check["check_id"])] = check["check_result"].get("suppress_comment", "")
    assert set(applied) <= set(declared), f"skipped without a Metadata entry: {sorted(set(applied) - set(declared))}"
    assert set(declared) <= set(applied), (
        f"stale skips (the check passes or does not apply): {sorted(set(declared) - set(applied))}"
    )
    for key, comment in applied.items():
        assert comment.strip() == declared[key].strip(), key
