"""The Docker demo, statically: valid Compose, our own images from one base, real setting
names and CLI flags, no secret defaults, one issuer and audience for the host and the
containers (Keycloak, HAPI's token checks, the sidecar), and the path for the official HAPI image.

Running it is `deploy/compose/check.sh` (CI, after `make test`); nothing here needs Docker.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from sidecar.samples.__main__ import build_parser as samples_parser
from sidecar.wiring.cli import build_parser as cli_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
OFFICIAL = ROOT / "deploy" / "compose" / "official-hapi.yml"
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"
SECRETS = {
    "SIDECAR_RELAY_SECRET": "relay",
    "SIDECAR_NOTIFY_SECRET": "notify",
    "ORTHANC_PASSWORD": "o",
    "POSTGRES_PASSWORD": "p",
    "KEYCLOAK_ADMIN_PASSWORD": "kc-admin",
    "KEYCLOAK_SIDECAR_SECRET": "kc-sidecar",
    "KEYCLOAK_DEMO_PASSWORD": "kc-demo",
}
SERVICES = {
    "postgres",
    "hapi",
    "keycloak",
    "orthanc",
    "redis",
    "sidecar-web-1",
    "sidecar-web-2",
    "worker",
    "sidecar",
    "seeder",
}
OFFICIAL_IMAGE = "hapiproject/hapi:v8.8.0-1"
PROVIDER = "org.dicomfhir.hapi.FetchImagingProvider"
POSTGRES_DIALECT = "ca.uhn.fhir.jpa.model.dialect.HapiFhirPostgresDialect"
STACK_SH = ROOT / "deploy" / "local" / "stack.sh"
#: smart-auth's interceptors as the local stack names them (CORS first)
INTERCEPTORS = re.search(r'^SMART_AUTH_INTERCEPTORS="([^"]+)"', STACK_SH.read_text(), re.M)[1]
#: the realm's path under Keycloak's root, and where the containers reach that root
REALM = "/realms/dicom-fhir"
KEYCLOAK_INSIDE = "http://keycloak:8080"
#: the services that run the sidecar's code with its settings
SIDECARS = ("sidecar-web-1", "sidecar-web-2", "worker", "seeder")


def _docker_compose() -> str:
    executable = shutil.which("docker-compose")
    assert executable, "docker-compose (Debian package) is installed by .ci/run and make install"
    return executable


def yaml_load(text: str) -> Any:
    """YAML through the interpreter that runs docker-compose (it has PyYAML; our venv has not)."""
    first = Path(_docker_compose()).read_text(errors="replace").splitlines()[0]
    interpreter = first[2:].strip().split()[0] if first.startswith("#!") else "python3"
    done = subprocess.run(
        [
            interpreter,
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


@functools.cache
def _empty_env_file() -> Path:
    """Read instead of a developer's .env (compose refuses /dev/null)."""
    handle, name = tempfile.mkstemp(prefix="compose-test-", suffix=".env")
    os.close(handle)
    return Path(name)


def compose_config(env: dict[str, str], *files: Path) -> subprocess.CompletedProcess[str]:
    executable = _docker_compose()
    # neither the caller's settings nor a developer's .env may leak into what is checked
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.endswith("_PORT")}
    args = [executable, "--env-file", str(_empty_env_file())]
    for f in files or (COMPOSE,):
        args += ["-f", str(f)]
    return subprocess.run(
        [*args, "config"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def config() -> dict:
    done = compose_config(SECRETS)
    assert done.returncode == 0, done.stderr
    return yaml_load(done.stdout)


@pytest.fixture(scope="module")
def official() -> dict:
    done = compose_config(SECRETS, COMPOSE, OFFICIAL)
    assert done.returncode == 0, done.stderr
    return yaml_load(done.stdout)


def dockerfile(service: dict) -> str:
    return (ROOT / service["build"]["dockerfile"]).read_text()


def test_the_demo_has_every_service(config: dict) -> None:
    assert set(config["services"]) == SERVICES


def test_compose_spec_only_so_v1_and_v2_read_it() -> None:
    raw = yaml_load(COMPOSE.read_text())
    assert "version" not in raw and "name" not in raw
    for name, service in raw["services"].items():
        for key in ("links", "external_links", "volumes_from", "container_name", "extends"):
            assert key not in service, (name, key)


def test_every_image_is_built_here_from_one_overridable_base(config: dict) -> None:
    for name, service in config["services"].items():
        assert "build" in service, name
        assert service["image"].startswith("dicom-fhir-demo/"), name
        assert service["build"]["args"] == {"BASE_IMAGE": "debian:bookworm-slim"}, name
        assert "org.dicomfhir.demo" in service["build"]["labels"], name  # what CI prunes
        text = dockerfile(service)
        assert "ARG BASE_IMAGE=debian:bookworm-slim" in text, name
        stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M)
        target = service["build"].get("target") or stages[-1][1]
        named = {alias for _, alias in stages if alias}
        for image, alias in stages:
            if alias == "official":  # for users of the official image only
                assert image == "${HAPI_OFFICIAL_IMAGE}"
                continue
            assert image == "${BASE_IMAGE}" or image in named, (name, image)
        assert target in named or target == stages[-1][1], name


def test_the_base_image_is_overridable(config: dict) -> None:
    done = compose_config({**SECRETS, "BASE_IMAGE": "example/debian:12"})
    assert done.returncode == 0, done.stderr
    services = yaml_load(done.stdout)["services"]
    assert {s["build"]["args"]["BASE_IMAGE"] for s in services.values()} == {"example/debian:12"}


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_to_run_without_each_secret(missing: str) -> None:
    done = compose_config({k: v for k, v in SECRETS.items() if k != missing})
    assert done.returncode != 0
    assert missing in done.stderr + done.stdout


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_no_secret_has_a_default_in_compose(name: str) -> None:
    text = COMPOSE.read_text()
    assert re.search(rf"\$\{{{name}:\?", text), name
    assert not re.search(rf"\$\{{{name}:-", text), name


def test_relay_and_notify_secrets_go_where_they_belong(config: dict) -> None:
    hapi = config["services"]["hapi"]["environment"]
    assert hapi["FETCH_IMAGING_RELAY_SECRET"] == "relay"
    assert hapi["FETCH_IMAGING_SIDECAR_URL"] == "http://sidecar:8090"  # the proxy
    for name in ("sidecar-web-1", "sidecar-web-2", "worker", "seeder"):
        env = config["services"][name]["environment"]
        assert env["SIDECAR_RELAY_SECRET"] == "relay", name
        assert env["SIDECAR_NOTIFY_SECRET"] == "notify", name
        assert env["SIDECAR_NOTIFY_URL"] == "http://sidecar:8090/notify", name
        assert env["SIDECAR_REDIS_URL"].startswith("redis://redis:"), name
        assert "SIDECAR_SHARED_SECRET" not in env, name  # the first wave's single secret
    assert "FETCH_IMAGING_SHARED_SECRET" not in hapi


def test_env_example_has_placeholders_only_and_two_different_secrets() -> None:
    values = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )
    for name in SECRETS:
        assert values[name].startswith("change-me"), name
    assert values["SIDECAR_RELAY_SECRET"] != values["SIDECAR_NOTIFY_SECRET"]
    assert (
        values["HAPI_PORT"],
        values["ORTHANC_PORT"],
        values["SIDECAR_PORT"],
        values["KEYCLOAK_PORT"],
    ) == ("8080", "8042", "8090", "8180")
    # the host ports and the names the host uses all in one place
    assert (values["BIND_ADDRESS"], values["PUBLIC_HOST"]) == ("127.0.0.1", "127.0.0.1")


def _ports(service: dict) -> list[tuple[str, int, int]]:
    """(host ip, published, target) whether `config` printed the short (v1) or long (v2) form."""
    out = []
    for p in service.get("ports", []):
        if isinstance(p, str):
            host_ip, published, target = p.split("/")[0].rsplit(":", 2)
            out.append((host_ip, int(published), int(target)))
        else:
            out.append((p["host_ip"], int(p["published"]), int(p["target"])))
    return out


def test_host_ports_default_to_the_readme_and_stay_on_loopback(config: dict) -> None:
    published = {name: _ports(s) for name, s in config["services"].items()}
    assert {k: v for k, v in published.items() if v} == {
        "hapi": [("127.0.0.1", 8080, 8080)],
        "keycloak": [("127.0.0.1", 8180, 8080)],
        "orthanc": [("127.0.0.1", 8042, 8042)],
        "sidecar": [("127.0.0.1", 8090, 8090)],
    }


MOVED = {"HAPI_PORT": "18080", "ORTHANC_PORT": "18042", "SIDECAR_PORT": "18090"}


@pytest.fixture(scope="module")
def moved() -> dict:
    """The demo on other host ports and another host name (check.sh picks free ports)."""
    done = compose_config(
        {**SECRETS, **MOVED, "KEYCLOAK_PORT": "18180", "PUBLIC_HOST": "demo.example"}
    )
    assert done.returncode == 0, done.stderr
    return yaml_load(done.stdout)["services"]


def test_other_host_ports_move_every_address_that_names_them(moved: dict) -> None:
    assert _ports(moved["hapi"]) == [("127.0.0.1", 18080, 8080)]
    assert _ports(moved["keycloak"]) == [("127.0.0.1", 18180, 8080)]
    assert moved["orthanc"]["environment"]["ORTHANC_PUBLIC_HOST"] == "demo.example:18042"
    for name in SIDECARS:
        env = moved[name]["environment"]
        # Endpoint.address is the gateway, through the proxy's host port
        assert env["SIDECAR_PUBLIC_URL"] == "http://demo.example:18090", name
        assert env["SIDECAR_FHIR_PUBLIC_URL"] == "http://demo.example:18080/fhir", name
        assert "SIDECAR_PACS_MAIN_WADO_ROOT" not in env, name  # the gateway is the default
        assert env["SIDECAR_FHIR_BASE_URL"] == "http://hapi:8080/fhir", name


def test_one_issuer_and_one_audience_for_the_host_and_the_containers(moved: dict) -> None:
    """Keycloak's issuer is the host's view of it; every token says that `iss` whoever asked,
    and HAPI and the sidecar expect exactly it, with the FHIR base as the host sees it."""
    issuer = "http://demo.example:18180" + REALM
    audience = "http://demo.example:18080/fhir"
    keycloak = moved["keycloak"]["environment"]
    assert keycloak["KC_HOSTNAME"] + REALM == issuer
    assert keycloak["KC_HOSTNAME_BACKCHANNEL_DYNAMIC"] == "true"  # containers: keycloak:8080
    assert keycloak["FHIR_AUDIENCE"] == audience  # kc.py configure --fhir-base
    assert keycloak["VIEWER_ORIGIN"] == "http://demo.example:18090"
    hapi = moved["hapi"]["environment"]
    assert (hapi["SMART_AUTH_ISSUER"], hapi["SMART_AUTH_AUDIENCE"]) == (issuer, audience)
    assert hapi["SMART_AUTH_CORS_ORIGINS"] == "http://demo.example:18090"
    for name in SIDECARS:
        env = moved[name]["environment"]
        assert (env["SIDECAR_AUTH_ISSUER"], env["SIDECAR_AUTH_AUDIENCE"]) == (issuer, audience)


def test_containers_fetch_keys_and_tokens_on_the_internal_network(config: dict) -> None:
    certs = KEYCLOAK_INSIDE + REALM + "/protocol/openid-connect/certs"
    assert config["services"]["hapi"]["environment"]["SMART_AUTH_JWKS_URL"] == certs
    for name in SIDECARS:
        env = config["services"][name]["environment"]
        assert env["SIDECAR_AUTH_JWKS_URL"] == certs, name
        assert env["SIDECAR_FHIR_TOKEN_URL"] == (
            KEYCLOAK_INSIDE + REALM + "/protocol/openid-connect/token"
        ), name


def test_hapi_enforces_smart_tokens_with_the_local_stacks_interceptors(config: dict) -> None:
    hapi = config["services"]["hapi"]
    assert hapi["environment"]["HAPI_FHIR_CUSTOM_INTERCEPTOR_CLASSES"] == INTERCEPTORS
    assert INTERCEPTORS.split(",")[0].endswith(".SmartCorsInterceptor")  # preflights first
    stage = dockerfile(hapi).split(" AS hapi", 1)[1].split("\nFROM ", 1)[0]
    assert re.search(r"COPY --from=build [^\n]*\n\s+\S+/smart-auth/target/smart-auth\.jar", stage)
    assert "/opt/hapi/extra-classes/" in stage


def test_the_sidecars_are_the_realms_sidecar_client_with_the_shared_secret(config: dict) -> None:
    keycloak = config["services"]["keycloak"]["environment"]
    assert keycloak["KEYCLOAK_SIDECAR_SECRET"] == "kc-sidecar"
    assert keycloak["KC_BOOTSTRAP_ADMIN_PASSWORD"] == "kc-admin"
    assert keycloak["KEYCLOAK_DEMO_PASSWORD"] == "kc-demo"
    realm = json.loads((ROOT / "deploy" / "keycloak" / "realm-dicom-fhir.json").read_text())
    client = next(c for c in realm["clients"] if c["clientId"] == "dicom-fhir-sidecar")
    assert client["serviceAccountsEnabled"] and "secret" not in client  # kc.py sets it
    for name in SIDECARS:
        env = config["services"][name]["environment"]
        expected = {
            "SIDECAR_FHIR_AUTH": "oauth2",
            "SIDECAR_FHIR_CLIENT_ID": client["clientId"],
            "SIDECAR_FHIR_CLIENT_SECRET": "kc-sidecar",
            "SIDECAR_FHIR_SCOPE": "system/*.cruds",
        }
        assert {k: env.get(k) for k in expected} == expected, name
        assert env["SIDECAR_PACS_MAIN_ORTHANC_URL"] == "http://orthanc:8042", name
        # they need Keycloak's realm configured before their first FHIR call
        depends = config["services"][name]["depends_on"]
        assert depends["keycloak"]["condition"] == "service_healthy", name


def test_the_keycloak_image_is_the_local_stacks_keycloak_with_the_realm_as_code(
    config: dict,
) -> None:
    text = dockerfile(config["services"]["keycloak"])
    version = re.search(r"^KEYCLOAK_VERSION=(\S+)$", STACK_SH.read_text(), re.M)[1]
    assert f"ARG KEYCLOAK_VERSION={version}" in text
    assert "org.keycloak:keycloak-quarkus-dist:${KEYCLOAK_VERSION}:tar.gz" in text  # Maven
    assert "openjdk-17-jdk-headless maven" in text and "openjdk-17-jre-headless" in text
    assert "COPY deploy/keycloak/realm-dicom-fhir.json /opt/keycloak/data/import/" in text
    assert "deploy/keycloak/kc.py" in text
    assert (
        "COPY deploy/compose/keycloak/token /usr/local/bin/token" in text
    )  # `exec keycloak token`
    assert os.access(ROOT / "deploy" / "compose" / "keycloak" / "token", os.X_OK)
    start = (ROOT / "deploy" / "compose" / "keycloak" / "start.sh").read_text()
    assert "start-dev --import-realm" in start and "kc.py" in start and " configure " in start
    # no secret baked in: they come from the environment at run time
    assert not re.search(r"^(ENV|ARG)\s+\S*(PASSWORD|SECRET)", text, re.M)


def test_only_services_with_a_host_port_leave_the_internal_network(config: dict) -> None:
    assert config["networks"]["back"]["internal"] is True
    for name, service in config["services"].items():
        expected = {"back", "front"} if service.get("ports") else {"back"}
        assert set(service["networks"]) == expected, name


def _cmd(value: list[str] | str) -> list[str]:
    return value if isinstance(value, list) else shlex.split(value)


def _dockerfile_cmd(text: str, stage: str) -> list[str]:
    body = re.split(r"^FROM\s+\S+\s+AS\s+" + re.escape(stage) + r"\s*$", text, flags=re.M)[1]
    body = re.split(r"^FROM\s", body, flags=re.M)[0]
    cmd = re.findall(r"^CMD (\[.*?\])\s*$", body.replace("\\\n", " "), re.M | re.S)[-1]
    return json.loads(cmd)


def test_commands_are_ones_our_cli_knows(config: dict) -> None:
    """`--no-embedded-worker` was such a flag: argparse exits 2 and the service never starts."""
    services = config["services"]
    for name in ("sidecar-web-1", "sidecar-web-2"):
        cmd = _cmd(services[name]["command"])
        assert cmd[0] == "dicom-fhir", name
        args = cli_parser().parse_args(cmd[1:])
        assert args.no_worker and args.bind == "0.0.0.0:8090", name  # the worker is separate
    assert _cmd(services["worker"]["command"]) == ["dicom-fhir", "worker"]
    cli_parser().parse_args(["worker"])

    text = dockerfile(services["sidecar-web-1"])
    cli_parser().parse_args(_dockerfile_cmd(text, "sidecar")[1:])
    seeder = _dockerfile_cmd(text, "seeder")
    assert seeder[:3] == ["python3", "-m", "sidecar.samples"]
    seed = samples_parser().parse_args(seeder[3:])
    assert seed.command == "seed" and seed.wait
    assert seed.fhir == "http://hapi:8080/fhir" and seed.orthanc == "http://orthanc:8042"


def test_compose_uses_documented_setting_names() -> None:
    documented = set()
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        documented |= set(re.findall(r"SIDECAR_[A-Z_]*(?:<NAME>_[A-Z_]+)?", doc.read_text()))
    # SIDECAR_PORT is compose's host port for the proxy, not a setting of the sidecar
    used = set(re.findall(r"\bSIDECAR_[A-Z_]+", COMPOSE.read_text())) - {"SIDECAR_PORT"}
    unknown = {
        n
        for n in used
        if n not in documented
        and n.replace("SIDECAR_PACS_MAIN_", "SIDECAR_PACS_<NAME>_") not in documented
    }
    assert not unknown


def test_hapi_is_our_build_on_postgresql_with_the_provider(config: dict) -> None:
    hapi = config["services"]["hapi"]
    assert hapi["build"]["target"] == "hapi"
    expected = {
        "SPRING_DATASOURCE_URL": "jdbc:postgresql://postgres:5432/hapi",
        "HAPI_JPA_DIALECT": POSTGRES_DIALECT,
        "HAPI_FHIR_SUBSCRIPTION_RESTHOOK_ENABLED": "true",
        "HAPI_FHIR_CUSTOM_PROVIDER_CLASSES": PROVIDER,
    }
    assert {k: hapi["environment"].get(k) for k in expected} == expected
    text = dockerfile(hapi)
    assert "mvn -B -q -o -f deploy/hapi/pom.xml -DskipTests package" in text  # deploy/hapi
    assert "-Dloader.path=/opt/hapi/extra-classes" in text


def test_orthanc_is_debians_with_the_local_stacks_configuration(config: dict) -> None:
    text = dockerfile(config["services"]["orthanc"])
    assert "orthanc orthanc-dicomweb" in text and "COPY deploy/orthanc/orthanc.json" in text
    template = (ROOT / "deploy" / "orthanc" / "orthanc.json").read_text()
    for setting in ('"DefaultEncoding": "Utf8"', '"QidoCaseSensitive": true'):
        assert setting in template
    assert '"AuthenticationEnabled": true' in template
    overrides = (ROOT / "deploy" / "compose" / "orthanc" / "container.jq").read_text()
    for kept in ("DefaultEncoding", "QidoCaseSensitive", "AuthenticationEnabled", "Plugins"):
        assert kept not in overrides  # the container keeps the template's value


def test_the_official_hapi_image_path(official: dict) -> None:
    """Users of hapiproject/hapi: the jars in /app/extra-classes, the provider named as a custom
    provider, the REST-hook guard's package scanned, REST-hook Subscriptions on, PostgreSQL with
    HAPI's dialect."""
    hapi = official["services"]["hapi"]
    assert hapi["build"]["target"] == "official"
    expected = {
        "hapi.fhir.custom-provider-classes": PROVIDER,
        "hapi.fhir.custom-bean-packages": "org.dicomfhir.hapi.resthook",
        "hapi.fhir.subscription.resthook_enabled": "true",
        "hapi.fhir.fhir_version": "R4",
        "spring.datasource.url": "jdbc:postgresql://postgres:5432/hapi",
        "spring.jpa.properties.hibernate.dialect": POSTGRES_DIALECT,
        "FETCH_IMAGING_RELAY_SECRET": "relay",
    }
    assert {k: hapi["environment"].get(k) for k in expected} == expected
    # SMART tokens: Spring's own name for the interceptors; smart-auth reads SMART_AUTH_* itself
    assert hapi["environment"]["hapi.fhir.custom-interceptor-classes"] == INTERCEPTORS
    assert hapi["environment"]["SMART_AUTH_ISSUER"].endswith(REALM)
    text = dockerfile(hapi)
    assert f"ARG HAPI_OFFICIAL_IMAGE={OFFICIAL_IMAGE}" in text
    official_stage = text.split("AS official", 1)[1]
    assert re.search(r"COPY --from=build \S+/fetch-imaging-provider\.jar", official_stage)
    for jar in ("fetch-imaging-provider", "smart-auth", "rest-hook-guard"):
        assert re.search(rf"\S+/{jar}\.jar\s+\\\n", official_stage), jar
    assert "/app/extra-classes/\n" in official_stage
    # distroless: no healthcheck to wait for, so its dependants wait for it to start
    assert hapi["healthcheck"] == {"test": ["NONE"]}
    for name in ("sidecar-web-1", "sidecar-web-2", "worker"):
        assert official["services"][name]["depends_on"]["hapi"]["condition"] == "service_started"


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".venv", "var", "**/target", ".git", ".env"):
        assert pattern in ignored, pattern
