"""The docker-compose demo is valid Compose and speaks the local stack's setting names."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
SECRETS = {
    "SIDECAR_RELAY_SECRET": "s",
    "SIDECAR_NOTIFY_SECRET": "n",
    "ORTHANC_PASSWORD": "o",
    "POSTGRES_PASSWORD": "p",
}


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("docker-compose")
    assert executable, "docker-compose (Debian package) is installed by .ci/run and make install"
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [executable, "-f", str(COMPOSE), "config"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_docker_compose_config_passes() -> None:
    done = compose_config(SECRETS)
    assert done.returncode == 0, done.stderr
    for service in ("hapi", "orthanc", "redis", "postgres", "sidecar", "worker", "seeder"):
        assert re.search(rf"^  {service}:$", done.stdout, re.M), service
    assert "hapiproject/hapi:v8.8.0-1" in done.stdout
    assert "org.dicomfhir.hapi.FetchImagingProvider" in done.stdout


def test_docker_compose_refuses_to_run_without_the_relay_secret() -> None:
    done = compose_config({k: v for k, v in SECRETS.items() if k != "SIDECAR_RELAY_SECRET"})
    assert done.returncode != 0
    assert "SIDECAR_RELAY_SECRET" in done.stderr + done.stdout


def test_compose_uses_the_local_stack_setting_names() -> None:
    stack_names = set(re.findall(r"SIDECAR_[A-Z_]+", (ROOT / "deploy/local/stack.sh").read_text()))
    compose_names = set(re.findall(r"SIDECAR_[A-Z_]+", COMPOSE.read_text()))
    pacs_specific = {n for n in compose_names if n.startswith("SIDECAR_PACS_MAIN_")}
    shared = compose_names - pacs_specific - {"SIDECAR_NOTIFY_URL", "SIDECAR_REDIS_URL"}
    assert shared <= stack_names, shared - stack_names


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_no_secret_has_a_default_in_compose(name: str) -> None:
    assert re.search(rf"\$\{{{name}:\?", COMPOSE.read_text()), name
