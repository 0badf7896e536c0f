"""docker-compose.yml cannot run here (no Docker engine); check what can be checked:
it parses, and its commands and PARTSBIN_ variables are ones the code accepts."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from partsbin.cli import app
from partsbin.registry.config import Settings

ROOT = Path(__file__).resolve().parents[1]
CLIENT_VARS = {"PARTSBIN_URL", "PARTSBIN_TOKEN", "PARTSBIN_CACHE_DIR", "PARTSBIN_NO_PROGRESS"}


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_parses_and_wires_the_services():
    services = _compose()["services"]
    assert {"registry", "postgres", "s3", "migrate", "worker"} <= set(services)
    assert services["worker"]["environment"]["PARTSBIN_URL"] == "http://registry:8000"
    assert services["registry"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # Healthy means ready (database and storage reachable), not merely a running process.
    assert "/readyz" in " ".join(services["registry"]["healthcheck"]["test"])
    assert services["worker"]["depends_on"]["registry"]["condition"] == "service_healthy"
    # The registry checks submissions against the data roots the workers read from.
    roots = services["worker"]["environment"]["PARTSBIN_DATA_ROOTS"]
    assert services["registry"]["environment"]["PARTSBIN_DATA_ROOTS"] == roots
    assert any(v.split(":")[1] == roots for v in services["worker"]["volumes"])


def test_compose_variables_are_settings_the_code_reads():
    known = {f"PARTSBIN_{name.upper()}" for name in Settings.model_fields} | CLIENT_VARS
    for name, service in _compose()["services"].items():
        env = service.get("environment") or {}
        for var in env:
            if var.startswith("PARTSBIN_"):
                assert var in known, f"{name}: {var} is not a setting partsbin reads"
        if any(v.startswith("PARTSBIN_") for v in env):
            Settings(
                **{
                    k.removeprefix("PARTSBIN_").lower(): v
                    for k, v in env.items()
                    if k.startswith("PARTSBIN_") and k not in CLIENT_VARS
                }
            )


def test_compose_commands_are_cli_commands():
    runner = CliRunner()
    for name, service in _compose()["services"].items():
        cmd = service.get("command")
        if not cmd or cmd[0] != "partsbin":
            continue
        args = [a for a in cmd[1:]]
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, f"{name}: `{' '.join(cmd)}` is not accepted: {result.output}"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["partsbin", "serve"' in dockerfile


def test_dockerfile_copies_every_folder_of_the_package():
    from tests.test_packaging import FOLDERS

    dockerfile = (ROOT / "Dockerfile").read_text()
    for folder in FOLDERS:
        assert f"COPY {folder} {folder}" in dockerfile, folder
    assert "-c constraints.txt" in dockerfile
