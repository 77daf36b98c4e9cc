"""A bad setting is one line on stderr and exit 2, on every command: the real CLI, in a process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = [
    ["ingest"],
    ["ingest", "--harvest"],
    ["train"],
    ["run"],
    ["data-api"],
    ["data", "fetch"],
    ["db", "upgrade"],
    ["serve"],
    ["monitor"],
    ["up"],
    ["ui"],
]


def forestops(argv: list[str], home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FORESTOPS_", "SOURCE_"))}
    return subprocess.run(
        [sys.executable, "-c", "from forestops.cli import app; app()", *argv],
        env={**clean, "FORESTOPS_HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_group_out_of_range_is_one_line_on_every_command(tmp_path: Path) -> None:
    for argv in COMMANDS:
        done = forestops(argv, tmp_path / "home", GROUP_NUMBER="11")
        assert done.returncode == 2, (argv, done.stderr)
        # `train` imports MLflow first, whose import may print a warning of its own
        said = [line for line in done.stderr.splitlines() if "GROUP_NUMBER" in line]
        assert said == [
            "forestops: bad setting GROUP_NUMBER='11': Input should be less than or equal to 10"
        ], argv
        assert done.stderr.splitlines()[-1] == said[0] and "Traceback" not in done.stderr
        assert done.stdout == ""


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SOURCE_API_BASE_URL", "10.43.101.149:80", "is not an http(s) URL"),
        ("DATABASE_URL", "postgres-data:5432", "not a SQLAlchemy URL"),
        ("SOURCE_TIMEOUT_S", "soon", "SOURCE_TIMEOUT_S='soon': Input should be a valid number"),
        ("DATA_API_FIDELITY", "exact", "Input should be 'default' or 'course'"),
    ],
)
def test_other_bad_settings_are_one_line_too(
    tmp_path: Path, name: str, value: str, says: str
) -> None:
    done = forestops(["ingest"], tmp_path / "home", **{name: value})
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"forestops: bad setting {name}") and says in line


def test_a_database_password_is_not_echoed(tmp_path: Path) -> None:
    secret = "hunter" + "2"  # built here: no literal credential in the tree
    for url in (
        f"postgresql+psycopg//u:{secret}@db/forest",
        f"postgresql://u:{secret}@db:54x2/forest",
    ):
        done = forestops(["ingest"], tmp_path / "home", DATABASE_URL=url)
        assert done.returncode == 2, done.stderr
        assert "not a SQLAlchemy URL" in done.stderr and secret not in done.stderr
