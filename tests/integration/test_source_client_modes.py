"""The data API client against both modes of the built-in server, real HTTP on loopback, each
server's clock injected so ten batch windows pass without waiting.

2,005 rows: batches of 200 (a sample of 20), and in course mode group 10's slice is 5 rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from fastapi import FastAPI

from forestops.source import protocol
from forestops.source.client import (
    FIRST_BACKOFF_S,
    AllDataCollected,
    SourceClient,
    SourceError,
    backoff_s,
)
from forestops.source.course_server import create_course_app
from forestops.source.dataset import read_dataset
from forestops.source.server import create_app
from forestops.webserver import BackgroundServer
from support.clock import ManualClock

ROWS = 2005
WINDOW = 300.0
PAST_WINDOW = WINDOW + 0.001


@pytest.fixture(scope="module")
def subset(dataset_path: Path) -> pd.DataFrame:
    return read_dataset(dataset_path, nrows=ROWS)


@dataclass
class Source:
    mode: str
    url: str
    clock: ManualClock


APPS: dict[str, Callable[[pd.DataFrame, Path, ManualClock], FastAPI]] = {
    "default": lambda frame, state, clock: create_app(
        frame, state, min_update_time=WINDOW, seed=1, clock=clock
    ),
    "course": lambda frame, state, clock: create_course_app(
        frame, state, min_update_time=WINDOW, seed=1, clock=clock
    ),
}


@pytest.fixture(params=sorted(APPS))
def source(
    request: pytest.FixtureRequest, subset: pd.DataFrame, tmp_path: Path
) -> Iterator[Source]:
    clock = ManualClock()
    with BackgroundServer(APPS[request.param](subset, tmp_path / "state.json", clock)) as server:
        yield Source(request.param, server.url, clock)


def client(url: str, budget: float = 1.0) -> SourceClient:
    return SourceClient(url, timeout=5, retries=50, backoff_max=0.05, retry_budget=budget)


def test_all_ten_batches_then_all_collected(source: Source) -> None:
    with client(source.url) as api:
        seen = []
        for _ in range(protocol.N_BATCHES):
            payload = api.fetch(3)
            assert (payload.group_number, len(payload.rows)) == (3, 20)
            seen.append(payload.batch_number)
            source.clock.advance(PAST_WINDOW)
        assert seen == list(range(1, 11))
        with pytest.raises(AllDataCollected, match="Ya se recolect"):
            api.fetch(3)


def test_batch_10_is_served_for_one_call_by_the_course_and_its_window_by_default(
    source: Source,
) -> None:
    with client(source.url) as api:
        for _ in range(protocol.N_BATCHES - 1):
            api.fetch(4)
            source.clock.advance(PAST_WINDOW)
        assert api.fetch(4).batch_number == 10
        if source.mode == "course":
            with pytest.raises(AllDataCollected):
                api.fetch(4)  # same window: the course is done with batch 10 already
        else:
            assert api.fetch(4).batch_number == 10


def test_group_10_is_a_clear_error_after_the_retries_from_the_course(
    source: Source, caplog: pytest.LogCaptureFixture
) -> None:
    with client(source.url, budget=0.5) as api, caplog.at_level(logging.WARNING):
        if source.mode == "default":
            assert api.fetch(10).batch_number == 1  # every group is served
            return
        with pytest.raises(SourceError) as caught:
            api.fetch(10)
    message = str(caught.value)
    assert "failed after" in message and "HTTP 500: Internal Server Error" in message
    assert "group 10 (its share of the data is smaller than one sample)" in message
    assert "use another GROUP_NUMBER" in message and "_Transient" not in message
    retries = [r.getMessage() for r in caplog.records if "next in" in r.getMessage()]
    assert len(retries) >= 2 and not any("_Transient" in line for line in retries)


def test_default_backoff_spans_a_restart_and_reaches_its_ceiling() -> None:
    """The default settings' schedule (no jitter): what `SourceClient` sleeps between attempts."""
    budget, ceiling, attempts = 120.0, 30.0, 12
    waits: list[float] = []
    for attempt in range(1, attempts):
        wait = backoff_s(attempt, ceiling)
        if sum(waits) + wait > budget:  # tenacity's stop_before_delay
            break
        waits.append(wait)
    assert waits[0] == FIRST_BACKOFF_S
    assert sum(waits) >= 60  # a restart of the source fits
    assert max(waits) == ceiling  # SOURCE_BACKOFF_MAX_S is reached
    assert backoff_s(20, ceiling, jitter=1.0) == ceiling  # jitter never passes the ceiling
    assert backoff_s(2, ceiling, jitter=1.0) == pytest.approx(1.1)


def test_a_url_without_scheme_is_a_configuration_error_at_once() -> None:
    with pytest.raises(ValueError, match="not an http"):
        SourceClient("10.43.101.149:80")
