"""A real `sam build`, and Lambda's 250 MB unzipped limit on function code + layers.

The build runs once per module, with the python3.12 found by scripts/find-python312 first on
PATH, into a temporary --build-dir. It is incremental (`--cached`): SAM keeps its build graph
(build.toml, next to the build dir) and the installed dependencies (.aws-sam/deps, relative to
its working directory) between runs. Both live in .aws-sam/infra-tests/ (our own, so `make build`,
whose cached build deletes whatever it does not own in .aws-sam/cache and .aws-sam/deps, and
these tests never clean each other's caches): a repeated run only re-copies the layers.

The sizes are printed at the end of the run (terminal summary), stored as junit properties
and written to tests/infra/.last-build-sizes.json.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .support import (
    BUILD_REPORT_KEY,
    LAMBDA_UNZIPPED_LIMIT,
    REPO_ROOT,
    TEMPLATE_PATH,
    largest_entries,
    load_cfn_yaml,
    tree_size,
)

pytestmark = [pytest.mark.infra, pytest.mark.timeout(1800)]

STATE_DIR = REPO_ROOT / ".aws-sam" / "infra-tests"
SIZES_FILE = Path(__file__).with_name(".last-build-sizes.json")
HEADROOM_WARNING = 0.10  # warn when a function uses more than 90 % of the limit
# Issue 5: every function's package (code + layers, unzipped) at most 200 MB, well under Lambda's limit.
FUNCTION_SIZE_TARGET = 200_000_000
MB = 1_000_000
MIB = 1024 * 1024


class LambdaSizeWarning(UserWarning):
    """A function plus its layers is close to Lambda's unzipped size limit."""


@dataclass
class SamBuild:
    build_dir: Path
    template: dict[str, Any]
    seconds: float
    log: str
    python: Path
    footprints: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def incremental(self) -> bool:
        """True if SAM reused the deps layer's installed packages instead of running pip."""
        return "Manifest is not changed for (DepsLayer)" in self.log or (
            "Valid cache found, copying previously built resources" in self.log and "DepsLayer" in self.log
        )


@pytest.fixture(scope="module")
def sam_build(sam_cli, sam_env, python312, tmp_path_factory) -> Iterator[SamBuild]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    work = tmp_path_factory.mktemp("sam-build")
    build_dir = work / "build"
    saved_graph = STATE_DIR / "build.toml"
    env = {**sam_env, "PATH": f"{python312.parent}{os.pathsep}{sam_env.get('PATH', '')}"}
    command = [
        str(sam_cli),
        "build",
        "--template-file",
        str(TEMPLATE_PATH),
        "--base-dir",
        str(REPO_ROOT),
        "--build-dir",
        str(build_dir),
        "--cached",
        "--cache-dir",
        str(STATE_DIR / "cache"),
        "--parallel",
    ]
    # One build at a time may use the shared state (another pytest run, another engineer).
    with (STATE_DIR / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if saved_graph.exists():
            shutil.copy2(saved_graph, work / "build.toml")
        started = time.monotonic()
        result = subprocess.run(
            command, cwd=STATE_DIR, env=env, capture_output=True, text=True, timeout=1500, check=False
        )
        seconds = time.monotonic() - started
        if result.returncode == 0:
            shutil.copy2(work / "build.toml", saved_graph)

    log = result.stdout + result.stderr
    if result.returncode != 0:
        pytest.fail(f"sam build failed ({seconds:.0f} s) with {python312}:\n{log}", pytrace=False)
    build = SamBuild(build_dir, load_cfn_yaml(build_dir / "template.yaml"), seconds, log, python312)
    yield build
    shutil.rmtree(work, ignore_errors=True)


def built_resources(build: SamBuild, type_: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in build.template["Resources"].items() if res["Type"] == type_}


def function_layers(build: SamBuild, function: dict[str, Any]) -> list[Any]:
    global_layers = build.template.get("Globals", {}).get("Function", {}).get("Layers", [])
    return list(global_layers) + list(function["Properties"].get("Layers", []))


def measure(build: SamBuild) -> dict[str, dict[str, int]]:
    """{function: {"code": bytes, <layer>: bytes, ...}} for every zip function of the build."""
    resources = build.template["Resources"]
    footprints = {}
    for name, function in built_resources(build, "AWS::Serverless::Function").items():
        parts = {"code": tree_size(build.build_dir / function["Properties"]["CodeUri"])}
        for layer in function_layers(build, function):
            layer_id = layer.get("Ref") if isinstance(layer, dict) else None
            if layer_id not in resources:
                pytest.fail(f"{name} uses layer {layer!r}, which is not built here: its size cannot be checked")
            parts[layer_id] = tree_size(build.build_dir / resources[layer_id]["Properties"]["ContentUri"])
        footprints[name] = parts
    return footprints


def report_lines(build: SamBuild) -> list[str]:
    mode = "incremental: deps layer reused" if build.incremental else "deps layer installed by pip"
    lines = [f"sam build: {build.seconds:.1f} s ({mode}), python {build.python}"]
    lines.append(f"{'artifact':<34}{'bytes':>15}{'MB':>9}{'MiB':>9}{'of limit':>10}")
    for function, parts in build.footprints.items():
        for part, size in parts.items():
            label = f"{function} code" if part == "code" else f"  layer {part}"
            lines.append(
                f"{label:<34}{size:>15,}{size / MB:>9.1f}{size / MIB:>9.1f}{size / LAMBDA_UNZIPPED_LIMIT:>10.1%}"
            )
        total = sum(parts.values())
        headroom = LAMBDA_UNZIPPED_LIMIT - total
        lines.append(
            f"{function + ' total':<34}{total:>15,}{total / MB:>9.1f}{total / MIB:>9.1f}"
            f"{total / LAMBDA_UNZIPPED_LIMIT:>10.1%}   headroom {headroom / MB:.1f} MB"
        )
    layers = built_resources(build, "AWS::Serverless::LayerVersion")
    for layer_id, layer in layers.items():
        python_dir = build.build_dir / layer["Properties"]["ContentUri"] / "python"
        if python_dir.is_dir() and tree_size(python_dir) > 10 * MB:
            biggest = ", ".join(f"{name} {size / MB:.1f}" for name, size in largest_entries(python_dir, 10))
            lines.append(f"largest in {layer_id} (MB): {biggest}")
    return lines


def test_sam_build_produces_every_artifact(sam_build):
    for name, function in built_resources(sam_build, "AWS::Serverless::Function").items():
        assert (sam_build.build_dir / function["Properties"]["CodeUri"]).is_dir(), name
    layers = built_resources(sam_build, "AWS::Serverless::LayerVersion")
    assert {"SklambdaLayer", "DepsLayer"} <= set(layers)
    for name, layer in layers.items():
        # Lambda puts /opt/python on sys.path: a Python layer's content must be under python/.
        assert (sam_build.build_dir / layer["Properties"]["ContentUri"] / "python").is_dir(), name


def test_deps_layer_holds_linux_python312_wheels(sam_build):
    python_dir = sam_build.build_dir / "DepsLayer" / "python"
    for package in ("numpy", "pydantic", "aws_lambda_powertools", "boto3", "botocore"):
        assert (python_dir / package).is_dir(), f"{package} missing from the deps layer"
    for package in ("sklearn", "scipy", "joblib"):  # the lean runtime serves without them
        assert not (python_dir / package).exists(), f"{package} in the lean deps layer"
    # The wheels must be Lambda's (CPython 3.12, manylinux x86_64), not the build machine's.
    extensions = list((python_dir / "numpy").rglob("_multiarray_umath.*.so"))
    assert [e.name for e in extensions] == ["_multiarray_umath.cpython-312-x86_64-linux-gnu.so"]


def test_sklearn_layer_holds_scikit_learn_scipy_and_joblib_but_not_numpy(sam_build):
    python_dir = sam_build.build_dir / "SklearnLayer" / "python"
    for package in ("sklearn", "scipy", "joblib", "threadpoolctl.py"):
        assert (python_dir / package).exists(), f"{package} missing from the sklearn layer"
    assert not (python_dir / "numpy").exists(), "numpy comes from the deps layer, not a second copy"
    assert list((python_dir / "sklearn").rglob("*.cpython-312-x86_64-linux-gnu.so"))


@pytest.mark.parametrize("layer", ["DepsLayer", "SklearnLayer"])
def test_dependency_layers_are_pruned(sam_build, layer):
    python_dir = sam_build.build_dir / layer / "python"
    tests_dirs = [p for p in python_dir.rglob("tests") if p.is_dir()]
    assert not tests_dirs, tests_dirs[:5]
    for pattern in ("*.pyi", "*.pyx", "*.pxd", "*.h"):
        assert not list(python_dir.rglob(pattern)), pattern
    assert not (python_dir / "bin").exists()
    # auditwheel's vendored libraries are kept as shipped (stripping them breaks imports).
    if layer == "DepsLayer":
        assert list((python_dir / "numpy.libs").glob("*.so*"))


def _pyc_flags(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[4:8], "little")


@pytest.mark.parametrize(("layer", "package"), [("DepsLayer", "numpy"), ("SklambdaLayer", "sklambda")])
def test_layers_on_the_serving_path_ship_unchecked_hash_bytecode_for_python312(sam_build, layer, package):
    python_dir = sam_build.build_dir / layer / "python"
    sources = [p for p in (python_dir / package).rglob("*.py")]
    assert sources
    for source in sources:
        pyc = source.parent / "__pycache__" / f"{source.stem}.cpython-312.pyc"
        assert pyc.is_file(), f"{source} has no python 3.12 bytecode"
    # PEP 552 flags: bit 0 = hash-based, bit 1 = check_source. Unchecked hash: valid whatever the
    # zip's 1980 timestamps say, never re-validated against a source that cannot change.
    flags = {_pyc_flags(p) for p in (python_dir / package).rglob("*.cpython-312.pyc")}
    assert flags == {0b01}, flags
    assert not list(python_dir.rglob("*.cpython-311.pyc")), "bytecode of the build machine's python"


def test_botocore_keeps_every_service_the_code_creates_a_client_for(sam_build):
    import re

    data = sam_build.build_dir / "DepsLayer" / "python" / "botocore" / "data"
    kept = {p.name for p in data.iterdir() if p.is_dir()}
    used = {"xray"}  # the X-Ray SDK's sampling client (Tracing: Active)
    pattern = re.compile(r"client\(\s*[\"']([a-z0-9-]+)[\"']", re.S)
    for root in (REPO_ROOT / "layers" / "sklambda", REPO_ROOT / "functions"):
        for source in root.rglob("*.py"):
            used |= set(pattern.findall(source.read_text()))
    assert {"s3", "firehose"} <= used
    assert used <= kept, f"botocore API models pruned from the deps layer but used: {sorted(used - kept)}"


def test_sklambda_layer_holds_the_library(sam_build):
    assert (sam_build.build_dir / "SklambdaLayer" / "python" / "sklambda" / "__init__.py").is_file()


@pytest.mark.parametrize("function", ["PredictFunction", "DriftFunction"])
def test_function_code_holds_its_handler(sam_build, function):
    code_dir = sam_build.build_dir / sam_build.template["Resources"][function]["Properties"]["CodeUri"]
    assert (code_dir / "app.py").is_file(), f"{function}: app.py missing from the build"


def test_function_code_ships_no_third_party_packages(sam_build):
    # Dependencies come from the layers; a package here would be a second, shadowing copy.
    for name, function in built_resources(sam_build, "AWS::Serverless::Function").items():
        code_dir = sam_build.build_dir / function["Properties"]["CodeUri"]
        dist_infos = sorted(p.name for p in code_dir.glob("*.dist-info"))
        assert not dist_infos, f"{name} bundles {dist_infos}"


def test_functions_fit_lambda_unzipped_size_limit(sam_build, record_property, request):
    sam_build.footprints = measure(sam_build)
    lines = report_lines(sam_build)
    print("\n".join(lines))
    request.config.stash[BUILD_REPORT_KEY] = lines
    record_property("sam_build_seconds", round(sam_build.seconds, 1))
    record_property("sam_build_incremental", sam_build.incremental)
    SIZES_FILE.write_text(
        json.dumps(
            {
                "limit_bytes": LAMBDA_UNZIPPED_LIMIT,
                "build_seconds": round(sam_build.seconds, 1),
                "incremental": sam_build.incremental,
                "functions": {
                    name: {**parts, "total": sum(parts.values())} for name, parts in sam_build.footprints.items()
                },
            },
            indent=2,
        )
        + "\n"
    )

    # Every function of the template is measured with every layer it uses.
    assert {"PredictFunction", "DriftFunction"} <= set(sam_build.footprints)
    for function in ("PredictFunction", "DriftFunction"):
        assert {"code", "SklambdaLayer", "DepsLayer", "SklearnLayer"} <= set(sam_build.footprints[function]), function
    too_big = {}
    over_target = {}
    for function, parts in sam_build.footprints.items():
        total = sum(parts.values())
        if total > FUNCTION_SIZE_TARGET:
            over_target[function] = total
        for part, size in parts.items():
            record_property(f"{function}.{part}_bytes", size)
        record_property(f"{function}.total_bytes", total)
        if total >= LAMBDA_UNZIPPED_LIMIT:
            too_big[function] = total
        elif total > (1 - HEADROOM_WARNING) * LAMBDA_UNZIPPED_LIMIT:
            warnings.warn(
                LambdaSizeWarning(
                    f"{function} + layers unzipped is {total:,} bytes, {total / LAMBDA_UNZIPPED_LIMIT:.1%} "
                    f"of Lambda's {LAMBDA_UNZIPPED_LIMIT:,}-byte limit (headroom "
                    f"{(LAMBDA_UNZIPPED_LIMIT - total) / MB:.1f} MB)"
                ),
                stacklevel=1,
            )
    assert not too_big, "over Lambda's unzipped size limit:\n" + "\n".join(lines)
    assert not over_target, f"over the {FUNCTION_SIZE_TARGET / MB:.0f} MB target:\n" + "\n".join(lines)
