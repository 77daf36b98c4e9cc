"""Operator actions from the command line against a real tracking server (MariaDB + S3 artifacts),
a real app database and, where the champion moves, a real inference service that must follow.

The service polls nothing here (MODEL_POLL_INTERVAL_S=0): when it answers with the new champion,
the command's POST /reload is what made it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from forestops.cli import app
from forestops.config import Settings, get_settings
from forestops.modeling.tracking import (
    TAG_ACTION,
    TAG_ACTION_AT,
    TAG_ACTION_BY,
    TAG_ACTION_REASON,
    TAG_DECISION,
    TAG_PREVIOUS_CHAMPION,
)
from forestops.serving.app import create_app
from forestops.store.audit import recent_actions
from forestops.store.database import get_engine
from forestops.webserver import BackgroundServer
from support.champion import ChampionStore, broken_pipeline, log_candidate, read_rows, tiny_pipeline
from support.mlflow_server import MlflowServer, operator_environment
from support.training_data import course_rows, seed_samples

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.mariadb]

ADMIN_KEY = "operator-secret"
SIGNING_KEY = "model-ops-tests-signing-key-0123456789abcdef"  # training, CLI and service share it
WEAK = {"TRAIN_CANDIDATES": "logistic_regression", "LOGREG_MAX_ROWS": "100"}
STRONG = {"TRAIN_CANDIDATES": "lightgbm"}


@pytest.fixture
def environment(
    home: Path, tracking_server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """What a person's shell would hold: the stack's addresses, tiny training settings; a model
    and experiment name of this test's own on the shared tracking server."""
    return operator_environment(
        tracking_server.url,
        "ops",
        monkeypatch,
        ADMIN_API_KEY=ADMIN_KEY,
        MODEL_SIGNING_KEY=SIGNING_KEY,
        API_KEYS="client-key",
        MODEL_POLL_INTERVAL_S="0",
    )


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    outcome = CliRunner().invoke(app, list(args), env=env)
    return outcome


def ok(*args: str, env: dict[str, str] | None = None) -> Any:
    outcome = cli(*args, env=env)
    assert outcome.exit_code == 0, outcome.output
    return outcome


def champion(settings: Settings) -> str:
    client = MlflowClient(settings.mlflow_tracking_uri)
    return str(client.get_model_version_by_alias(settings.model_name, "champion").version)


def tags(settings: Settings, version: str) -> dict[str, str]:
    client = MlflowClient(settings.mlflow_tracking_uri)
    return client.get_model_version(settings.model_name, version).tags


def audit(settings: Settings) -> list[dict[str, Any]]:
    return recent_actions(get_engine(settings.database_url), settings.model_name)


def served_version(service: BackgroundServer) -> str:
    record = {
        "elevation": 2596, "aspect": 51, "slope": 3, "horizontal_distance_to_hydrology": 258,
        "vertical_distance_to_hydrology": 0, "horizontal_distance_to_roadways": 510,
        "hillshade_9am": 221, "hillshade_noon": 232, "hillshade_3pm": 148,
        "horizontal_distance_to_fire_points": 6279, "wilderness_area": "Rawah",
        "soil_type": "C7745",
    }  # fmt: skip
    response = httpx.post(
        f"{service.url}/predict", json=record, headers={"X-API-Key": "client-key"}, timeout=30
    )
    assert response.status_code == 200, response.text
    version: str = response.json()["model_version"]
    return version


def test_promote_an_older_version_then_roll_back_and_the_service_follows(
    environment: dict[str, str], dataset_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_url)
    settings = get_settings()
    seed_samples(settings, course_rows(dataset_path, 2500))
    ok("train", env=WEAK)
    seed_samples(settings, course_rows(dataset_path, 500, skip=2500))  # new data for the next job
    ok("train", env=STRONG)
    assert champion(settings) == "2"  # the gate promoted the stronger model

    with BackgroundServer(create_app(settings)) as service:
        monkeypatch.setenv("INFERENCE_API_URL", service.url)
        assert served_version(service) == "2"

        promoted = ok("model", "promote", "1", "--reason", "v2 misroutes aspen", "--by", "alice")

        assert champion(settings) == "1"
        assert served_version(service) == "1"
        metrics = httpx.get(f"{service.url}/metrics", timeout=10).text
        assert re.search(r'^forestops_model_accuracy\{model_version="1"\} 0\.\d+$', metrics, re.M)
        assert "now serves model version 1" in promoted.stdout
        v1 = tags(settings, "1")
        assert (v1[TAG_ACTION], v1[TAG_ACTION_BY], v1[TAG_ACTION_REASON]) == (
            "promote",
            "alice",
            "v2 misroutes aspen",
        )
        assert v1[TAG_PREVIOUS_CHAMPION] == "2" and v1[TAG_ACTION_AT].startswith("20")

        rolled = ok("model", "rollback", "--reason", "aspen fixed upstream", "--json")

        assert champion(settings) == "2"
        assert served_version(service) == "2"
        outcome = json.loads(rolled.stdout)
        assert (outcome["action"], outcome["from_version"], outcome["to_version"]) == (
            "rollback",
            "1",
            "2",
        )
        assert tags(settings, "2")[TAG_ACTION] == "rollback"

    trail = audit(settings)
    assert [
        (row["action"], row["from_version"], row["to_version"], row["outcome"]) for row in trail
    ] == [
        ("rollback", "1", "2", "done"),
        ("promote", "2", "1", "done"),
    ]
    assert trail[1]["actor"] == "alice" and trail[1]["reason"] == "v2 misroutes aspen"
    assert trail[0]["reason"] == "aspen fixed upstream" and "@" in trail[0]["actor"]

    listed = json.loads(ok("model", "list", "--json").stdout)
    assert [(v["version"], v["aliases"], v["decision"]) for v in listed] == [
        ("2", ["champion"], "promoted"),
        ("1", [], "promoted"),
    ]
    assert all(v["accuracy"] > 0.3 and "rows)" in v["evaluation"] for v in listed)
    assert listed[1]["last_action"].startswith("promote by alice at ")


def test_a_version_that_fails_its_smoke_load_leaves_the_champion(
    environment: dict[str, str], dataset_path: Path
) -> None:
    settings = get_settings()
    frame = read_rows(dataset_path, 2000)
    _, good = log_candidate(settings, tiny_pipeline(frame), 0.9)
    broken_run, _ = log_candidate(settings, broken_pipeline(), 0.99, champion=False)
    broken = ChampionStore(settings, broken_run, broken_run).register(
        broken_run, settings.model_name, champion=False
    )

    refused = cli("model", "promote", broken, "--reason", "looks better")

    assert refused.exit_code == 1, refused.output
    assert "non-finite probabilities" in refused.stdout
    assert champion(settings) == good
    assert TAG_ACTION not in tags(settings, broken)
    [row] = audit(settings)
    assert (row["action"], row["from_version"], row["to_version"], row["outcome"]) == (
        "promote",
        good,
        broken,
        "refused",
    )
    missing = cli("model", "promote", "99")
    assert missing.exit_code == 1 and "has no version '99'" in missing.stderr


def test_train_force_trains_without_new_rows(
    environment: dict[str, str], dataset_path: Path
) -> None:
    settings = get_settings()
    seed_samples(settings, course_rows(dataset_path, 1500))
    ok("train", env=WEAK)
    nothing_to_undo = cli("model", "rollback")
    assert nothing_to_undo.exit_code == 1
    assert "has no previous champion on record" in nothing_to_undo.stderr

    skipped = json.loads(ok("train", "--json", env=WEAK).stdout)
    assert skipped["status"] == "skipped" and "nothing new" in skipped["message"]

    forced = json.loads(
        ok("train", "--force", "--reason", "new features", "--by", "bob", "--json", env=WEAK).stdout
    )

    assert (forced["status"], forced["rows"], forced["model_version"]) == ("trained", 1500, "2")
    # Same rows, same seed, same candidate: the new model ties the champion and the gate keeps it.
    assert forced["decision"] == "rejected" and champion(settings) == "1"
    v2 = tags(settings, "2")
    assert (v2[TAG_ACTION], v2[TAG_ACTION_BY], v2[TAG_DECISION]) == ("train", "bob", "rejected")
    [row] = audit(settings)
    assert (row["action"], row["from_version"], row["to_version"], row["outcome"]) == (
        "train",
        "1",
        "2",
        "rejected",
    )
    assert forced["action"]["done"] is False and row["reason"] == "new features"
