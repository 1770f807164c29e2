"""scripts/find-python312: the interpreter `sam build` gets on PATH."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .support import REPO_ROOT

pytestmark = pytest.mark.infra

SCRIPT = REPO_ROOT / "scripts" / "find-python312"


def run(env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT)], env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=60, check=False
    )


def test_prints_a_working_python312(python312):
    assert python312.is_absolute() and python312.name == "python3.12"
    version = subprocess.run(
        [str(python312), "-c", "import sys, pip; print(*sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.split() == ["3", "12"]


def test_explicit_override_must_be_python312():
    if sys.version_info[:2] == (3, 12):
        pytest.skip("the test interpreter is itself 3.12")
    result = run({"SKLAMBDA_PYTHON312": sys.executable})
    assert result.returncode != 0
    assert result.stdout == ""
    assert "SKLAMBDA_PYTHON312" in result.stderr


def test_explains_when_nothing_is_found(tmp_path):
    # Nothing on PATH but the bare tools the script itself needs, no pyenv, no uv, no HOME.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("env", "sort", "grep", "dirname"):
        for prefix in ("/usr/bin", "/bin"):
            if os.path.exists(f"{prefix}/{tool}"):
                (bin_dir / tool).symlink_to(f"{prefix}/{tool}")
                break
    result = subprocess.run(
        ["/bin/bash", str(SCRIPT)],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode == 0:
        pytest.skip(f"a system python3.12 exists here ({result.stdout.strip()})")
    assert result.stdout == ""
    assert "no working python3.12" in result.stderr
