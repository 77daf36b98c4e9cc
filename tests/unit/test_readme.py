"""The README promises commands and settings; these checks keep it true."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from forestops.config import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _settings_table_tool() -> Any:
    spec = importlib.util.spec_from_file_location(
        "settings_table", ROOT / "tools/settings_table.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_configuration_table_is_the_settings() -> None:
    tool = _settings_table_tool()
    table: str = tool.settings_table()
    assert table in README, "regenerate with: .venv/bin/python tools/settings_table.py"
    for name, field in Settings.model_fields.items():
        assert f"`{tool.env_name(name, field)}`" in table


def test_readme_gives_the_two_setup_commands_and_ci_runs_the_test_one() -> None:
    assert "make up" in README and "make test" in README
    ci = (ROOT / ".ci/run").read_text()
    assert "make test" in ci


def test_every_cli_command_in_the_readme_exists() -> None:
    from typer.main import get_command

    from forestops.cli import app

    group = get_command(app)
    commands = set(group.commands)  # type: ignore[attr-defined]
    for command in (
        "up",
        "run",
        "data-api",
        "data",
        "ingest",
        "train",
        "serve",
        "ui",
        "monitor",
        "db",
        "model",
        "backup",
        "restore",
    ):
        assert command in commands
        assert f"forestops {command}" in README
