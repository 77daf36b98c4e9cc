"""Notifications reach a real webhook on loopback: champion promotion, a failed scheduled job;
a webhook that is down or failing is logged and never fails the job."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forestops.config import Settings
from forestops.orchestration.scheduler import EmbeddedScheduler, JobRunner
from forestops.pipeline.notify import notify
from forestops.pipeline.train import train
from forestops.webserver import BackgroundServer, free_port
from support.training_data import course_rows, seed_samples, tiny
from support.webhook import Receiver


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    hook = Receiver()
    with BackgroundServer(hook.app) as server:
        yield hook, f"{server.url}/hook"


def test_a_new_champion_is_announced(
    settings: Settings, dataset_path: Path, receiver: tuple[Receiver, str]
) -> None:
    seed_samples(settings, course_rows(dataset_path, 1500))
    hook, url = receiver
    result = train(tiny(settings, train_candidates=("lightgbm",), notify_webhook_url=url))
    assert result.champion_changed
    assert len(hook.posts) == 1
    assert hook.posts[0]["text"].startswith(f"forestops: new champion {settings.model_name} 1")


def test_a_failed_scheduled_job_is_announced(home: Path, receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    settings = Settings(notify_webhook_url=url, ingest_interval_s=3600, train_interval_s=3600)
    dead_source = f"http://127.0.0.1:{free_port()}"
    runner = JobRunner(
        {"FORESTOPS_HOME": str(home), "SOURCE_API_BASE_URL": dead_source, "SOURCE_RETRIES": "1"},
        logging.INFO,
    )
    scheduler = EmbeddedScheduler(settings, runner, lambda: True, lambda: None)
    scheduler.start()  # the first ingestion tick runs now, against a data API that is down
    try:
        deadline = time.monotonic() + 120
        while not hook.posts and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        scheduler.pause()
        scheduler.shutdown()
    assert len(hook.posts) == 1
    assert hook.posts[0]["text"].startswith("forestops: ingest job failed:")
    assert dead_source in hook.posts[0]["text"]


def test_a_webhook_that_is_down_or_failing_is_logged_not_raised(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    down = settings.model_copy(
        update={"notify_webhook_url": f"http://127.0.0.1:{free_port()}/hook"}
    )
    failing = Receiver(status_code=500)
    with BackgroundServer(failing.app) as server:
        broken = settings.model_copy(update={"notify_webhook_url": f"{server.url}/hook"})
        with caplog.at_level(logging.WARNING, "forestops.pipeline.notify"):
            assert notify(down, "drift") is False
            assert notify(broken, "drift") is False
    assert len(failing.posts) == 1
    assert len([r for r in caplog.records if "not delivered" in r.message]) == 2
    assert notify(settings, "no webhook configured") is False


def test_a_notification_never_carries_a_credential(
    settings: Settings, receiver: tuple[Receiver, str]
) -> None:
    """A failed task's message quotes its exception, and a database error quotes its URL."""
    hook, url = receiver
    credential = "forestops:" + "s3cret-pw"  # built here: no literal credential in the tree
    error = f"connection to postgresql+psycopg://{credential}@app-db:5432/forestops failed"
    assert notify(settings.model_copy(update={"notify_webhook_url": url}), error)
    assert "s3cret-pw" not in hook.posts[0]["text"]
    assert "app-db:5432/forestops failed" in hook.posts[0]["text"]
