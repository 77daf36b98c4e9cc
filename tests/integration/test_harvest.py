"""Harvesting a batch against the real built-in data API on loopback, into SQLite and PostgreSQL.

The data API runs with its defaults (a tenth of the batch per call) over a 3,000-row slice without
repeated rows: 10 batches of exactly 300 distinct rows, so the test knows each batch's true size.
Its sampling is seeded, so every run of a test draws the same samples.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi import Request, Response
from sqlalchemy import select
from typer.testing import CliRunner

from forestops.cli import app as cli
from forestops.config import Settings
from forestops.pipeline.harvest import HarvestResult, harvest_batch
from forestops.source.client import SourceError
from forestops.source.dataset import read_dataset
from forestops.source.server import create_app
from forestops.store.database import get_engine, upgrade
from forestops.store.schema import forest_cover_samples, ingestion_batches
from forestops.webserver import BackgroundServer

pytestmark = pytest.mark.slow

ROWS = 3000
BATCH_ROWS = ROWS // 10


@pytest.fixture(scope="module")
def subset(dataset_path: Path) -> pd.DataFrame:
    frame = read_dataset(dataset_path, nrows=ROWS + 200).drop_duplicates().head(ROWS)
    assert len(frame) == ROWS
    return frame.reset_index(drop=True)


@pytest.fixture
def data_api(subset: pd.DataFrame, tmp_path: Path) -> Iterator[str]:
    """The built-in data API with its defaults and a 60 s window."""
    api = create_app(subset, tmp_path / "state.json", min_update_time=60, seed=7)
    with BackgroundServer(api) as server:
        yield server.url


def harvest_settings(db_url: str, source: str, **overrides: Any) -> Settings:
    defaults: dict[str, Any] = {"min_update_time_s": 60, "harvest_min_interval_s": 0.01}
    return Settings(database_url=db_url, source_api_base_url=source, **{**defaults, **overrides})


def batch_rows(db_url: str) -> list[dict[str, Any]]:
    with get_engine(db_url).connect() as connection:
        query = select(ingestion_batches).order_by(ingestion_batches.c.id)
        return [dict(row) for row in connection.execute(query).mappings()]


def stored_rows(db_url: str) -> set[tuple[str, ...]]:
    columns = [
        c for c in forest_cover_samples.c if c.name not in ("id", "content_hash", "batch_id")
    ]
    with get_engine(db_url).connect() as connection:
        return {tuple(map(str, row)) for row in connection.execute(select(*columns))}


def test_one_run_collects_nearly_all_of_the_batch_and_estimates_its_coverage(
    db_url: str, data_api: str, subset: pd.DataFrame
) -> None:
    result = harvest_batch(harvest_settings(db_url, data_api))

    assert (result.status, result.stop, result.batch_number) == ("harvested", "dried_up", 1)
    stored = stored_rows(db_url)
    every_row = set(map(tuple, subset.astype(str).to_numpy().tolist()))
    assert stored <= every_row and len(stored) == result.distinct_rows == result.inserted
    true_coverage = len(stored) / BATCH_ROWS
    assert true_coverage >= 0.95
    assert result.estimated_coverage is not None
    assert abs(result.estimated_coverage - true_coverage) <= 0.03
    assert abs((result.estimated_batch_size or 0) - BATCH_ROWS) <= 0.03 * BATCH_ROWS
    assert result.received == result.calls * BATCH_ROWS // 10
    assert result.duplicates == result.received - result.inserted

    # one row per call, each with the run's running figures as of that sample
    rows = batch_rows(db_url)
    assert [row["harvest_calls"] for row in rows] == list(range(1, result.calls + 1))
    assert all(row["batch_number"] == 1 and row["status"] == "loaded" for row in rows)
    distinct = [row["distinct_rows"] for row in rows]
    assert distinct == sorted(distinct) and distinct[0] == BATCH_ROWS // 10
    assert rows[0]["estimated_batch_size"] is None  # one sample: nothing seen twice yet
    last = rows[-1]
    assert (last["id"], last["distinct_rows"], last["estimated_batch_size"]) == (
        result.batch_id,
        result.distinct_rows,
        result.estimated_batch_size,
    )
    assert last["estimated_coverage"] == pytest.approx(result.estimated_coverage)


def test_the_run_stops_once_recent_samples_bring_nothing_new(
    home: Path, subset: pd.DataFrame, tmp_path: Path
) -> None:
    """Every call returns the whole batch: after the first, nothing is new, so the run ends as soon
    as HARVEST_WINDOW samples in a row brought nothing, however much budget is left."""
    api = create_app(subset, tmp_path / "state.json", min_update_time=3600, sample_fraction=1)
    with BackgroundServer(api) as server:
        settings = harvest_settings(
            f"sqlite:///{home / 'forestops.db'}",
            server.url,
            harvest_window=3,
            harvest_time_budget_s=3600,
        )
        result = harvest_batch(settings)
    assert (result.stop, result.calls, result.samples) == ("dried_up", 4, 4)
    assert (result.inserted, result.duplicates) == (BATCH_ROWS, 3 * BATCH_ROWS)
    assert (result.distinct_rows, result.estimated_batch_size) == (BATCH_ROWS, BATCH_ROWS)
    assert result.estimated_coverage == 1.0
    assert "0.0% new rows in the last 3 samples (threshold 2%)" in result.summary()


def test_the_run_stops_when_the_batch_number_changes(
    db_url: str, subset: pd.DataFrame, tmp_path: Path
) -> None:
    """A 0.3 s window ends long before the ~40 calls a tenth per call needs to dry up."""
    api = create_app(subset, tmp_path / "state.json", min_update_time=0.3, seed=7)
    with BackgroundServer(api) as server:
        settings = harvest_settings(
            db_url, server.url, harvest_min_interval_s=0.05, harvest_time_budget_s=3600
        )
        result = harvest_batch(settings)
    assert (result.stop, result.batch_number, result.next_batch_number) == ("batch_changed", 1, 2)
    assert result.samples == result.calls - 1 >= 1
    rows = batch_rows(db_url)
    assert [row["batch_number"] for row in rows] == [1] * result.samples + [2]
    # the sample of the next batch is stored too, as the first of its batch
    assert (rows[-1]["harvest_calls"], rows[-1]["distinct_rows"]) == (1, BATCH_ROWS // 10)
    assert result.inserted == len(stored_rows(db_url))


def test_the_time_budget_ends_a_run(home: Path, data_api: str) -> None:
    settings = harvest_settings(
        f"sqlite:///{home / 'forestops.db'}",
        data_api,
        harvest_time_budget_s=0.3,
        harvest_min_interval_s=0.1,
    )
    result = harvest_batch(settings)
    assert result.stop == "time_budget" and result.samples >= 1
    assert result.summary().endswith("stopped: time budget of 0.3 s spent")
    assert batch_rows(settings.database_url)[-1]["harvest_calls"] == result.samples


def test_one_run_at_a_time_per_group(db_url: str, data_api: str) -> None:
    slow = harvest_settings(db_url, data_api, harvest_min_interval_s=0.2, harvest_time_budget_s=3)
    upgrade(db_url)
    first: list[HarvestResult] = []
    running = threading.Thread(target=lambda: first.append(harvest_batch(slow)))
    running.start()
    try:
        deadline = time.monotonic() + 30
        while not batch_rows(db_url) and time.monotonic() < deadline:
            time.sleep(0.05)  # the first run holds the lock once it has stored a sample
        second = harvest_batch(slow)
        other_group = harvest_batch(slow.model_copy(update={"harvest_time_budget_s": 0.1}), 2)
    finally:
        running.join(timeout=60)
    assert (second.status, second.calls) == ("busy", 0)
    assert second.summary() == "harvest of group 1 skipped: another harvest of group 1 is running"
    assert other_group.status == "harvested"
    [done] = first
    assert done.stop == "time_budget"
    again = harvest_batch(slow.model_copy(update={"harvest_time_budget_s": 0.1}))
    assert again.status == "harvested"  # the lock went with the first run


def test_ingest_harvest_command(home: Path, data_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "SOURCE_API_BASE_URL": data_api,
        "MIN_UPDATE_TIME_S": "60",
        "HARVEST_MIN_INTERVAL_S": "0.01",
    }.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    harvested = runner.invoke(cli, ["ingest", "--harvest"])
    assert harvested.exit_code == 0, harvested.output
    [line] = harvested.stdout.splitlines()
    last = batch_rows(Settings().database_url)[-1]
    assert line.startswith(
        f"source batch 1 of group 1 harvested: {last['harvest_calls']} calls in "
    )
    figures = (
        f"; {last['distinct_rows']} distinct rows, estimated batch size "
        f"{last['estimated_batch_size']} (coverage {last['estimated_coverage']:.1%}); stopped: "
    )
    assert figures in line

    both = runner.invoke(cli, ["ingest", "--harvest", "--replay", "1"])
    assert both.exit_code == 2 and "it harvests nothing" in both.output


def test_a_source_failing_mid_run_ends_it_and_keeps_what_was_stored(
    db_url: str, subset: pd.DataFrame, tmp_path: Path
) -> None:
    """Three samples, then the source answers 503 to every call: the client's retries give up,
    the run ends with the error, and the three samples stay stored with their figures."""
    api = create_app(subset, tmp_path / "state.json", min_update_time=60, seed=7)
    served = itertools.count()

    @api.middleware("http")
    async def fail_after_three(request: Request, call_next: Any) -> Response:
        if request.url.path == "/data" and next(served) >= 3:
            return Response("down for maintenance", status_code=503)
        response: Response = await call_next(request)
        return response

    with BackgroundServer(api) as server:
        settings = harvest_settings(db_url, server.url, source_retries=2, source_backoff_max_s=0.01)
        with pytest.raises(SourceError, match="HTTP 503: down for maintenance"):
            harvest_batch(settings)
        rows = batch_rows(db_url)
        assert [row["harvest_calls"] for row in rows] == [1, 2, 3]
        assert rows[-1]["distinct_rows"] == len(stored_rows(db_url))
        with pytest.raises(SourceError):  # the lock went with the failed run: not "busy"
            harvest_batch(settings)
