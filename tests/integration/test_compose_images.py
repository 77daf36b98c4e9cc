"""The images' dependency sets are the tests' own: two locks, no hand-kept lists, and they agree.

The app image installs requirements.lock (the runtime part of it), the Airflow image
requirements-airflow.lock: the same files `make install` and `make airflow-install` install for
the test suite. A model trained in the Airflow image is served by the app image, so every package
the two locks share must have one version (the original design's "numpy.dtype size changed").
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from forestops.fullstack.compose import ROOT, dockerfile_of, load_compose

APP_LOCK = ROOT / "requirements.lock"
AIRFLOW_LOCK = ROOT / "requirements-airflow.lock"
AIRFLOW_INPUT = ROOT / "deploy/airflow/requirements.in"
# what a pickled model needs to load exactly as it was trained (modeling/package.py pins these)
MODEL_PACKAGES = {"mlflow", "scikit-learn", "lightgbm", "pandas", "numpy", "cloudpickle", "scipy"}
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>\S+)")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(text: str) -> dict[str, str]:
    return {
        _canonical(m.group("name")): m.group("version")
        for line in text.splitlines()
        if (m := _PIN.match(line.strip()))
    }


def _dockerfiles() -> dict[Path, list[str]]:
    """Each Dockerfile compose builds, with its instructions (continuation lines joined)."""
    files = {dockerfile_of(svc) for svc in load_compose()["services"].values()} - {None}
    assert len(files) == 2
    return {
        path: re.sub(r"\\\n\s*", " ", path.read_text()).splitlines()
        for path in files
        if path is not None
    }


def _makefile_variable(name: str) -> str:
    match = re.search(rf"^{name} := (.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, name
    return match.group(1).strip()


def test_images_install_only_from_the_two_lock_files() -> None:
    locks_used = set()
    for path, lines in _dockerfiles().items():
        installs = [line for line in lines if re.search(r"\bpip\b", line)]
        assert installs, path
        for line in installs:
            command = line.split("uv pip ", 1)[-1]
            assert "uv pip " in line, f"{path}: only uv installs, from a lock: {line}"
            if command.startswith("install --no-deps ."):
                continue  # forestops itself, its dependencies already installed from the lock
            locks = set(re.findall(r"requirements(?:-airflow)?\.lock", command))
            assert len(locks) == 1, f"{path}: not installed from one lock: {line}"
            if "pyproject.toml" in command:  # the runtime part, pinned by the lock
                assert re.search(r"--constraint requirements\.lock\b", command), line
            locks_used |= locks
    assert locks_used == {"requirements.lock", "requirements-airflow.lock"}


def test_images_use_the_projects_uv_and_python() -> None:
    uv_version = _makefile_variable("UV_VERSION")
    for path, lines in _dockerfiles().items():
        assert f"FROM ghcr.io/astral-sh/uv:{uv_version} AS uv" in lines, path
        assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in lines, path  # the locks' Python


def test_images_run_as_a_non_root_user() -> None:
    for path, lines in _dockerfiles().items():
        final_stage = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
        users = [line.split()[1] for line in final_stage if line.startswith("USER ")]
        assert users and users[-1] not in {"root", "0"}, path
        assert any(line.startswith("ENTRYPOINT [") for line in final_stage), path


def test_the_build_context_holds_what_the_images_copy_and_no_secrets() -> None:
    rules = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert rules[0] == "*", "the context must start empty and name what it lets in"
    included = {line[1:].rstrip("/") for line in rules if line.startswith("!")}
    for path, lines in _dockerfiles().items():
        for line in lines:
            if line.startswith("COPY ") and "--from=" not in line:
                sources = [word for word in line.split()[1:-1] if not word.startswith("--")]
                for source in sources:
                    assert source.rstrip("/") in included, f"{path}: {source} not in the context"
                    assert (ROOT / source).exists(), f"{path}: {source} missing"
    assert not any(name.startswith(("deploy", ".env", ".venv")) for name in included)


def test_shared_packages_have_one_version_in_both_locks() -> None:
    app, airflow = _pins(APP_LOCK.read_text()), _pins(AIRFLOW_LOCK.read_text())
    own_pins = set(_makefile_variable("AIRFLOW_OWN_PINS").split())
    assert set(app) & set(airflow) >= MODEL_PACKAGES
    differing = {name for name in set(app) & set(airflow) if app[name] != airflow[name]}
    assert differing <= own_pins, {name: (app[name], airflow[name]) for name in differing}
    assert not own_pins & MODEL_PACKAGES


def test_the_airflow_lock_is_compiled_from_its_input() -> None:
    airflow = _pins(AIRFLOW_LOCK.read_text())
    requested = [
        re.split(r"[\[<>=~! ]", line.strip(), maxsplit=1)[0]
        for line in AIRFLOW_INPUT.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert requested and all(_canonical(name) in airflow for name in requested)
    assert airflow["apache-airflow"] == "3.3.2"
    assert "make lock-airflow" in AIRFLOW_LOCK.read_text().splitlines()[1]


@pytest.mark.timeout(120)
def test_the_app_image_resolves_to_exactly_the_locked_versions() -> None:
    """The app image's install (pyproject's runtime deps, constrained by the lock) adds nothing new."""
    result = subprocess.run(
        [
            str(ROOT / ".venv/bin/uv"),
            *("pip", "compile", "pyproject.toml", "--constraint", "requirements.lock"),
            *("--python-version", "3.11", "--no-header", "--no-annotate", "--quiet"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    image, lock = _pins(result.stdout), _pins(APP_LOCK.read_text())
    assert {"mlflow", "fastapi", "lightgbm"} <= set(image)
    assert {name: version for name, version in image.items() if lock.get(name) != version} == {}
