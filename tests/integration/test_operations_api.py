"""The operations API over real HTTP on loopback, against a real tracking server (MariaDB + S3
artifacts) and a real PostgreSQL app database: nobody without the admin key moves the champion,
the operator does, and every action lands on the version and in the audit trail.

Versions are logged directly (tiny LightGBM pipelines, signed as training signs) so the alias
tests need no training; the train-now test runs a real one (the CLI's forced training, as the
API's child process).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow.tracking import MlflowClient

from forestops.config import Settings, get_settings
from forestops.modeling.tracking import TAG_ACTION, TAG_ACTION_BY, TAG_ACTION_REASON
from forestops.operations.app import create_app
from forestops.store.audit import recent_actions
from forestops.store.database import get_engine, upgrade
from forestops.webserver import BackgroundServer, free_port
from support.champion import ChampionStore, broken_pipeline, log_candidate, read_rows, tiny_pipeline
from support.forestops_up import wait_http_ok
from support.mlflow_server import MlflowServer, operator_environment
from support.training_data import course_rows, seed_samples

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.mariadb]

ADMIN_KEY = "operator-secret-for-the-operations-tests"
SIGNING_KEY = "operations-tests-signing-key-0123456789abcdef"


@pytest.fixture
def environment(
    home: Path, tracking_server: MlflowServer, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The operations API's settings; a model and experiment name of this test's own."""
    env = operator_environment(
        tracking_server.url,
        "opsapi",
        monkeypatch,
        DATABASE_URL=pg_url,
        ADMIN_API_KEY=ADMIN_KEY,
        MODEL_SIGNING_KEY=SIGNING_KEY,
    )
    upgrade(pg_url)  # the migration job of the full stack
    return env


@pytest.fixture
def two_versions(environment: dict[str, str], dataset_path: Path) -> Settings:
    """v1 and v2 of the test's model, both servable; v2 is the champion."""
    settings = get_settings()
    frame = read_rows(dataset_path, 2000)
    log_candidate(settings, tiny_pipeline(frame), 0.9)
    log_candidate(settings, tiny_pipeline(frame, n_estimators=5), 0.8)
    assert champion(settings) == "2"
    return settings


def champion(settings: Settings) -> str:
    client = MlflowClient(settings.mlflow_tracking_uri)
    return str(client.get_model_version_by_alias(settings.model_name, "champion").version)


def audit(settings: Settings) -> list[dict[str, Any]]:
    return recent_actions(get_engine(settings.database_url), settings.model_name)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


PROMOTE_V1 = {"version": "1", "reason": "v2 misroutes aspen", "actor": "alice"}


def test_only_the_admin_key_moves_the_champion_and_every_action_is_audited(
    two_versions: Settings,
) -> None:
    settings = two_versions
    with BackgroundServer(create_app(settings)) as api, httpx.Client(base_url=api.url) as http:
        anonymous = http.post("/champion/promote", json=PROMOTE_V1)
        assert anonymous.status_code == 401, anonymous.text
        assert "Bearer" in anonymous.json()["detail"]
        wrong = http.post("/champion/promote", json=PROMOTE_V1, headers=bearer("guess"))
        assert wrong.status_code == 403 and wrong.json() == {"detail": "wrong admin key"}
        assert http.post("/champion/rollback", json={"reason": "x"}).status_code == 401
        assert http.post("/training", json={}, headers=bearer("guess")).status_code == 403
        assert http.get("/operator", headers=bearer("guess")).status_code == 403
        assert champion(settings) == "2" and audit(settings) == []  # nothing happened

        assert http.get("/operator", headers=bearer(ADMIN_KEY)).status_code == 204
        promoted = http.post(
            "/champion/promote", json=PROMOTE_V1, headers=bearer(ADMIN_KEY), timeout=120
        )

        assert promoted.status_code == 200, promoted.text
        body = promoted.json()
        assert (body["action"], body["done"], body["from_version"], body["to_version"]) == (
            "promote",
            True,
            "2",
            "1",
        )
        assert champion(settings) == "1"
        tags = (
            MlflowClient(settings.mlflow_tracking_uri)
            .get_model_version(settings.model_name, "1")
            .tags
        )
        assert (tags[TAG_ACTION], tags[TAG_ACTION_BY], tags[TAG_ACTION_REASON]) == (
            "promote",
            "alice",
            "v2 misroutes aspen",
        )

        again = http.post(
            "/champion/promote", json=PROMOTE_V1, headers=bearer(ADMIN_KEY), timeout=120
        )
        assert again.status_code == 409 and "already is the champion" in again.json()["detail"]

        rolled = http.post(
            "/champion/rollback",
            json={"reason": "aspen fixed upstream", "actor": "bob"},
            headers=bearer(ADMIN_KEY),
            timeout=120,
        )
        assert rolled.status_code == 200, rolled.text
        assert champion(settings) == "2"

        listed = http.get("/versions").json()
        assert [(v["version"], v["aliases"]) for v in listed] == [("2", ["champion"]), ("1", [])]
        trail = http.get("/audit").json()
        assert [(row["action"], row["outcome"], row["actor"]) for row in trail] == [
            ("rollback", "done", "bob"),
            ("promote", "refused", "alice"),
            ("promote", "done", "alice"),
        ]
    assert [row["reason"] for row in audit(settings)][-1] == "v2 misroutes aspen"


def test_bad_requests_are_json_4xx_naming_the_field(
    two_versions: Settings, dataset_path: Path
) -> None:
    settings = two_versions
    broken_run, _ = log_candidate(settings, broken_pipeline(), 0.99, champion=False)
    broken = ChampionStore(settings, broken_run, broken_run).register(
        broken_run, settings.model_name, champion=False
    )
    admin = bearer(ADMIN_KEY)
    with BackgroundServer(create_app(settings)) as api, httpx.Client(base_url=api.url) as http:
        refused = http.post(
            "/champion/promote",
            json={"version": broken, "reason": "scores higher"},
            headers=admin,
            timeout=120,
        )
        assert refused.status_code == 409, refused.text
        assert "non-finite probabilities" in refused.json()["detail"]
        assert champion(settings) == "2"

        missing = http.post(
            "/champion/promote", json={"version": "99", "reason": "x"}, headers=admin
        )
        assert missing.status_code == 404
        assert (
            missing.json()["field"] == "version" and "no version '99'" in missing.json()["detail"]
        )

        for body, field in (
            ({"version": "one", "reason": "x"}, "version"),
            ({"version": "1"}, "reason"),
            ({"version": "1", "reason": "   "}, "reason"),
        ):
            invalid = http.post("/champion/promote", json=body, headers=admin)
            assert invalid.status_code == 422, invalid.text
            assert [e["loc"][-1] for e in invalid.json()["detail"]] == [field]
        not_json = http.post(
            "/champion/promote",
            content=b"{",
            headers={**admin, "Content-Type": "application/json"},
        )
        assert not_json.status_code == 422
        assert http.get("/audit", params={"limit": 0}).status_code == 422
    assert champion(settings) == "2"
    assert [(row["to_version"], row["outcome"]) for row in audit(settings)] == [(broken, "refused")]


def test_without_an_admin_key_the_actions_are_disabled_and_say_which_setting(
    two_versions: Settings, tmp_path: Path
) -> None:
    """`forestops operations-api` itself, as a process, with ADMIN_API_KEY unset."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "ADMIN_API_KEY"}
    log = tmp_path / "operations.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("forestops")),
                "operations-api",
                "--port",
                str(port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        health = wait_http_ok(f"{url}/health", timeout=60)
        assert health.json()["actions_enabled"] is False
        for key in ("", ADMIN_KEY):
            answer = httpx.post(
                f"{url}/champion/promote",
                json=PROMOTE_V1,
                headers=bearer(key) if key else {},
                timeout=30,
            )
            assert answer.status_code == 503, answer.text
            assert "ADMIN_API_KEY" in answer.json()["detail"]
        assert [v["version"] for v in httpx.get(f"{url}/versions", timeout=30).json()] == ["2", "1"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(15)
    assert champion(two_versions) == "2" and audit(two_versions) == []


def test_train_now_runs_a_forced_training_in_the_background(
    environment: dict[str, str], dataset_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAIN_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("LOGREG_MAX_ROWS", "100")
    settings = get_settings()
    seed_samples(settings, course_rows(dataset_path, 1500))
    admin = bearer(ADMIN_KEY)
    with BackgroundServer(create_app(settings)) as api, httpx.Client(base_url=api.url) as http:
        assert http.get("/training").json() == {"job": None}
        started = http.post("/training", json={"reason": "new features", "actor": "carol"})
        assert started.status_code == 401
        started = http.post(
            "/training", json={"reason": "new features", "actor": "carol"}, headers=admin
        )
        assert started.status_code == 202, started.text
        assert started.json()["state"] == "running"
        busy = http.post("/training", json={}, headers=admin)
        assert busy.status_code == 409 and "carol" in busy.json()["detail"]

        deadline = time.monotonic() + 300
        while (job := http.get("/training").json()["job"])["state"] == "running":
            assert time.monotonic() < deadline, job
            time.sleep(1)

    assert job["state"] == "done", job
    assert job["result"]["status"] == "trained" and job["result"]["model_version"] == "1"
    assert champion(settings) == "1"  # the first model: the gate promotes it
    [row] = audit(settings)
    assert (row["action"], row["to_version"], row["actor"], row["reason"]) == (
        "train",
        "1",
        "carol",
        "new features",
    )
