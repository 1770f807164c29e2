"""Fixtures for the infrastructure checks: the parsed SAM template, the SAM CLI, python3.12.

These tests run the real SAM CLI (`sam validate --lint`, `sam build`). They do not skip when it
is missing: `make test` / `make test-infra` install it and pass its path in SAM_CLI.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .support import BUILD_REPORT_KEY, LAMBDA_UNZIPPED_LIMIT, REPO_ROOT, TEMPLATE_PATH, load_cfn_yaml


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_cfn_yaml(TEMPLATE_PATH)


# --- tools --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sam_cli() -> Path:
    """The SAM CLI: $SAM_CLI (set by the Makefile), else the project's .venv-sam."""
    configured = os.environ.get("SAM_CLI")
    path = Path(configured) if configured else REPO_ROOT / ".venv-sam" / "bin" / "sam"
    if not (path.is_file() and os.access(path, os.X_OK)):
        origin = "$SAM_CLI" if configured else "the default location"
        pytest.fail(
            f"SAM CLI not found at {path} ({origin}). Install it with `make .venv-sam/.installed` "
            "(or run these tests through `make test-infra`), or point SAM_CLI at a `sam` executable.",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def sam_env() -> dict[str, str]:
    """Environment for SAM CLI subprocesses: no telemetry."""
    return {**os.environ, "SAM_CLI_TELEMETRY": "0"}


@pytest.fixture(scope="session")
def python312() -> Path:
    """A working python3.12, found by scripts/find-python312 (never a hard-coded path)."""
    script = REPO_ROOT / "scripts" / "find-python312"
    result = subprocess.run([str(script)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"scripts/find-python312 found no python3.12:\n{result.stderr}", pytrace=False)
    return Path(result.stdout.strip())


# --- reporting ----------------------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    lines = config.stash.get(BUILD_REPORT_KEY, None)
    if lines:
        terminalreporter.write_sep("=", f"sam build: unzipped sizes (Lambda limit {LAMBDA_UNZIPPED_LIMIT:,} bytes)")
        for line in lines:
            terminalreporter.write_line(line)
