"""Harvest: collect nearly all of the source's current batch within its window, not one sample.

The course API answers each call with a random tenth of the current batch and moves to the next
batch after `min_update_time` (300 s). One call per window, what the course design's DAG does,
collects a tenth of the data, and the model pays for it (held-out accuracy of the same LightGBM:
30k rows 0.910, 298k rows 0.974). A harvest run keeps calling while calls still bring rows it has
not seen: after k calls of a tenth, 1 - 0.9^k of the batch is in (65% after 10, 95% after 29).

A run stops when
- the yield dried up: new rows were under HARVEST_STOP_NEW_SHARE (2%) of the rows of the last
  HARVEST_WINDOW (5) samples: ~41 calls and ~98.5% of the batch at a tenth per call;
- its first sample brought under HARVEST_STOP_NEW_SHARE new rows to the database: the batch was
  collected before under another number (the course's server serves every batch of a group from
  the same slice of the data), so one call per batch is all it costs;
- the batch number changed: the source moved on (that sample is stored like every other one);
- the time budget ran out (HARVEST_TIME_BUDGET_S, default 0.9 x MIN_UPDATE_TIME_S, the window);
- the source said all data was collected, or sent a payload that is not the course's shape
  (archived and recorded as rejected, as a single fetch does): no point insisting.
It never asks again for a batch it has already collected because a tick came early. Scheduled
runs come every INGEST_INTERVAL_S (or the DAG's `*/5`), the same 300 s as the source's window,
so a tick can land just before the source moves on. A run first looks at the group's latest
batch in the database: if its last samples brought under HARVEST_STOP_NEW_SHARE new rows (it is
collected) and MIN_UPDATE_TIME_S (+1%, at most 1 s) have not passed since it was first seen (the source's
window began with that call), the run waits until they have, then asks: the source moves on at
that call. If that wait would not fit in the time budget, the run makes no call and ends
`not_due`. Aligning to the observed change rather than polling until the number moves costs no
call at all in the common case and needs no new setting; a source whose window is longer than
MIN_UPDATE_TIME_S costs one call (stopped at once as `seen_before`) per early tick.

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
from datetime import UTC, datetime, timedelta
from typing import Literal

import pandas as pd

from forestops.config import Settings
from forestops.pipeline.coverage import CaptureTally
from forestops.pipeline.ingest import (
    HeldBatch,
    IngestResult,
    ensure_schema,
    fetch_and_store,
    held_batch,
    warn_if_went_back,
)
from forestops.source.client import SourceClient
from forestops.store.loader import HarvestFigures, content_hashes
from forestops.store.locks import try_lock

log = logging.getLogger(__name__)

BUDGET_SHARE_OF_WINDOW = 0.9
"""Default time budget as a share of the source's batch window: done before the batch moves on."""
LOCK_NAME = "forestops.harvest"
DUE_MARGIN_SHARE, DUE_MARGIN_MAX_S = 0.01, 1.0
"""Asked a moment (1% of the window, at most 1 s) after a held batch's window: the course moves on
only strictly after it, and our clock's reading of the first sample lags the source's."""

Stop = Literal[
    "dried_up",
    "seen_before",
    "batch_changed",
    "time_budget",
    "all_collected",
    "rejected",
    "busy",
    "not_due",
]


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
        `rejected`, `busy` or `not_due`."""
        return "harvested" if self.samples else self.stop

    def summary(self) -> str:
        if self.status in ("busy", "not_due"):
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
        held = held_batch(settings, self.group, settings.harvest_window)
        wait, due = _until_next_batch(settings, held)
        if held is not None and wait > 0:
            when = (
                f"first seen {held.first_seen:%H:%M:%S} UTC, "
                f"the source moves on after {due:%H:%M:%S}"
            )
            if wait >= budget:
                return self._result("not_due", f"source batch {held.number} is collected ({when})")
            log.info("source batch %d is collected (%s): asking in %.0f s", held.number, when, wait)
            time.sleep(wait)
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
                warn_if_went_back(self.group, held.number if held else None, batch_number)
                valid = result.inserted + result.duplicates
                if valid and result.inserted < settings.harvest_stop_new_share * valid:
                    seen = (
                        f"its first sample brought {result.inserted / valid:.1%} new rows "
                        f"(threshold {settings.harvest_stop_new_share:.0%}): collected before"
                    )
                    return self._result("seen_before", seen, batch_number)
            elif result.batch_number != batch_number:
                warn_if_went_back(self.group, batch_number, result.batch_number)
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


def _until_next_batch(settings: Settings, held: HeldBatch | None) -> tuple[float, datetime]:
    """Seconds to wait before asking, and when: 0 unless the held batch is collected and its
    window (MIN_UPDATE_TIME_S from when it was first seen, and a margin) is still open."""
    now = datetime.now(UTC)
    window = settings.min_update_time_s
    if held is None or window <= 0 or held.new_share is None:
        return 0.0, now
    if held.new_share >= settings.harvest_stop_new_share:
        return 0.0, now  # not collected yet (a run cut short): worth asking within its window
    margin = min(DUE_MARGIN_MAX_S, DUE_MARGIN_SHARE * window)
    due = held.first_seen + timedelta(seconds=window + margin)
    return max(0.0, (due - now).total_seconds()), due


def _figures_of(tally: CaptureTally) -> HarvestFigures:
    size = tally.batch_size()
    return HarvestFigures(
        calls=tally.samples,
        distinct_rows=tally.distinct,
        estimated_batch_size=None if size is None else round(size),
        estimated_coverage=None if size is None else tally.distinct / size,
    )
