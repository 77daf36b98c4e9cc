"""Harvest: collect nearly all of the source's current batch within its window, not one sample.

The course API answers each call with a random tenth of the current batch and moves to the next
batch after `min_update_time` (300 s). One call per window, what the course design's DAG does,
collects a tenth of the data, and the model pays for it (held-out accuracy of the same LightGBM:
30k rows 0.910, 298k rows 0.974). A harvest run keeps calling while calls still bring rows it has
not seen: after k calls of a tenth, 1 - 0.9^k of the batch is in (65% after 10, 95% after 29).

A run stops when
- the yield dried up: new rows were under HARVEST_STOP_NEW_SHARE (2%) of the rows of the last
  HARVEST_WINDOW (5) samples: ~41 calls and ~98.5% of the batch at a tenth per call;
- the batch number changed: the source moved on (that sample is stored like every other one);
- the time budget ran out (HARVEST_TIME_BUDGET_S, default 0.9 x MIN_UPDATE_TIME_S, the window);
- the source said all data was collected, or sent a payload that is not the course's shape
  (archived and recorded as rejected, as a single fetch does): no point insisting.
It is polite: at least HARVEST_MIN_INTERVAL_S between calls, the client's retries back off, and
one run per group at a time (a lock in the database, `store.locks`): a second run exits at once
with status `busy`, since the first is already collecting that batch. A source still failing
after the client's retries, or a sample the database refuses, ends the run with that error, as
it ends a single fetch (SourceError, IngestError); what was stored before stays.

Every sample is stored exactly like a single fetch (`ingest.fetch_and_store`: archived,
validated, one transaction, deduplicated by content hash), so an interrupted run loses nothing
it had stored. Each sample's `ingestion_batches` row also carries the run's running figures for
its batch (`pipeline.coverage`): samples taken of it, distinct rows, estimated batch size and
coverage. So the last row of a run holds the run's final figures, and no row is ever updated
afterwards. A later run on the same batch number keeps its own tally: its size estimate stands
on its own, its coverage counts its own samples only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from forestops.config import Settings
from forestops.pipeline.coverage import CaptureTally
from forestops.pipeline.ingest import IngestResult, ensure_schema, fetch_and_store
from forestops.source.client import SourceClient
from forestops.store.loader import HarvestFigures, content_hashes
from forestops.store.locks import try_lock

log = logging.getLogger(__name__)

BUDGET_SHARE_OF_WINDOW = 0.9
"""Default time budget as a share of the source's batch window: done before the batch moves on."""
LOCK_NAME = "forestops.harvest"

Stop = Literal["dried_up", "batch_changed", "time_budget", "all_collected", "rejected", "busy"]


@dataclass(frozen=True)
class HarvestResult:
    group: int
    stop: Stop
    message: str  # why it stopped, in words
    batch_number: int | None = None  # the source batch harvested
    batch_id: int | None = None  # newest ingestion_batches row the run wrote
    calls: int = 0  # calls made to the data API, whatever they brought
    samples: int = 0  # samples of `batch_number` stored
    received: int = 0  # rows of every stored sample (next batch's included), as in IngestResult
    inserted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    distinct_rows: int = 0  # distinct valid rows of `batch_number` collected
    estimated_batch_size: int | None = None
    estimated_coverage: float | None = None
    next_batch_number: int | None = None  # the batch the source moved on to, if it did
    seconds: float = 0.0

    @property
    def status(self) -> str:
        """`harvested` once a sample of the batch is stored, else why not: `all_collected`,
        `rejected` or `busy`."""
        return "harvested" if self.samples else self.stop

    def summary(self) -> str:
        if self.status == "busy":
            return f"harvest of group {self.group} skipped: {self.message}"
        if self.status == "all_collected":
            return f"all data collected: {self.message}"
        if self.status == "rejected":
            return f"batch {self.batch_id} rejected: {self.message}"
        if self.estimated_coverage is None:
            estimate = "batch size not estimable yet (no row seen twice)"
        else:
            estimate = (
                f"estimated batch size {self.estimated_batch_size:,} "
                f"(coverage {self.estimated_coverage:.1%})"
            )
        return (
            f"source batch {self.batch_number} of group {self.group} harvested: "
            f"{self.calls} calls in {self.seconds:.0f} s, {self.received:,} received, "
            f"{self.inserted:,} inserted, {self.duplicates:,} duplicates, "
            f"{self.quarantined:,} quarantined; {self.distinct_rows:,} distinct rows, "
            f"{estimate}; stopped: {self.message}"
        )


def harvest_batch(settings: Settings, group: int | None = None) -> HarvestResult:
    """Collect the current batch of `group` (default GROUP_NUMBER) until the yield dries up."""
    group = settings.group_number if group is None else group
    ensure_schema(settings.database_url)
    with try_lock(settings.database_url, LOCK_NAME, group) as acquired:
        if not acquired:
            return HarvestResult(group, "busy", f"another harvest of group {group} is running")
        with SourceClient.from_settings(settings) as client:
            return _Run(settings, group).harvest(client)


def time_budget_s(settings: Settings) -> float:
    if settings.harvest_time_budget_s is not None:
        return settings.harvest_time_budget_s
    return BUDGET_SHARE_OF_WINDOW * settings.min_update_time_s


class _Run:
    """One run's state: a capture tally per batch number seen, and what was stored."""

    def __init__(self, settings: Settings, group: int) -> None:
        self.settings = settings
        self.group = group
        self.tallies: dict[int, CaptureTally] = {}
        self.stored: list[IngestResult] = []
        self.calls = 0
        self.batch_id: int | None = None
        self.started = time.monotonic()

    def harvest(self, client: SourceClient) -> HarvestResult:
        settings = self.settings
        budget = time_budget_s(settings)
        last_call: float | None = None
        batch_number: int | None = None
        while True:
            if last_call is not None:
                now = time.monotonic()
                wait = max(0.0, last_call + settings.harvest_min_interval_s - now)
                if now + wait - self.started >= budget:
                    spent = f"time budget of {budget:g} s spent"
                    return self._result("time_budget", spent, batch_number)
                time.sleep(wait)
            last_call = time.monotonic()
            result = fetch_and_store(settings, client, self.group, self._running_figures)
            self.calls += 1
            self.batch_id = result.batch_id or self.batch_id
            if result.status == "all_collected":
                return self._result("all_collected", result.message, batch_number)
            if result.status == "rejected":
                return self._result("rejected", result.message, batch_number)
            self.stored.append(result)
            if batch_number is None:
                batch_number = result.batch_number
            elif result.batch_number != batch_number:
                moved = f"the source moved on to batch {result.batch_number}"
                return self._result("batch_changed", moved, batch_number, result.batch_number)
            assert batch_number is not None
            share = self.tallies[batch_number].new_share(settings.harvest_window)
            if share is not None and share < settings.harvest_stop_new_share:
                dried = (
                    f"{share:.1%} new rows in the last {settings.harvest_window} samples "
                    f"(threshold {settings.harvest_stop_new_share:.0%})"
                )
                return self._result("dried_up", dried, batch_number)

    def _running_figures(self, batch_number: int, samples: pd.DataFrame) -> HarvestFigures:
        """Called for each sample before it is stored: the figures its batch row carries."""
        tally = self.tallies.setdefault(batch_number, CaptureTally())
        new = tally.add(content_hashes(samples))
        figures = _figures_of(tally)
        log.info(
            "source batch %d, sample %d: %d rows, %d new, %d distinct, estimated coverage %s",
            batch_number,
            tally.samples,
            len(samples),
            new,
            tally.distinct,
            "n/a" if figures.estimated_coverage is None else f"{figures.estimated_coverage:.1%}",
        )
        return figures

    def _result(
        self,
        stop: Stop,
        message: str,
        batch_number: int | None = None,
        next_batch_number: int | None = None,
    ) -> HarvestResult:
        tally = self.tallies.get(batch_number) if batch_number is not None else None
        figures = _figures_of(tally or CaptureTally())
        return HarvestResult(
            group=self.group,
            stop=stop,
            message=message,
            batch_number=batch_number,
            batch_id=self.batch_id,
            calls=self.calls,
            samples=figures.calls,
            received=sum(r.received for r in self.stored),
            inserted=sum(r.inserted for r in self.stored),
            duplicates=sum(r.duplicates for r in self.stored),
            quarantined=sum(r.quarantined for r in self.stored),
            distinct_rows=figures.distinct_rows,
            estimated_batch_size=figures.estimated_batch_size,
            estimated_coverage=figures.estimated_coverage,
            next_batch_number=next_batch_number,
            seconds=round(time.monotonic() - self.started, 1),
        )


def _figures_of(tally: CaptureTally) -> HarvestFigures:
    size = tally.batch_size()
    return HarvestFigures(
        calls=tally.samples,
        distinct_rows=tally.distinct,
        estimated_batch_size=None if size is None else round(size),
        estimated_coverage=None if size is None else tally.distinct / size,
    )
