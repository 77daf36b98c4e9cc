"""Reading deploy/docker-compose.yml the way `docker compose` does, without a Docker engine.

Used by `make fullstack` (which runs the file's services as local processes) and by the compose
tests in both environments (the app's .venv and .venv-airflow): loading with YAML merge keys,
Compose's variable interpolation, and the argv each of our images would run. The paths are the
source checkout's: the harness runs from an editable install of the repository.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
INIT_ENV = DEPLOY / "init-env.sh"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}; `$$` is a literal $.
_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)


class MissingVariable(KeyError):
    """A `${NAME:?message}` whose variable is unset or empty: compose refuses to start."""


def load_compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def references(text: str) -> Iterator[re.Match[str]]:
    """Every `${...}` reference in a string (not `$$`)."""
    for match in _VARIABLE.finditer(text):
        if match.group("name"):
            yield match


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's interpolation, applied to every string of a loaded compose document."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        if name is None:
            return "$"
        current = env.get(name)
        unset_or_empty = not current
        if op in {":?", "?"} and (current is None or (op == ":?" and unset_or_empty)):
            raise MissingVariable(f"{name}: {arg}")
        if op == ":-" and unset_or_empty:
            return arg
        if op == "-" and current is None:
            return arg
        return current or ""

    return _VARIABLE.sub(substitute, value)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (comments and blank lines skipped)."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def generated_env(tmp_dir: Path) -> dict[str, str]:
    """The .env a user gets from `deploy/init-env.sh` (random secrets)."""
    target = tmp_dir / ".env"
    tls = tmp_dir / "tls"  # the self-signed pair it writes too: never into deploy/
    subprocess.run(["sh", str(INIT_ENV), str(target), str(tls)], check=True, capture_output=True)
    return read_env_file(target)


def dockerfile_entrypoint(dockerfile: Path) -> list[str]:
    """The exec-form ENTRYPOINT of a Dockerfile's final stage."""
    entrypoint: list[str] = []
    for line in dockerfile.read_text().splitlines():
        if line.startswith("FROM "):
            entrypoint = []
        elif line.startswith("ENTRYPOINT "):
            entrypoint = json.loads(line.removeprefix("ENTRYPOINT "))
    return entrypoint


def dockerfile_of(service: Mapping[str, Any]) -> Path | None:
    build = service.get("build")
    if build is None:
        return None
    return (DEPLOY / build["context"] / build["dockerfile"]).resolve()


def service_argv(service: Mapping[str, Any]) -> list[str]:
    """What the container runs: the service's entrypoint (or the image's) followed by its command."""
    dockerfile = dockerfile_of(service)
    assert dockerfile is not None, "only our own images have a known entrypoint"
    entrypoint = service.get("entrypoint", dockerfile_entrypoint(dockerfile))
    command = service.get("command", [])
    if isinstance(entrypoint, str):
        entrypoint = shlex.split(entrypoint)
    if isinstance(command, str):
        command = shlex.split(command)
    return [*entrypoint, *command]


def own_services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built from our Dockerfiles, by name."""
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}
