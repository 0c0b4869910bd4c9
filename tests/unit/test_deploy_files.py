"""The deployment files agree with the code: compose.yaml, the Dockerfile, the docs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from chatrt.settings import variable_names

ROOT = Path(__file__).parents[2]
APP_SERVICES = ("chatrt-1", "chatrt-2")
NAME = re.compile(r"\bCHATRT_[A-Z0-9_]+\b")


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return compose


def test_variable_names_cover_the_settings_source_and_the_configuration_docs() -> None:
    names = set(variable_names())
    in_source = set(
        re.findall(r'"(CHATRT_[A-Z0-9_]+)"', (ROOT / "src/chatrt/settings.py").read_text())
    )
    documented = set(
        re.findall(r"^\| `(CHATRT_[A-Z0-9_]+)`", (ROOT / "docs/configuration.md").read_text(), re.M)
    )
    assert {"CHATRT_DATABASE_URL", "CHATRT_REDIS_URL", "CHATRT_SECRET_KEY"} <= names
    assert names == in_source, "a variable is read conditionally, or not at all"
    assert names == documented, "every variable has a row in docs/configuration.md"


def test_compose_names_only_variables_chatrt_reads() -> None:
    named = set(NAME.findall((ROOT / "compose.yaml").read_text()))
    assert named
    assert named <= set(variable_names())


def test_compose_app_services_have_what_several_instances_need() -> None:
    services = _compose()["services"]
    for name in (*APP_SERVICES, "migrate"):
        environment = services[name]["environment"]
        for variable in ("CHATRT_DATABASE_URL", "CHATRT_REDIS_URL", "CHATRT_SECRET_KEY"):
            assert environment.get(variable), f"{name} lacks {variable}"
        assert environment["CHATRT_DATABASE_URL"].startswith("postgresql://")
        # Secrets are interpolated from the environment or .env, never written here.
        assert environment["CHATRT_SECRET_KEY"].startswith("${CHATRT_SECRET_KEY")
        assert "${POSTGRES_PASSWORD" in environment["CHATRT_DATABASE_URL"]
    for name in APP_SERVICES:
        service = services[name]
        assert service["image"] == services["migrate"]["image"]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "healthcheck" in service


def test_compose_runs_migrations_once_before_the_instances() -> None:
    migrate = _compose()["services"]["migrate"]
    assert migrate["command"] == ["chatrt", "migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_redis_keeps_its_data_and_never_evicts() -> None:
    services = _compose()["services"]
    command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert services["redis"]["volumes"]
    assert any(v.startswith("pgdata:") for v in services["postgres"]["volumes"])
    assert "pgdata" in _compose()["volumes"]
    for name, service in services.items():
        if name != "migrate":
            assert "healthcheck" in service, f"{name} has no healthcheck"


def test_compose_nginx_fronts_both_instances_with_the_project_template() -> None:
    nginx = _compose()["services"]["nginx"]
    upstreams = {v for k, v in nginx["environment"].items() if k.startswith("NGINX_UPSTREAM_")}
    assert upstreams == {f"{name}:8000" for name in APP_SERVICES}
    source = nginx["volumes"][0].split(":")[0]
    assert (ROOT / source).is_file()
    assert source.endswith(".template")


def test_dockerfile_runs_as_non_root_with_a_healthcheck_and_no_secrets() -> None:
    # One line per instruction, continuation lines joined.
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(stages) == 2
    assert all(s.startswith("python:3.11") for s in stages)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*CMD .*/health/live", text, re.M)
    assert re.search(
        r'^CMD \["chatrt", "serve", "--host", "0.0.0.0", "--port", "8000"\]', text, re.M
    )
    for line in re.findall(r"^(?:ENV|ARG)\s.*$", text, re.M):
        assert not re.search(r"SECRET|PASSWORD|API_KEY|CHATRT_", line), line
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".git", ".venv"} <= set(ignored)
