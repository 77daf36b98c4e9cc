"""The embedded scheduler runs the monitor on its interval and retrains at once on an alert.

The job runner is replaced by one that records which jobs ran and answers a monitor alert:
what is tested is the scheduling decision; the real jobs have their own tests (the monitor job
in test_monitoring.py, child-process ticks in test_up_jobs.py).
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from forestops.config import Settings
from forestops.orchestration.scheduler import EmbeddedScheduler, JobRunner, TickResult

pytestmark = pytest.mark.slow


class RecordingRunner(JobRunner):
    def __init__(self, alert: bool) -> None:
        super().__init__({}, logging.INFO)
        self.alert = alert
        self.jobs: list[str] = []
        self.trained = threading.Event()

    def run(self, job: str) -> TickResult | None:
        self.jobs.append(job)
        if job == "train":
            self.trained.set()
        return TickResult(job, True, "checked", job, 0.0, alert=self.alert and job == "monitor")


def _run_for(runner: RecordingRunner, seconds: float) -> None:
    settings = Settings(ingest_interval_s=3600, train_interval_s=3600, monitor_interval_s=0.3)
    scheduler = EmbeddedScheduler(settings, runner, lambda: True, lambda: None)
    scheduler.start()
    try:
        runner.trained.wait(seconds)
        deadline = time.monotonic() + seconds
        while runner.jobs.count("monitor") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        scheduler.pause()
        scheduler.shutdown()


def test_a_monitor_alert_trains_now() -> None:
    runner = RecordingRunner(alert=True)
    _run_for(runner, 30)
    assert runner.trained.is_set()
    assert runner.jobs.index("monitor") < runner.jobs.index("train")


def test_no_alert_no_training_before_its_interval() -> None:
    runner = RecordingRunner(alert=False)
    _run_for(runner, 5)
    assert runner.jobs.count("monitor") >= 2
    assert "train" not in runner.jobs
