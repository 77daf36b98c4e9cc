"""From deploy/docker-compose.yml to local processes: commands, environment, order, health.

Every service the harness runs is taken from the compose file as `docker compose` would resolve
it (profiles, interpolation from the .env, the image's entry point followed by `command`), then
mapped onto this host: each `host:port` of a compose service becomes a loopback port of its own
(a URL to a scaled service becomes one URL per replica, comma-separated), `--host 0.0.0.0`
becomes loopback, databases and S3 become the run's local stand-ins (`backing`), and the
image's `ENV` and volumes become folders of the run (`local`). So the file and the harness
cannot drift: a changed command, variable or dependency in the file is what runs here.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forestops.fullstack import local
from forestops.fullstack.backing import URL, Backing
from forestops.fullstack.compose import DEPLOY, service_argv
from forestops.webserver import free_port

_HOST_PORT = re.compile(r"\b(?P<host>[a-z][\w-]*):(?P<port>\d{2,5})\b")
_HEALTH_URL = re.compile(r"https?://(?:localhost|127\.0\.0\.1):(?P<port>\d+)(?P<path>/[^\s'\"]*)")


class UnknownImage(ValueError):
    """A compose service whose image no local program stands in for: guessing one (this used to
    run nginx for any such image) would start the wrong program and fail far from the cause."""


@dataclass
class Process:
    name: str  # the compose service, with `-N` for replicas of a scaled one
    service: str
    argv: list[str]
    env: dict[str, str]
    one_shot: bool
    depends_on: dict[str, str]  # compose service -> condition
    health_url: str | None = None  # polled until it answers one of `healthy_statuses`
    healthy_statuses: frozenset[int] = frozenset(range(200, 400))
    health_command: list[str] | None = None  # a CLI healthcheck (Airflow jobs, Celery ping)
    ports: dict[int, int] = field(default_factory=dict)  # container port -> local port
    cwd: Path | None = None  # the image's WORKDIR


@dataclass
class Plan:
    processes: list[Process]
    ports: dict[str, list[dict[int, int]]]  # service -> one port map per replica


def services_to_run(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The services `docker compose up` would start with local.PROFILES, minus the replaced ones."""
    replaced = (
        local.POSTGRES_SERVICES
        | local.MARIADB_SERVICES
        | local.REDIS_SERVICES
        | local.S3_SERVICES
        | local.REPLACED_JOBS
        | set(local.NOT_RUN)
    )
    return {
        name: service
        for name, service in compose["services"].items()
        if name not in replaced
        and (not service.get("profiles") or set(service["profiles"]) & local.PROFILES)
    }


def build(compose: Mapping[str, Any], backing: Backing, run_dir: Path) -> Plan:
    services = services_to_run(compose)
    ports: dict[str, list[dict[int, int]]] = {
        name: [
            {port: free_port() for port in _container_ports(service)}
            for _ in range(_replicas(name))
        ]
        for name, service in services.items()
    }
    mapper = _Mapper(backing, ports)
    processes: list[Process] = []
    for name, service in services.items():
        for replica, replica_ports in enumerate(ports[name], start=1):
            label = name if _replicas(name) == 1 else f"{name}-{replica}"
            processes.append(
                _process(label, name, service, replica_ports, mapper, run_dir / label, run_dir)
            )
    return Plan(processes, ports)


def _replicas(service: str) -> int:
    return local.INFERENCE_REPLICAS if service == "inference" else 1


def _container_ports(service: Mapping[str, Any]) -> set[int]:
    """Ports the container listens on: `--port`, `ports`/`expose`, and its healthcheck's URL."""
    found: set[int] = set()
    command = service.get("command") or []
    if isinstance(command, list) and "--port" in command:
        found.add(int(command[command.index("--port") + 1]))
    for entry in service.get("ports", []):
        found.add(int(str(entry).rsplit(":", 1)[-1]))
    found |= {int(port) for port in service.get("expose", [])}
    health = " ".join(service.get("healthcheck", {}).get("test", []))
    found |= {int(m["port"]) for m in _HEALTH_URL.finditer(health)}
    return found


class _Mapper:
    """Rewrites strings of the compose file from the compose network to this host."""

    def __init__(self, backing: Backing, ports: dict[str, list[dict[int, int]]]) -> None:
        self.backing = backing
        self.ports = ports

    def __call__(self, text: str) -> str:
        text = URL.sub(self._url, text)
        return _HOST_PORT.sub(self._host_port, text)

    def _url(self, match: re.Match[str]) -> str:
        host, port = match["host"], int(match["port"])
        if self.backing.replaces(host):
            return self.backing.rewrite(match)
        if host not in self.ports:
            return match[0]
        rest = match["path"] or ""
        return ",".join(
            f"{match['scheme']}://127.0.0.1:{replica[port]}{rest}" for replica in self.ports[host]
        )

    def _host_port(self, match: re.Match[str]) -> str:
        host, port = match["host"], int(match["port"])
        replicas = self.ports.get(host)
        if not replicas or port not in replicas[0]:
            return match[0]
        return f"127.0.0.1:{replicas[0][port]}"


def _process(
    label: str,
    name: str,
    service: Mapping[str, Any],
    ports: dict[int, int],
    mapper: _Mapper,
    home: Path,
    run_dir: Path,
) -> Process:
    image = str(service.get("image", "")).split(":")[0]
    files = _bind_mounts(service)
    env = {
        key: files.get(str(value), mapper(str(value)))
        for key, value in (service.get("environment") or {}).items()
    }
    for switched_off in local.NOT_RUN.values():
        env |= {key: value for key, value in switched_off.items() if key in env}
    depends = {dep: spec.get("condition", "service_started") for dep, spec in _depends(service)}
    one_shot = service.get("restart") == "no"
    if image in local.IMAGE_BIN:
        argv = [mapper(word) for word in service_argv(service)]
        argv = _local_listen(argv, ports)
        argv[0] = str(local.IMAGE_BIN[image] / argv[0])
        env = {**local.image_env(image, home, run_dir / "airflow"), **env}
        cwd = Path(env.get("AIRFLOW_HOME", str(home)))
        if image == "forestops/airflow":
            env |= {
                key: str(ports.get(port) or free_port())
                for key, port in local.AIRFLOW_INTERNAL_PORTS.items()
            }
    elif image == local.NGINX_IMAGE:  # the load balancer, with the file's template (see runner)
        argv = [local.NGINX, "-p", str(home), "-c", str(home / "nginx.conf")]
        cwd = home
    else:
        raise UnknownImage(
            f"compose service {name!r} runs image {image!r}, for which make fullstack has no "
            "local program: map it in forestops.fullstack.local (IMAGE_BIN, NGINX_IMAGE) or list "
            "the service among those replaced or not run there"
        )
    process = Process(label, name, argv, env, one_shot, depends, ports=ports, cwd=cwd)
    _health(process, service)
    return process


def _bind_mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """Container path -> path in the checkout, for each file or folder mounted from deploy/."""
    mounts: dict[str, str] = {}
    for volume in service.get("volumes", []):
        source, _, target = str(volume).partition(":")
        if source.startswith((".", "/")):
            mounts[target.split(":")[0]] = str((DEPLOY / source).resolve())
    return mounts


def _depends(service: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return [(dep, {}) for dep in depends]
    return list(depends.items())


def _local_listen(argv: list[str], ports: dict[int, int]) -> list[str]:
    """`--host 0.0.0.0` -> loopback, `--port N` -> this replica's local port."""
    argv = list(argv)
    for flag, value in (("--host", "0.0.0.0"), ("-H", "0.0.0.0")):
        if flag in argv and argv[argv.index(flag) + 1] == value:
            argv[argv.index(flag) + 1] = "127.0.0.1"
    if "--port" in argv:
        at = argv.index("--port") + 1
        argv[at] = str(ports[int(argv[at])])
    return argv


def _health(process: Process, service: Mapping[str, Any]) -> None:
    """The compose healthcheck, as a URL to poll or a command to run on this host."""
    test = service.get("healthcheck", {}).get("test") or []
    if not test:
        return
    text = " ".join(test[1:])
    url = _HEALTH_URL.search(text)
    if url:
        process.health_url = f"http://127.0.0.1:{process.ports[int(url['port'])]}{url['path']}"
        if "503" in text:  # "up and answering": 503 is a service without a champion yet
            process.healthy_statuses = frozenset({200, 503})
        return
    if test[0] == "CMD-SHELL" and process.argv[0].endswith("/airflow"):
        command = shlex.split(text)
        program = Path(process.argv[0]).with_name(command[0])
        process.health_command = [str(program), *command[1:]]
