"""Shutdown of a running job tick: real ingestion children against a real, slow data API.

On Ctrl-C a running ingestion first gets the grace period to finish (its batch commits or
nothing does); a second Ctrl-C stops it at once, and the tick says it was interrupted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest
from fastapi import FastAPI, HTTPException

from forestops.orchestration.scheduler import JobRunner, TickResult
from forestops.source import protocol
from forestops.webserver import BackgroundServer


def slow_finished_source(delay_s: float, asked: threading.Event) -> FastAPI:
    """A data API that takes `delay_s` to say every batch was already collected."""
    app = FastAPI()

    @app.get("/data")
    async def data(group_number: int) -> None:
        asked.set()
        await anyio.sleep(delay_s)
        raise HTTPException(400, protocol.all_collected_detail(group_number, 10))

    return app


ASKED = threading.Event()


@pytest.fixture
def slow_source(request: pytest.FixtureRequest) -> Iterator[str]:
    ASKED.clear()
    with BackgroundServer(slow_finished_source(request.param, ASKED)) as server:
        yield server.url


def start_tick(runner: JobRunner) -> list[TickResult | None]:
    """Run one ingestion tick on a thread, as APScheduler does; wait until it is fetching."""
    results: list[TickResult | None] = []
    threading.Thread(target=lambda: results.append(runner.run("ingest")), daemon=True).start()
    until(ASKED.is_set)
    return results


def runner_for(home: Path, source_url: str) -> JobRunner:
    env = {
        "FORESTOPS_HOME": str(home),
        "SOURCE_API_BASE_URL": source_url,
        "SOURCE_RETRIES": "1",
        "SOURCE_TIMEOUT_S": "600",
    }
    return JobRunner(env, logging.INFO)


@pytest.mark.parametrize("slow_source", [3.0], indirect=True)
def test_shutdown_lets_a_running_job_finish(home: Path, slow_source: str) -> None:
    runner = runner_for(home, slow_source)
    results = start_tick(runner)

    runner.stop(grace_s=300, hurry=threading.Event())

    assert runner.run("ingest") is None  # no new tick once stopping
    until(lambda: bool(results))
    result = results[0]
    assert result is not None and result.ok, result
    assert result.status == "all_collected"


@pytest.mark.parametrize("slow_source", [600.0], indirect=True)
def test_a_second_ctrl_c_stops_a_running_job_at_once(home: Path, slow_source: str) -> None:
    runner = runner_for(home, slow_source)
    results = start_tick(runner)
    hurry = threading.Event()
    hurry.set()

    runner.stop(grace_s=300, hurry=hurry)

    until(lambda: bool(results))
    result = results[0]
    assert result is not None and not result.ok
    assert result.message == "interrupted (stopped by SIGTERM) before it finished"


def until(condition: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
