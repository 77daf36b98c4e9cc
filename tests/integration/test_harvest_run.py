"""`forestops run` harvesting: the data API's defaults (a tenth per call) and a short window still
collect nearly every row, where one call per window would collect a tenth.

A 4,000-row slice of the shared data set (written to the test's temp folder) and one tiny
candidate keep it short; the window (4 s) is what the run waits for between batches, three of
which are harvested.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forestops.cli import app
from forestops.config import Settings
from forestops.store.database import get_engine
from forestops.store.reads import training_frame
from support.dataset_files import course_csv

pytestmark = pytest.mark.slow

ROWS = 4000


@pytest.fixture
def small_dataset(
    home: Path, dataset_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    path = course_csv(dataset_path, tmp_path / "slice.csv", ROWS)
    monkeypatch.setenv("FORESTOPS_DATASET", str(path))
    monkeypatch.setenv("TRAIN_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("LOGREG_MAX_ROWS", "1000")
    return path


def test_run_harvests_every_batch_within_its_window(
    small_dataset: Path, settings: Settings
) -> None:
    outcome = CliRunner().invoke(app, ["run", "--min-update-time", "4", "--batches", "3", "--json"])

    assert outcome.exit_code == 0, outcome.output
    result = json.loads(outcome.stdout)
    ingest = result["ingest"]
    assert (ingest["all_collected"], ingest["batches"]) == (False, 3)
    stored = training_frame(settings).lineage.rows
    assert stored == ingest["inserted"] >= 0.95 * 3 * ROWS // 10
    assert sorted(map(int, ingest["coverage"])) == [1, 2, 3]
    assert all(share >= 0.9 for share in ingest["coverage"].values())
    assert result["training"]["status"] == "trained"
    assert result["training"]["decision"] == "promoted"
    with get_engine(settings.database_url).connect() as connection:
        calls = connection.exec_driver_sql(
            "SELECT count(*) FROM ingestion_batches WHERE harvest_calls IS NOT NULL"
        ).scalar_one()
    assert calls == ingest["received"] // (ROWS // 100)  # every call a harvest sample
