from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def _compose_command() -> list[str] | None:
    if (
        shutil.which("docker")
        and subprocess.run(
            ["docker", "compose", "version"],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    ):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_file_validates():
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    result = subprocess.run(
        [*command, "-f", str(DOCKER / "compose.yaml"), "--env-file", str(DOCKER / ".env.example"), "config"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert set(config["services"]) == {"postgres", "redis", "migrate", "web", "worker", "beat"}
    for name in ("web", "worker", "beat"):
        env = config["services"][name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://trueup_app:"), (
            f"{name} must use the restricted role"
        )
        assert env["TRUEUP_ENV"] == "production" and env["CELERY_BROKER_URL"].startswith("redis://")
    assert config["services"]["migrate"]["environment"]["DATABASE_URL"].startswith("postgres://trueup_owner:")
    assert "gunicorn" in (DOCKER / "Dockerfile").read_text()


def test_database_init_creates_roles_that_are_not_superusers():
    script = (DOCKER / "postgres-init.sh").read_text()
    assert "CREATE ROLE trueup_app LOGIN" in script and "NOSUPERUSER" in script and "NOBYPASSRLS" in script
    assert "SUPERUSER " not in script.replace("NOSUPERUSER", "")
