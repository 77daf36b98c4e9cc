"""`forestops up` end to end, as a user runs it: one command, a champion served, SIGTERM stops all.

A real subprocess on free ports with a 3,000-row slice of the shared data and a 10-round
LightGBM, so the whole loop (data API -> ingestion -> training -> registry -> reload -> predict,
plus the MLflow UI and the web UI) runs in well under a minute.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pandas as pd
import pytest

from forestops import contract
from support.forestops_up import UpProcess, tiny_stack_env, wait_http_ok, write_subset

pytestmark = pytest.mark.slow


def one_unseen_record(dataset: Path) -> dict[str, object]:
    """A real row that is not in the slice the stack trains on."""
    frame = pd.read_csv(dataset, skiprows=range(1, 5000), nrows=1)
    record: dict[str, object] = json.loads(frame.drop(columns="Cover_Type").iloc[0].to_json())
    return record


def test_up_serves_a_champion_and_stops_cleanly_on_sigterm(
    home: Path, dataset_path: Path, tmp_path: Path
) -> None:
    subset = write_subset(dataset_path, tmp_path / "subset.csv", rows=3000)
    # Polling off: the new champion can only reach the service through up's POST /reload.
    # One ingestion tick is enough (300 rows >= TRAIN_MIN_ROWS): no second one competes for CPU.
    env = tiny_stack_env(
        subset, MODEL_POLL_INTERVAL_S="0", INGEST_INTERVAL_S="600", ADMIN_API_KEY="op-key"
    )
    with UpProcess(env, tmp_path) as up:
        data_api, inference = up.url("DATA_API_PORT"), up.url("INFERENCE_PORT")
        mlflow, web_ui = up.url("MLFLOW_PORT"), up.url("UI_PORT")
        operations = up.url("OPERATIONS_PORT")
        # The banner is one write, but it reaches `up.lines` line by line: wait for its last line.
        up.wait_for(r"^  jobs +ingest every", timeout=120)
        banner = "\n".join(up.lines)
        for url in (data_api, f"{inference}/docs", mlflow, web_ui, f"{operations}/docs"):
            assert url in banner

        up.wait_for(r"forestops\.scheduler: ingest \w+ \([\d.]+ s\): .* 300 inserted", timeout=120)
        up.wait_for(r"forestops\.scheduler: train trained \([\d.]+ s\): trained on", timeout=180)
        up.wait_for(r"inference now serves model version 1", timeout=60)

        health = httpx.get(f"{inference}/health", timeout=10)
        assert health.status_code == 200 and health.json()["model_version"] == "1"
        answer = httpx.post(
            f"{inference}/predict", json=one_unseen_record(dataset_path), timeout=30
        )
        assert answer.status_code == 200, answer.text
        prediction = answer.json()["predictions"][0]
        assert prediction["cover_type_name"] == contract.CLASS_NAMES[prediction["cover_type"]]

        # The MLflow UI reads the same store the training wrote to.
        wait_http_ok(f"{mlflow}/health", timeout=60)
        model = httpx.get(
            f"{mlflow}/api/2.0/mlflow/registered-models/get",
            params={"name": "forest-cover"},
            timeout=30,
        )
        assert model.status_code == 200, model.text
        wait_http_ok(f"{web_ui}/_stcore/health", timeout=60)
        # The UI's operator actions go through the operations API, which up serves on loopback.
        listed = httpx.get(f"{operations}/versions", timeout=30).json()
        assert [(v["version"], v["aliases"]) for v in listed] == [("1", ["champion"])]
        promote = {"version": "1", "reason": "check"}
        assert httpx.post(f"{operations}/champion/promote", json=promote).status_code == 401
        same = httpx.post(
            f"{operations}/champion/promote",
            json=promote,
            headers={"Authorization": "Bearer op-key"},
            timeout=60,
        )
        assert same.status_code == 409 and "already is the champion" in same.json()["detail"]

        assert up.tree.matching("forestops.orchestration.jobs ingest")
        assert up.tree.matching("mlflow")
        assert up.tree.matching("streamlit")

        assert up.interrupt(signal.SIGTERM, timeout=30) == 0
        up.tree.__exit__()
        assert up.tree.survivors() == []
        assert any("forestops.up: stopped" in line for line in up.lines)
