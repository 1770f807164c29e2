"""samconfig.toml: the default, dev and prod environments of `sam deploy --config-env`."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tomllib
from typing import Any

import pytest

from .support import REPO_ROOT

pytestmark = pytest.mark.infra

ENVIRONMENTS = ("default", "dev", "prod")


@pytest.fixture(scope="module")
def samconfig() -> dict[str, Any]:
    with (REPO_ROOT / "samconfig.toml").open("rb") as stream:
        return tomllib.load(stream)


def params(samconfig: dict[str, Any], env: str, command: str) -> dict[str, Any]:
    """What SAM CLI uses for `sam <command> --config-env <env>`: global, then command section."""
    sections = samconfig.get(env, {})
    return {**sections.get("global", {}).get("parameters", {}), **sections.get(command, {}).get("parameters", {})}


def overrides(samconfig: dict[str, Any], env: str, command: str = "deploy") -> dict[str, str]:
    """Key=Value items as SAM CLI reads them: joined with spaces, then split shell-style."""
    value = params(samconfig, env, command).get("parameter_overrides", [])
    text = value if isinstance(value, str) else " ".join(value)
    return dict(item.split("=", 1) for item in shlex.split(text))


def test_format_version(samconfig):
    assert samconfig["version"] == 0.1


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_deploy_settings(samconfig, env):
    deploy = params(samconfig, env, "deploy")
    assert deploy["stack_name"] == ("sklambda" if env == "default" else f"sklambda-{env}")
    assert deploy["resolve_s3"] is True
    capabilities = deploy["capabilities"]
    capabilities = capabilities.split() if isinstance(capabilities, str) else capabilities
    assert "CAPABILITY_IAM" in capabilities
    assert "CAPABILITY_AUTO_EXPAND" in capabilities  # the AWS::LanguageExtensions transform needs it


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_build_is_cached_and_parallel(samconfig, env):
    build = params(samconfig, env, "build")
    assert build["cached"] is True
    assert build["parallel"] is True


def test_stack_names_differ(samconfig):
    names = [params(samconfig, env, "deploy")["stack_name"] for env in ENVIRONMENTS]
    assert len(set(names)) == len(names)


def test_prod_asks_before_changing_anything(samconfig):
    assert params(samconfig, "prod", "deploy")["confirm_changeset"] is True


def test_prod_overrides(samconfig, template):
    prod = overrides(samconfig, "prod")
    assert prod["AuthType"] == "AWS_IAM"
    defaults = template["Parameters"]
    assert float(prod["ThrottlingRateLimit"]) < float(defaults["ThrottlingRateLimit"]["Default"])
    assert int(prod["ThrottlingBurstLimit"]) < int(defaults["ThrottlingBurstLimit"]["Default"])


def test_dev_overrides(samconfig):
    dev = overrides(samconfig, "dev")
    assert dev["AuthType"] == "AWS_IAM"
    assert dev["LogLevel"] == "DEBUG"
    assert dev["AliasCheckSeconds"] == "10"
    assert dev["DriftSchedule"] == "rate(15 minutes)"  # a value with a space survives the round trip
    assert int(dev["DriftMinRows"]) < 500


def test_dev_sync_matches_dev_deploy(samconfig):
    assert overrides(samconfig, "dev", "sync") == overrides(samconfig, "dev", "deploy")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_personal_address_in_the_config(samconfig, env):
    assert "AlertEmail" not in overrides(samconfig, env)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_overrides_are_valid_template_parameters(samconfig, template, env):
    parameters = template["Parameters"]
    for name, value in overrides(samconfig, env).items():
        assert name in parameters, f"[{env}] {name} is not a template parameter"
        spec = parameters[name]
        if "AllowedValues" in spec:
            assert value in spec["AllowedValues"], f"[{env}] {name}={value}"
        if "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"], value), f"[{env}] {name}={value}"
        if spec["Type"] == "Number":
            number = float(value)
            assert number >= float(spec.get("MinValue", number)), f"[{env}] {name}={value}"
            assert number <= float(spec.get("MaxValue", number)), f"[{env}] {name}={value}"


def test_sam_cli_reads_every_environment(sam_cli, sam_env):
    """Let the SAM CLI itself parse the file, as `sam deploy --config-env <env>` would, without
    running anything: it rejects unknown sections, bad types and malformed overrides."""
    python = sam_cli.parent / "python"
    if not python.exists():
        pytest.skip(f"{sam_cli} is not in a virtualenv; cannot import samcli to parse samconfig.toml")
    script = """
import json, sys
from samcli.commands.build.command import cli as build
from samcli.commands.deploy.command import cli as deploy
result = {}
for env in sys.argv[1:]:
    result[env] = {
        name: {k: v for k, v in cmd.make_context(name, ["--config-env", env]).params.items() if v}
        for name, cmd in (("build", build), ("deploy", deploy))
    }
print(json.dumps(result, default=list))
"""
    completed = subprocess.run(
        [str(python), "-c", script, *ENVIRONMENTS],
        cwd=REPO_ROOT,
        env=sam_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    parsed = json.loads(completed.stdout.strip().splitlines()[-1])
    for env in ENVIRONMENTS:
        deploy = parsed[env]["deploy"]
        assert deploy["stack_name"] == ("sklambda" if env == "default" else f"sklambda-{env}")
        assert deploy["capabilities"] == ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]
        assert deploy["resolve_s3"] is True
        assert parsed[env]["build"]["cached"] is True
    assert parsed["prod"]["deploy"]["parameter_overrides"]["AuthType"] == "AWS_IAM"
    assert parsed["dev"]["deploy"]["parameter_overrides"]["LogLevel"] == "DEBUG"
    assert parsed["dev"]["deploy"]["parameter_overrides"]["DriftSchedule"] == "rate(15 minutes)"
