"""deploy/docker-compose.yml, checked without a Docker engine (none runs here; CI builds the images).

The Compose Specification's JSON schema checks the structure; the tests below check what the
schema cannot: dependencies and healthchecks, secrets, published ports, and that every command a
service of ours runs is a real entry point with options that parse.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest

from forestops.fullstack.compose import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    ROOT,
    MissingVariable,
    generated_env,
    interpolate,
    load_compose,
    own_services,
    read_env_file,
    references,
    service_argv,
)

SCHEMA = ROOT.parent / "shared/schemas/compose-spec.json"

# The original design's services, by our names (ORIGINAL_DESIGN.md, "Servicios incluidos"), and ours.
EXPECTED_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
    "airflow-admin",
    "redis",
    "airflow-db",  # the original's `postgres` (Airflow metadata)
    "app-db",  # the original's `db` (PostgreSQL 16, application data)
    "mlflow",
    "mlflow-migrate",
    "mlflow-users",  # the tracking server's trainer and reader accounts (basic auth)
    "mlflow-db",  # MySQL 8
    "minio",
    "minio-init",  # the original's `minio-create-buckets`
    "app-db-migrate",
    "app-db-roles",  # the UI's and the inference service's least-privilege logins
    "inference",
    "lb",  # nginx in front of every inference replica, with TLS
    "streamlit",  # the UI, under the original's name
    "operations",  # the operator's actions the UI offers (promote, roll back, train now)
    "data-api",
    "prometheus",
    "alertmanager",  # Prometheus' alerts to the webhook (profile monitoring)
    "statsd-exporter",  # Airflow's StatsD metrics for Prometheus
    "grafana",
}
# Published ports per profile (None = always): the UIs and APIs a person opens, nothing else.
PUBLISHED = {
    None: {8080, 5000, 9001, 8000, 8443, 8501},
    "monitoring": {9090, 3000},
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|(?<!ACCESS)_KEYS?$|TOKEN|REDISCLI_AUTH")
URL_PASSWORD = re.compile(r"://[^:/@\s]*:(?P<password>\$\{[^}]*\}|[^@\s/]+)@")
REQUIRED_REFERENCE = re.compile(r"^\$\{[A-Z0-9_]+:\?[^}]*\}$")
# An exact release: x.y.z (PostgreSQL's own releases since 10 are major.minor), or MinIO's dates.
EXACT_TAG = re.compile(
    r"(:v?\d+(\.\d+){2}|^postgres:\d+\.\d+|:RELEASE\.\d{4}(-\d\d){2}T(\d\d-){2}\d\dZ)"
    r"([-.][\w.]+)?$"
)
# A shell here-document (`<<EOF` ... `EOF`): its body reaches the program on standard input.
HERE_DOCUMENT = re.compile(r"<<-?\s*(['\"]?)(\w+)\1[^\n]*\n.*?^\s*\2\s*$", re.DOTALL | re.MULTILINE)
# (service, variable) whose secret is on a command line anyway, and why; each must still occur.
ARGV_SECRET_EXCEPTIONS = {
    ("mlflow-migrate", "MLFLOW_DB_PASSWORD"): "`mlflow db upgrade` takes the URL only as argument",
    ("airflow-admin", "AIRFLOW_ADMIN_PASSWORD"): "FAB's `users create` reads it from --password "
    "or a terminal only, and `users import` sets no password",
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(loaded)
    return loaded


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return generated_env(tmp_path_factory.mktemp("deploy"))


@pytest.fixture(scope="module")
def resolved(compose: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """The compose file as `docker compose config` would see it with a generated deploy/.env."""
    resolved: dict[str, Any] = interpolate(compose, env)
    return resolved


def _conditions(service: dict[str, Any]) -> dict[str, str]:
    depends_on = service.get("depends_on", {})
    assert isinstance(depends_on, dict), "depends_on must name a condition for every dependency"
    return {name: spec["condition"] for name, spec in depends_on.items()}


def _one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


def _walk_strings(value: Any, path: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [item for key, sub in value.items() for item in _walk_strings(sub, f"{path}.{key}")]
    if isinstance(value, list):
        return [item for i, sub in enumerate(value) for item in _walk_strings(sub, f"{path}[{i}]")]
    return [(path, value)] if isinstance(value, str) else []


def _parse_click(group: Any, args: list[str]) -> list[str]:
    """Parse argv down to its leaf command without running it (unknown names/options raise).

    Duck-typed: Typer ships its own copy of click, MLflow uses click itself. Returns the command
    path, e.g. ["db", "upgrade"].
    """
    ctx = group.context_class(group, info_name=group.name)
    command, path = group, []
    while hasattr(command, "get_command"):  # a group: descend into the named sub-command
        name, *args = args
        command = command.get_command(ctx, name)
        assert command is not None, f"unknown command {name!r} after {[group.name, *path]}"
        path.append(name)
        if hasattr(command, "get_command"):
            ctx = command.context_class(command, info_name=name, parent=ctx)
    command.make_context(path[-1], list(args), parent=ctx)
    return path


def test_compose_file_validates_against_the_compose_specification(
    schema: dict[str, Any], compose: dict[str, Any], resolved: dict[str, Any]
) -> None:
    jsonschema.Draft7Validator(schema).validate(compose)
    jsonschema.Draft7Validator(schema).validate(resolved)


def test_the_schema_check_catches_a_malformed_service(
    schema: dict[str, Any], compose: dict[str, Any]
) -> None:
    broken = {**compose, "services": {**compose["services"], "inference": {"helthcheck": {}}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)


def test_every_service_of_the_design_is_there(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == EXPECTED_SERVICES
    profiles = {name: svc.get("profiles") for name, svc in compose["services"].items()}
    assert profiles["data-api"] == ["offline"]
    assert profiles["prometheus"] == profiles["grafana"] == ["monitoring"]


def test_dependencies_exist_and_wait_for_health_or_completion(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for target, condition in _conditions(service).items():
            assert target in services, f"{name} depends on unknown {target}"
            assert not services[target].get("profiles") or services[target].get(
                "profiles"
            ) == service.get("profiles"), f"{name} depends on {target}, which is in a profile"
            if _one_shot(services[target]):
                assert condition == "service_completed_successfully", (name, target)
            else:
                assert condition == "service_healthy", (name, target)
                assert "healthcheck" in services[target], f"{target} has dependants, no healthcheck"


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if _one_shot(service):
            assert "healthcheck" not in service and "ports" not in service, name
            continue
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
        assert service.get("restart") == "unless-stopped", name


def test_every_variable_is_documented_in_env_example(compose: dict[str, Any]) -> None:
    # optional settings are documented commented out (`# NOTIFY_WEBHOOK_URL=https://...`)
    optional = re.findall(r"^# ([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)
    documented = set(read_env_file(ENV_EXAMPLE)) | set(optional)
    used = {m.group("name") for _, text in _walk_strings(compose) for m in references(text)}
    assert used - set(documented) == set(), "undocumented variables"
    assert set(documented) - used - {"COMPOSE_PROFILES"} == set(), "unused variables"


def test_secrets_only_come_from_env_and_must_be_set(compose: dict[str, Any]) -> None:
    """No literal password, key or token anywhere; each one a `${VAR:?}` compose insists on."""
    secret_variables: set[str] = set()

    def check(where: str, value: str) -> None:
        assert REQUIRED_REFERENCE.match(value), f"{where} is not a required ${{VAR:?}}: {value}"
        secret_variables.add(value[2:].split(":", 1)[0])

    for path, text in _walk_strings(compose):
        if ".environment." in path and SECRET_NAME.search(path.rsplit(".", 1)[-1]):
            check(path, text)
        for match in URL_PASSWORD.finditer(text):
            check(f"{path} (URL password)", match.group("password"))
    for name, service in compose["services"].items():
        command = service.get("command", [])
        for option, value in itertools.pairwise(command):
            if option in {"--password", "--requirepass"}:
                check(f"{name} {option}", value)
    # the committed example leaves exactly these empty, and init-env.sh fills them
    example = read_env_file(ENV_EXAMPLE)
    assert {name for name, value in example.items() if value == ""} == secret_variables
    assert all(SECRET_NAME.search(name) for name in secret_variables), secret_variables


def _argv_texts(service: dict[str, Any]) -> list[str]:
    """What a service puts on command lines: entrypoint, command and healthcheck words."""
    texts = []
    for key in ("entrypoint", "command"):
        value = service.get(key) or []
        texts += [value] if isinstance(value, str) else [str(word) for word in value]
    test = service.get("healthcheck", {}).get("test") or []
    texts += [test] if isinstance(test, str) else [str(word) for word in test]
    return texts


def _secrets_on_command_lines(compose: dict[str, Any], env: dict[str, str]) -> set[tuple[str, str]]:
    """(service, secret variable) for each secret a service's argv holds: its value interpolated
    by compose, or a shell reference to a variable holding it outside a here-document (the shell
    would expand it into a program's arguments, as `--password="$$MYSQL_ROOT_PASSWORD"` did)."""
    secrets = {name: env[name] for name, value in read_env_file(ENV_EXAMPLE).items() if not value}
    found = set()
    for name, service in interpolate(compose, env)["services"].items():
        environment = {k: str(v) for k, v in (service.get("environment") or {}).items()}
        for text in _argv_texts(service):
            outside = HERE_DOCUMENT.sub("", text)
            for secret, value in secrets.items():
                holders = {k for k, v in environment.items() if value in v}
                shell = any(re.search(rf"\$\{{?{k}\b", outside) for k in holders)
                if value in text or shell:
                    found.add((name, secret))
    return found


def test_no_secret_is_on_a_command_line(compose: dict[str, Any], env: dict[str, str]) -> None:
    """A process's argv is readable by every user of the host (`ps`, /proc/PID/cmdline); its
    environment only by its owner: secrets go to programs through the environment or stdin."""
    assert _secrets_on_command_lines(compose, env) == set(ARGV_SECRET_EXCEPTIONS)


def test_the_command_line_check_catches_a_password_argument(
    compose: dict[str, Any], env: dict[str, str]
) -> None:
    services = compose["services"]
    redis = {**services["redis"], "command": ["redis-server", "--requirepass", "${REDIS_PASSWORD}"]}
    database = {
        **services["mlflow-db"],
        "healthcheck": {"test": ["CMD-SHELL", 'mysqladmin ping --password="$$MYSQL_PASSWORD"']},
    }
    broken = {**compose, "services": {**services, "redis": redis, "mlflow-db": database}}
    found = _secrets_on_command_lines(broken, env) - set(ARGV_SECRET_EXCEPTIONS)
    assert found == {("redis", "REDIS_PASSWORD"), ("mlflow-db", "MLFLOW_DB_PASSWORD")}


def test_compose_refuses_to_start_without_the_secrets(compose: dict[str, Any]) -> None:
    with pytest.raises(MissingVariable):
        interpolate(compose, read_env_file(ENV_EXAMPLE))


def test_init_env_fills_every_secret_and_never_overwrites(tmp_path: Path) -> None:
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    first, second = generated_env(first_dir), generated_env(second_dir)
    assert all(first.values()), "an empty value survived init-env.sh"
    assert first["APP_DB_PASSWORD"] != second["APP_DB_PASSWORD"], "secrets must be random"
    assert len(base64.urlsafe_b64decode(first["AIRFLOW_FERNET_KEY"])) == 32  # a Fernet key

    before = (first_dir / ".env").read_text()
    again = subprocess.run(
        ["sh", str(ROOT / "deploy/init-env.sh"), str(first_dir / ".env")], capture_output=True
    )
    assert again.returncode != 0
    assert (first_dir / ".env").read_text() == before


def test_only_the_documented_ui_and_api_ports_are_published(resolved: dict[str, Any]) -> None:
    published: dict[str | None, set[int]] = {}
    for name, service in resolved["services"].items():
        profiles = service.get("profiles") or [None]
        for port in service.get("ports", []):
            address, host_port, container_port = str(port).split(":")
            assert address == "127.0.0.1", f"{name}: bind address must default to loopback"
            assert host_port == container_port, name
            published.setdefault(profiles[0], set()).add(int(host_port))
    assert published == PUBLISHED


def test_every_image_is_pinned_or_built_from_our_dockerfiles(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        if "build" in service:
            build = service["build"]
            context = (COMPOSE_FILE.parent / build["context"]).resolve()
            assert context == ROOT, name
            assert (context / build["dockerfile"]).is_file(), name
            assert build["dockerfile"].startswith("deploy/docker/"), name
        else:
            # an exact release (x.y.z, or MinIO's RELEASE.<date>), not a floating `16` or `7.2`
            assert EXACT_TAG.search(service["image"]), f"{name}: {service['image']}"


def test_a_floating_tag_is_not_pinned() -> None:
    for image in ("postgres:16-bookworm", "redis:7.2-bookworm", "mysql:8.4", "mysql:8.4-oracle"):
        assert not EXACT_TAG.search(image), image


def test_our_services_run_forestops_mlflow_or_airflow_entry_points(compose: dict[str, Any]) -> None:
    programs = {name: service_argv(svc)[0] for name, svc in own_services(compose).items()}
    assert set(programs.values()) == {"forestops", "mlflow", "airflow"}, programs


def test_every_forestops_command_parses_and_its_help_runs(resolved: dict[str, Any]) -> None:
    """Each forestops argv in the compose file parses with the real CLI, options included."""
    import typer

    from forestops.cli import app

    group = typer.main.get_command(app)
    commands = {
        name: argv[1:]
        for name, svc in own_services(resolved).items()
        if (argv := service_argv(svc))[0] == "forestops"
    }
    assert set(commands) == {
        "inference",
        "streamlit",
        "operations",
        "data-api",
        "app-db-migrate",
        "app-db-roles",
        "mlflow-users",
    }
    for name, args in commands.items():
        path = _parse_click(group, args)
        result = subprocess.run(
            [str(ROOT / ".venv/bin/forestops"), *path, "--help"], capture_output=True, text=True
        )
        assert result.returncode == 0, f"{name}: forestops {' '.join(path)} --help\n{result.stderr}"


def test_the_mlflow_commands_parse_and_upgrade_the_schema_first(resolved: dict[str, Any]) -> None:
    from mlflow.cli import cli

    services = resolved["services"]
    migrate, server = service_argv(services["mlflow-migrate"]), service_argv(services["mlflow"])
    assert _parse_click(cli, migrate[1:]) == ["db", "upgrade"]
    assert _parse_click(cli, server[1:]) == ["server"]
    assert _conditions(services["mlflow"])["mlflow-migrate"] == "service_completed_successfully"
    # the server reads the URL (with the database password) from its environment, not its argv
    assert "--backend-store-uri" not in server
    assert migrate[3] == services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert server[server.index("--workers") + 1] == "1"
    assert "mlflow:5000" in server[server.index("--allowed-hosts") + 1].split(",")
    assert "--serve-artifacts" in server


def test_a_wrong_option_does_not_parse() -> None:
    """The parse checks above can fail: a misspelt option is rejected."""
    from mlflow.cli import cli

    with pytest.raises(click.UsageError):
        _parse_click(cli, ["server", "--worker", "1"])


def test_the_ui_and_inference_connect_as_their_own_logins(
    resolved: dict[str, Any], env: dict[str, str]
) -> None:
    """Least privilege (issue 17): the UI and the inference service reach the app database as
    the logins `app-db-roles` makes from the same URLs (forestops.store.roles), and neither holds
    the owner's password in any variable."""
    from sqlalchemy.engine import make_url

    services = resolved["services"]
    roles = services["app-db-roles"]["environment"]
    for name, user, setting in (
        ("streamlit", "forestops_ui", "UI_DATABASE_URL"),
        ("inference", "forestops_serving", "INFERENCE_DATABASE_URL"),
    ):
        environment = services[name]["environment"]
        assert make_url(environment["DATABASE_URL"]).username == user, name
        assert roles[setting] == environment["DATABASE_URL"], name
        assert not any(env["APP_DB_PASSWORD"] in str(value) for value in environment.values())
    assert make_url(roles["DATABASE_URL"]).username == "forestops"  # the owner grants
    assert _conditions(services["app-db-roles"]) == {
        "app-db-migrate": "service_completed_successfully"
    }
    assert _conditions(services["inference"])["app-db-roles"] == "service_completed_successfully"


def test_only_the_services_that_reload_or_act_hold_the_admin_key(resolved: dict[str, Any]) -> None:
    """Issue 17: the UI gets the operations API's address, not the admin key (an operator types
    it to sign in); `operations` holds it with the tracking server's write account."""
    services = resolved["services"]
    holders = {
        name for name, svc in services.items() if "ADMIN_API_KEY" in svc.get("environment", {})
    }
    airflow = {name for name in services if name.startswith("airflow-") and name != "airflow-db"}
    assert holders == {"inference", "operations"} | airflow
    ui = services["streamlit"]["environment"]
    assert ui["OPERATIONS_API_URL"] == "http://operations:8090"
    operations = services["operations"]["environment"]
    assert operations["MLFLOW_TRACKING_USERNAME"] == "trainer"
    assert services["operations"]["command"][:1] == ["operations-api"]
