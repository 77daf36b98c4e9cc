"""`forestops run`: built-in data API -> every batch ingested -> trained -> champion, in one command.

Runs the real command on a 4,000-row slice of the shared data set (written to the test's temp
folder, never to the repository) with tiny estimators set through the environment.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from forestops.cli import app
from forestops.config import Settings
from forestops.pipeline.status import read_latest_model
from forestops.store.reads import training_frame

pytestmark = pytest.mark.slow

ROWS = 4000


@pytest.fixture
def small_dataset(
    home: Path, dataset_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    path = tmp_path / "slice.csv"
    pd.read_csv(dataset_path, nrows=ROWS).to_csv(path, index=False)
    for key, value in {
        "FORESTOPS_DATASET": str(path),
        "TRAIN_CANDIDATES": "logistic_regression,lightgbm",
        "LOGREG_MAX_ROWS": "1000",
        "LIGHTGBM_MAX_ROUNDS": "30",
        "LIGHTGBM_NUM_LEAVES": "31",
        "TRAIN_N_JOBS": "1",
        "INGEST_HARVEST": "false",  # one call per batch here; tests/integration/test_harvest_run.py
    }.items():
        monkeypatch.setenv(key, value)
    return path


def test_run_ingests_everything_trains_and_promotes(
    small_dataset: Path, settings: Settings
) -> None:
    outcome = CliRunner().invoke(
        app, ["run", "--min-update-time", "0", "--sample-fraction", "1", "--json"]
    )

    assert outcome.exit_code == 0, outcome.output
    result = json.loads(outcome.stdout)
    assert result["ingest"]["all_collected"] is True
    assert (result["ingest"]["batches"], result["ingest"]["inserted"]) == (10, ROWS)
    training = result["training"]
    assert (training["status"], training["rows"]) == ("trained", ROWS)
    assert {c["name"] for c in training["candidates"]} == {"logistic_regression", "lightgbm"}
    assert (training["decision"], training["champion_uri"]) == (
        "promoted",
        "models:/forest-cover/1",
    )
    assert result["source"].startswith("http://127.0.0.1:")
    status = read_latest_model(settings)
    assert status is not None and status["version"] == "1"


def test_run_stops_after_n_batches_and_says_why_it_did_not_train(
    small_dataset: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAIN_MIN_ROWS", str(ROWS))

    outcome = CliRunner().invoke(
        app, ["run", "--batches", "3", "--min-update-time", "0", "--sample-fraction", "1"]
    )

    assert outcome.exit_code == 0, outcome.output
    lines = outcome.stdout.splitlines()
    assert lines[0].startswith("ingested 3 batches from http://127.0.0.1:")
    assert "1,200 inserted" in lines[0] and "3 batches asked" in lines[0]
    assert lines[1] == "training skipped: 1200 curated rows, at least 4000 needed (TRAIN_MIN_ROWS)"
    assert training_frame(settings).lineage.rows == 1200


def test_run_refuses_a_sample_fraction_outside_the_unit_interval(small_dataset: Path) -> None:
    outcome = CliRunner().invoke(app, ["run", "--sample-fraction", "0"])
    assert outcome.exit_code == 2
    assert "(0, 1]" in outcome.output


def test_run_waits_one_batch_window_between_calls(small_dataset: Path, settings: Settings) -> None:
    from forestops.pipeline.oneshot import run_pipeline

    waits: list[float] = []
    settings = settings.model_copy(update={"train_min_rows": ROWS})

    result = run_pipeline(
        settings, batches=2, min_update_time=30, sample_fraction=1, sleep=waits.append
    )

    assert waits == [30]
    # Without really waiting, the window has not passed: the source serves batch 1 again,
    # and every row of it is a duplicate.
    assert (result.ingest.batches, result.ingest.inserted, result.ingest.duplicates) == (
        2,
        400,
        400,
    )
