""".github/workflows/ci.yml: it parses, runs the README's test command, and gives the tests the
services they connect to (found in the tests' own sources, so a new service cannot be forgotten)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from forestops.fullstack.compose import load_compose

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github/workflows/ci.yml"
TEST_COMMAND = "make test"  # the README's
# what a test connects to -> (CI service image prefix, port); the URLs as the tests write them
SERVICE_URLS = {
    "postgres": re.compile(r"postgresql://postgres@127\.0\.0\.1:(\d+)"),
    "mariadb": re.compile(r"mysql\+pymysql://root@127\.0\.0\.1:(\d+)|\"port\": (3306)"),
    "redis": re.compile(r"redis://127\.0\.0\.1:(\d+)"),
}


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def _steps(job: dict[str, Any]) -> list[str]:
    return [step.get("run", "") for step in job["steps"]]


def _needed_services() -> dict[str, set[int]]:
    """Service -> ports, from every test source and helper (this file excluded)."""
    needed: dict[str, set[int]] = {}
    for path in (ROOT / "tests").rglob("*.py"):
        if path.resolve() == Path(__file__).resolve():
            continue
        text = path.read_text()
        for service, pattern in SERVICE_URLS.items():
            for match in pattern.finditer(text):
                port = next(group for group in match.groups() if group)
                needed.setdefault(service, set()).add(int(port))
    return needed


def test_it_runs_on_pushes_and_pull_requests(workflow: dict[str, Any]) -> None:
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert {"push", "pull_request"} <= set(triggers)
    assert set(workflow["jobs"]) == {"test", "images"}
    assert all(job.get("timeout-minutes") for job in workflow["jobs"].values())


def test_the_test_job_runs_the_readme_command_on_the_locks_python(
    workflow: dict[str, Any],
) -> None:
    job = workflow["jobs"]["test"]
    assert TEST_COMMAND in _steps(job)
    assert _steps(job)[-1] == TEST_COMMAND
    python = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python"))
    assert python["with"]["python-version"] == "3.11"  # the locks' --python-version
    assert job["env"]["FORESTOPS_DATASET"].endswith("/shared/data/covertype.csv.gz")


def test_the_services_are_the_ones_the_tests_connect_to(workflow: dict[str, Any]) -> None:
    services = workflow["jobs"]["test"]["services"]
    needed = _needed_services()
    assert {"postgres", "mariadb", "redis"} <= set(needed), needed  # the scan itself works
    assert set(services) == set(needed)
    for name, ports in needed.items():
        published = {int(p.split(":")[0]) for p in services[name]["ports"]}
        assert published == ports, name
    assert services["postgres"]["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"  # no password
    assert services["mariadb"]["env"]["MARIADB_ALLOW_EMPTY_ROOT_PASSWORD"] == "1"  # root, ""
    assert all("--health-cmd" in svc["options"] for svc in services.values())


def test_the_browser_test_finds_chromium(workflow: dict[str, Any]) -> None:
    browser_tests = [
        p for p in (ROOT / "tests").rglob("*.py") if "/usr/bin/chromium" in p.read_text()
    ]
    if browser_tests:
        assert any("/usr/bin/chromium" in run for run in _steps(workflow["jobs"]["test"]))


def test_the_images_job_builds_every_image_of_every_profile(workflow: dict[str, Any]) -> None:
    runs = _steps(workflow["jobs"]["images"])
    assert "deploy/init-env.sh" in runs  # compose needs every secret set
    build = next(run for run in runs if run.endswith(" build"))
    profiles = {p for svc in load_compose()["services"].values() for p in svc.get("profiles", [])}
    assert set(re.findall(r"--profile (\S+)", build)) == profiles
    assert "-f deploy/docker-compose.yml" in build
