"""The Airflow side of deploy/docker-compose.yml, checked with the Airflow of requirements-airflow.lock
(the Airflow image's own): every command and healthcheck parses, every setting exists."""

from __future__ import annotations

import importlib
import re
import shlex
from typing import Any

import pytest
from airflow.cli.cli_parser import get_parser
from airflow.configuration import conf

from forestops.fullstack.compose import (
    generated_env,
    interpolate,
    load_compose,
    own_services,
    service_argv,
)

AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-admin",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    resolved = interpolate(load_compose(), generated_env(tmp_path_factory.mktemp("deploy")))
    return {
        name: svc
        for name, svc in own_services(resolved).items()
        if service_argv(svc)[0] == "airflow"
    }


def _parse(argv: list[str]) -> None:
    try:
        get_parser().parse_args(argv)
    except SystemExit as error:  # argparse's way of saying "bad command line"
        pytest.fail(f"airflow {shlex.join(argv)} does not parse ({error})")


def test_every_airflow_component_of_the_design_runs(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == AIRFLOW_SERVICES
    commands = {name: service_argv(svc)[1:] for name, svc in services.items()}
    assert commands["airflow-init"] == ["db", "migrate"]
    assert commands["airflow-scheduler"] == ["scheduler"]
    assert commands["airflow-dag-processor"] == ["dag-processor"]
    assert commands["airflow-triggerer"] == ["triggerer"]
    assert commands["airflow-worker"] == ["celery", "worker"]
    assert commands["airflow-apiserver"][0] == "api-server"


def test_every_airflow_command_parses(services: dict[str, dict[str, Any]]) -> None:
    for svc in services.values():
        _parse(service_argv(svc)[1:])


def test_a_wrong_airflow_option_does_not_parse() -> None:
    with pytest.raises(pytest.fail.Exception):
        _parse(["api-server", "--prot", "8080"])


def test_the_healthchecks_run_real_airflow_and_celery_commands(
    services: dict[str, dict[str, Any]],
) -> None:
    checked = 0
    for svc in services.values():
        if "healthcheck" not in svc:
            continue
        kind, command = svc["healthcheck"]["test"][0], svc["healthcheck"]["test"][1:]
        words = shlex.split(command[0]) if kind == "CMD-SHELL" else command
        words = [word.replace("${HOSTNAME}", "worker-host") for word in words]
        if words[0] == "airflow":
            _parse(words[1:])
            checked += 1
        elif words[0] == "celery":
            module, attribute = words[words.index("--app") + 1].rsplit(".", 1)
            assert hasattr(importlib.import_module(module), attribute)
            checked += 1
    assert checked == 3  # dag-processor, triggerer, worker


def test_every_airflow_setting_exists(services: dict[str, dict[str, Any]]) -> None:
    variables = {
        key
        for svc in services.values()
        for key in svc["environment"]
        if key.startswith("AIRFLOW__")
    }
    assert len(variables) > 10
    described = conf.configuration_description  # Airflow's and its providers' documented options
    for key in variables:
        section, option = re.fullmatch(r"AIRFLOW__(\w+?)__(\w+)", key).groups()  # type: ignore[union-attr]
        assert option.lower() in described.get(section.lower(), {}).get("options", {}), key
