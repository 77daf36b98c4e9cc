"""Shutdown of running job ticks: real ingestion children against real, slow data APIs.

On Ctrl-C a running ingestion first gets the grace period to finish (its batch commits or
nothing does); a second Ctrl-C stops it at once, and its tick says it was interrupted. Both
cases run side by side in one test: each child costs seconds of imports.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import anyio
import pytest
from apscheduler.schedulers.base import STATE_STOPPED
from fastapi import FastAPI, HTTPException

from forestops.config import Settings
from forestops.orchestration.scheduler import EmbeddedScheduler, JobRunner, TickResult
from forestops.source import protocol
from forestops.webserver import BackgroundServer

pytestmark = pytest.mark.slow


class SlowFinishedSource:
    """A data API that takes `delay_s` to say every batch was already collected."""

    def __init__(self, delay_s: float) -> None:
        self.asked = threading.Event()
        self.app = FastAPI()

        @self.app.get("/data")
        async def data(group_number: int) -> None:
            self.asked.set()
            await anyio.sleep(delay_s)
            raise HTTPException(400, protocol.all_collected_detail(group_number, 10))


class Tick:
    """One ingestion tick on its own thread, as APScheduler runs it."""

    def __init__(self, home: Path, source_url: str) -> None:
        env = {
            "FORESTOPS_HOME": str(home),
            "SOURCE_API_BASE_URL": source_url,
            "SOURCE_RETRIES": "1",
            "SOURCE_TIMEOUT_S": "600",
        }
        self.runner = JobRunner(env, logging.INFO)
        self.results: list[TickResult | None] = []
        target = lambda: self.results.append(self.runner.run("ingest"))  # noqa: E731
        threading.Thread(target=target, daemon=True).start()

    def result(self) -> TickResult | None:
        until(lambda: bool(self.results))
        return self.results[0]


def until(condition: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.mark.usefixtures("home")
def test_shutdown_waits_for_a_running_job_unless_hurried(tmp_path: Path) -> None:
    # Were the second Ctrl-C ignored, the stuck tick would outlast pytest's timeout.
    quick, stuck = SlowFinishedSource(delay_s=3), SlowFinishedSource(delay_s=7200)
    with ExitStack() as stack:
        quick_url = stack.enter_context(BackgroundServer(quick.app)).url
        stuck_url = stack.enter_context(BackgroundServer(stuck.app)).url
        patient = Tick(tmp_path / "patient", quick_url)
        hurried = Tick(tmp_path / "hurried", stuck_url)
        until(lambda: quick.asked.is_set() and stuck.asked.is_set())  # both are fetching

        patient.runner.stop(grace_s=300, hurry=threading.Event())
        second_ctrl_c = threading.Event()
        second_ctrl_c.set()
        hurried.runner.stop(grace_s=3600, hurry=second_ctrl_c)

        finished = patient.result()
        assert finished is not None and finished.ok, finished
        assert finished.status == "all_collected"
        assert patient.runner.run("ingest") is None  # no new tick once stopping

        interrupted = hurried.result()
        assert interrupted is not None and not interrupted.ok
        assert interrupted.message == "interrupted (stopped by SIGTERM) before it finished"


@pytest.mark.usefixtures("home")
def test_a_tick_ending_during_shutdown_does_not_deadlock_the_scheduler(tmp_path: Path) -> None:
    """APScheduler's shutdown holds its job-store lock while it waits for running jobs: a tick
    that reports (next tick time) or reschedules after that point must not ask for it."""
    source = SlowFinishedSource(delay_s=7200)
    with BackgroundServer(source.app) as api:
        settings = Settings(ingest_interval_s=3600, train_interval_s=3600)
        runner = JobRunner({"SOURCE_API_BASE_URL": api.url, "SOURCE_RETRIES": "1"}, logging.INFO)
        scheduler = EmbeddedScheduler(settings, runner, lambda: False, lambda: None)
        scheduler.start()  # the first ingestion tick starts now
        until(source.asked.is_set)

        scheduler.pause()
        shutdown = threading.Thread(target=scheduler.shutdown, daemon=True)
        shutdown.start()
        # Stopped state is set right before it takes the lock and waits for the tick.
        until(lambda: scheduler._scheduler.state == STATE_STOPPED)
        hurry = threading.Event()
        hurry.set()
        runner.stop(grace_s=3600, hurry=hurry)  # the tick ends and reports

        shutdown.join(60)
        assert not shutdown.is_alive()
