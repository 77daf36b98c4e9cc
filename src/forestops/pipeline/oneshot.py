"""`forestops run`: the whole pipeline once, from an empty home to a champion, in one process.

Starts the built-in data API on a free loopback port (unless SOURCE_API_BASE_URL names a real
one), ingests batch after batch until the source says all data was collected (or N batches
loaded), stops the API, then trains and gates once. Between calls it waits `min_update_time`
seconds, the source's batch window, so each call gets the next batch (0: no waiting at all).
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
from forestops.pipeline.ingest import IngestResult, ingest_batch
from forestops.pipeline.train import TrainResult, train

log = logging.getLogger(__name__)

MAX_REJECTED_IN_A_ROW = 3


@dataclass
class IngestTotals:
    batches: int = 0  # loaded batches
    received: int = 0
    inserted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    rejected: int = 0  # payloads that were not the course's shape (archived, not loaded)
    all_collected: bool = False

    def add(self, result: IngestResult) -> None:
        self.batches += 1
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
            settings = settings.model_copy(update={"source_api_base_url": server.url})
            log.info("built-in data API on %s", server.url)
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
            totals.rejected += 1
            rejected_in_a_row += 1
            if rejected_in_a_row >= MAX_REJECTED_IN_A_ROW:
                raise RuntimeError(
                    f"the source sent {rejected_in_a_row} malformed payloads in a row "
                    f"({result.message}); they are archived and listed in ingestion_batches"
                )
            continue
        rejected_in_a_row = 0
        totals.add(result)
    return totals
