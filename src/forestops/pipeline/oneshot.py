"""`forestops run`: the whole pipeline once, from an empty home to a champion, in one process.

Starts the built-in data API on a free loopback port (unless SOURCE_API_BASE_URL names a real
one), ingests batch after batch until the source says all data was collected (or N batches
loaded), stops the API, then trains and gates once.

With INGEST_HARVEST (the default) each batch is harvested (`pipeline.harvest`): calls follow
each other until the yield dries up, then the run waits out the rest of the batch's window, so
the next harvest starts on the next batch. Politeness toward the source does not apply to the
built-in data API this command starts itself: HARVEST_MIN_INTERVAL_S is 0 there unless set.
Without it, one call per batch: between calls it waits `min_update_time` seconds, the source's
batch window, so each call gets the next batch (0: no waiting at all).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any

from forestops.config import Settings
from forestops.modeling.candidates import build_candidates
from forestops.pipeline.harvest import HarvestResult, harvest_batch
from forestops.pipeline.ingest import IngestError, IngestResult, ingest_batch
from forestops.pipeline.train import TrainResult, train

log = logging.getLogger(__name__)

MAX_REJECTED_IN_A_ROW = 3
WINDOW_MARGIN_S = 1.0
"""Waited beyond a batch's window before the next harvest: the source starts the window while
answering the call that began the batch, a moment after this process sent it."""


@dataclass
class IngestTotals:
    batches: int = 0  # loaded batches
    received: int = 0
    inserted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    rejected: int = 0  # payloads that were not the course's shape (archived, not loaded)
    all_collected: bool = False
    coverage: dict[int, float | None] = field(default_factory=dict)  # harvests: batch -> estimate

    def add(self, result: IngestResult | HarvestResult) -> None:
        harvest = result if isinstance(result, HarvestResult) else None
        if harvest is None or harvest.batch_number not in self.coverage:
            self.batches += 1  # a batch harvested twice (its window had not passed) counts once
        if harvest is not None and harvest.batch_number is not None:
            self.coverage.setdefault(harvest.batch_number, harvest.estimated_coverage)
        self.received += result.received
        self.inserted += result.inserted
        self.duplicates += result.duplicates
        self.quarantined += result.quarantined


@dataclass(frozen=True)
class RunResult:
    source: str
    ingest: IngestTotals
    training: TrainResult
    seconds: dict[str, float] = field(default_factory=dict)  # ingest, train, total

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "ingest": asdict(self.ingest),
            "training": self.training.to_dict(),
            "seconds": self.seconds,
        }

    def summary(self) -> str:
        ingest, training = self.ingest, self.training
        ended = "all data collected" if ingest.all_collected else f"{ingest.batches} batches asked"
        lines = [
            f"ingested {ingest.batches} batches from {self.source} ({ended}) in "
            f"{self.seconds.get('ingest', 0):.0f} s: {ingest.received:,} received, "
            f"{ingest.inserted:,} inserted, {ingest.duplicates:,} duplicates, "
            f"{ingest.quarantined:,} quarantined, {ingest.rejected} payloads rejected",
        ]
        if ingest.coverage:
            shown = ", ".join(
                f"{batch}: {'n/a' if share is None else f'{share:.1%}'}"
                for batch, share in ingest.coverage.items()
            )
            lines.append(f"harvested, estimated coverage per batch: {shown}")
        if training.status == "skipped":
            return "\n".join([*lines, f"training skipped: {training.message}"])
        lines.append(f"trained on {training.rows:,} rows in {self.seconds.get('train', 0):.0f} s:")
        lines.append(f"  {'candidate':<22}{'accuracy':>10}{'macro-F1':>10}{'fit s':>9}")
        for score in training.candidates:
            lines.append(
                f"  {score.name:<22}{score.accuracy:>10.4f}{score.macro_f1:>10.4f}"
                f"{score.fit_seconds:>9.1f}"
            )
        lines += [f"  {name:<22}failed: {error}" for name, error in training.failed.items()]
        served = training.champion_uri or "none"
        if training.champion_version is None:
            served += " (registry disabled: the best run serves)"
        lines.append(f"champion: {served}; {training.message}")
        return "\n".join(lines)


def run_pipeline(
    settings: Settings,
    *,
    batches: int | None = None,
    min_update_time: float | None = None,
    sample_fraction: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RunResult:
    """Ingest until done, then train once. Options left None keep the settings' values."""
    overrides = {"min_update_time_s": min_update_time, "sample_fraction": sample_fraction}
    settings = settings.model_copy(
        update={key: value for key, value in overrides.items() if value is not None}
    )
    build_candidates(settings)  # a typo in TRAIN_CANDIDATES fails now, not after the ingestion
    started = time.perf_counter()
    with ExitStack() as stack:
        if not settings.source_api_base_url:
            from forestops.source.server import serve_builtin

            server = stack.enter_context(serve_builtin(settings, port=0))
            own: dict[str, object] = {"source_api_base_url": server.url}
            if "harvest_min_interval_s" not in settings.model_fields_set:
                own["harvest_min_interval_s"] = 0.0
            settings = settings.model_copy(update=own)
            log.info("built-in data API on %s", server.url)
        if settings.ingest_harvest:
            totals = _harvest_until_done(settings, batches, sleep)
        else:
            totals = _ingest_until_done(settings, batches, sleep)
    ingested = time.perf_counter()
    training = train(settings)
    finished = time.perf_counter()
    return RunResult(
        source=settings.source_api_base_url,
        ingest=totals,
        training=training,
        seconds={
            "ingest": round(ingested - started, 1),
            "train": round(finished - ingested, 1),
            "total": round(finished - started, 1),
        },
    )


def _ingest_until_done(
    settings: Settings, batches: int | None, sleep: Callable[[float], None]
) -> IngestTotals:
    totals = IngestTotals()
    rejected_in_a_row = 0
    first = True
    while batches is None or totals.batches < batches:
        if not first and settings.min_update_time_s > 0:
            sleep(settings.min_update_time_s)  # the source's batch window
        first = False
        result = ingest_batch(settings)
        log.info(result.summary())
        if result.status == "all_collected":
            totals.all_collected = True
            break
        if result.status == "rejected":
            rejected_in_a_row = _rejected(totals, rejected_in_a_row, result.message)
            continue
        rejected_in_a_row = 0
        totals.add(result)
    return totals


def _harvest_until_done(
    settings: Settings, batches: int | None, sleep: Callable[[float], None]
) -> IngestTotals:
    totals = IngestTotals()
    rejected_in_a_row = 0
    batch_began = time.monotonic()
    while batches is None or totals.batches < batches:
        result = harvest_batch(settings)
        log.info(result.summary())
        if result.stop == "busy":
            raise IngestError(f"cannot harvest: {result.message} (same database)")
        if result.samples:
            totals.add(result)
        if result.stop == "all_collected":
            totals.all_collected = True
            break
        if result.stop == "rejected":
            rejected_in_a_row = _rejected(totals, rejected_in_a_row, result.message)
            continue
        rejected_in_a_row = 0
        if result.stop == "batch_changed":  # the next batch began with this run's last call
            batch_began = time.monotonic()
            continue
        # dried up or out of time: the source serves this batch until its window has passed
        sleep(
            max(0.0, batch_began + settings.min_update_time_s + WINDOW_MARGIN_S - time.monotonic())
        )
        batch_began = time.monotonic()
    return totals


def _rejected(totals: IngestTotals, in_a_row: int, message: str) -> int:
    """Count a malformed payload; so many in a row that the source must be broken: stop."""
    totals.rejected += 1
    in_a_row += 1
    if in_a_row >= MAX_REJECTED_IN_A_ROW:
        raise RuntimeError(
            f"the source sent {in_a_row} malformed payloads in a row "
            f"({message}); they are archived and listed in ingestion_batches"
        )
    return in_a_row
