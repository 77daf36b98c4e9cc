"""Harvesting from the course-fidelity data API on loopback: a restart of the server process in the
middle of a harvest, and the scheduled pattern (each batch asked once, after its window).

2,005 rows: B = 200, a sample of 20 rows; every batch of group 1 is a sample of rows 200..399.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from sqlalchemy import select

from forestops.config import Settings
from forestops.pipeline.harvest import HarvestResult, harvest_batch
from forestops.source.course_server import create_course_app
from forestops.source.dataset import read_dataset
from forestops.store.database import get_engine, upgrade
from forestops.store.schema import forest_cover_samples, ingestion_batches
from forestops.webserver import BackgroundServer, free_port
from support.dataset_files import course_csv

pytestmark = pytest.mark.slow

ROWS = 2005
B = ROWS // 10


def batches(db_url: str) -> list[dict[str, Any]]:
    with get_engine(db_url).connect() as connection:
        query = select(ingestion_batches).order_by(ingestion_batches.c.id)
        return [dict(row) for row in connection.execute(query).mappings()]


def stored_count(db_url: str) -> int:
    with get_engine(db_url).connect() as connection:
        return len(connection.execute(select(forest_cover_samples.c.id)).all())


def start_course_api(port: int, home: Path, dataset: Path, log: Path) -> subprocess.Popen[bytes]:
    """`forestops data-api --fidelity course` as its own process, answering once it is up."""
    env = {**os.environ, "FORESTOPS_HOME": str(home), "FORESTOPS_DATASET": str(dataset)}
    argv = ["data-api", "--fidelity", "course", "--port", str(port), "--min-update-time", "3600"]
    process = subprocess.Popen(
        [sys.executable, "-c", "from forestops.cli import app; app()", *argv],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the course data API did not answer within 120 s")


@pytest.fixture
def course_api_files(dataset_path: Path, tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "api-home", course_csv(dataset_path, tmp_path / "course.csv", ROWS)


def test_a_restart_of_the_server_in_the_middle_of_a_harvest_loses_nothing(
    home: Path,
    course_api_files: tuple[Path, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The server process is killed (SIGKILL) after a few samples and started again seconds
    later; the harvest's retries (a 30 s budget here, 120 s by default) carry it across."""
    api_home, dataset = course_api_files
    port, log = free_port(), tmp_path / "data-api.log"
    db_url = f"sqlite:///{home / 'forestops.db'}"
    settings = Settings(
        database_url=db_url,
        source_api_base_url=f"http://127.0.0.1:{port}",
        min_update_time_s=3600,
        harvest_min_interval_s=0.15,
        source_retry_budget_s=30,
        source_backoff_max_s=1,
    )
    upgrade(db_url)
    server = start_course_api(port, api_home, dataset, log)
    outcome: list[HarvestResult | BaseException] = []

    def harvest() -> None:
        try:
            outcome.append(harvest_batch(settings))
        except BaseException as error:  # reported by the assertions below
            outcome.append(error)

    running = threading.Thread(target=harvest)
    try:
        with caplog.at_level(logging.WARNING, logger="forestops.source.client"):
            running.start()
            deadline = time.monotonic() + 60
            while stored_count(db_url) < 5 * (B // 10) and time.monotonic() < deadline:
                time.sleep(0.05)
            server.send_signal(signal.SIGKILL)
            server.wait(10)
            killed_at = len(batches(db_url))
            time.sleep(4)  # the source is down: the harvest retries meanwhile
            server = start_course_api(port, api_home, dataset, log)
            running.join(120)
    finally:
        server.terminate()
        server.wait(30)
    [result] = outcome
    assert isinstance(result, HarvestResult), result
    assert (result.status, result.stop, result.batch_number) == ("harvested", "dried_up", 1)
    rows = batches(db_url)
    assert len(rows) > killed_at  # it went on after the restart
    assert {row["status"] for row in rows} == {"loaded"}  # nothing failed
    assert [row["harvest_calls"] for row in rows] == list(range(1, len(rows) + 1))
    assert {row["batch_number"] for row in rows} == {1}  # the state file carried the counter
    assert stored_count(db_url) == result.distinct_rows == result.inserted
    slice_1 = read_dataset(dataset).iloc[B : 2 * B]
    assert result.distinct_rows <= len(slice_1.drop_duplicates())
    retried = [r.getMessage() for r in caplog.records if "next in" in r.getMessage()]
    assert retried, "the outage was not retried"
    assert any("ConnectError" in line for line in retried)


@pytest.fixture
def course_api(dataset_path: Path, tmp_path: Path) -> Iterator[str]:
    """In process, on the wall clock, with a 4 s window."""
    frame: pd.DataFrame = read_dataset(dataset_path, nrows=ROWS)
    app = create_course_app(frame, tmp_path / "timestamps.json", min_update_time=4, seed=5)
    with BackgroundServer(app) as server:
        yield server.url


def test_each_batch_is_asked_once_after_its_window_and_a_seen_slice_costs_one_call(
    home: Path, course_api: str, caplog: pytest.LogCaptureFixture
) -> None:
    db_url = f"sqlite:///{home / 'forestops.db'}"
    settings = Settings(
        database_url=db_url,
        source_api_base_url=course_api,
        min_update_time_s=4,
        harvest_min_interval_s=0.01,
        harvest_time_budget_s=60,
    )
    first = harvest_batch(settings)
    assert (first.stop, first.batch_number) == ("dried_up", 1)
    asked_of_batch_1 = len(batches(db_url))

    # Right away, as a tick landing just before the source moves on: it waits for the window
    # instead of asking batch 1 again, gets batch 2 and sees its rows were collected already.
    second = harvest_batch(settings)
    assert len(batches(db_url)) == asked_of_batch_1 + 1
    assert (second.stop, second.batch_number, second.calls) == ("seen_before", 2, 1)
    assert second.inserted < 0.02 * second.received
    assert "collected before" in second.summary()

    # A tick whose budget cannot cover the wait makes no call at all.
    early = harvest_batch(settings.model_copy(update={"harvest_time_budget_s": 1}))
    assert (early.status, early.calls) == ("not_due", 0)
    assert early.summary().startswith("harvest of group 1 skipped: source batch 2 is collected")
    assert len(batches(db_url)) == asked_of_batch_1 + 1

    # The course's counter starts over (a restart without its state file does the same).
    httpx.get(f"{course_api}/restart_data_generation", params={"group_number": 1})
    with caplog.at_level(logging.WARNING, logger="forestops.pipeline.ingest"):
        again = harvest_batch(settings)
    assert (again.stop, again.batch_number) == ("seen_before", 1)
    assert any("went back from 2 to 1" in r.getMessage() for r in caplog.records)
