"""Ingestion: fetch one batch from the data API, validate it, store it in one transaction.

The one function the CLI (`forestops ingest`), the embedded scheduler and the Airflow DAG call.
Order matters for "nothing lost": the raw payload is archived first, then validated rows, the
quarantine and the lineage row are written in a single transaction. If that transaction fails,
nothing of it remains; the attempt is recorded afterwards as a `failed` batch pointing at the
archived payload, so `forestops ingest --replay ID` can load it once the cause is fixed. A payload
that is not the course's shape is archived and recorded as `rejected`, never half-loaded.

The schema is brought up to date once per process and database on first use, so ingestion on a
fresh home just works. Callers report `IngestResult.summary()` themselves (one line each).
`fetch_and_store` is the step a harvest (`pipeline.harvest`) repeats on one client.

A source whose batch number goes backwards (a course server restarted without its state file,
or someone called `/restart_data_generation`) is logged as a warning: rows already stored stay,
repeated ones are skipped as duplicates.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from forestops.config import Settings
from forestops.pipeline.validate import validate_rows
from forestops.source.client import (
    AllDataCollected,
    MalformedPayload,
    SourceClient,
    SourcePayload,
    parse_payload,
    source_url,
)
from forestops.store import loader
from forestops.store.archive import ArchiveError, archive_payload, read_payload
from forestops.store.database import get_engine, normalise_url, upgrade
from forestops.store.schema import ingestion_batches

log = logging.getLogger(__name__)

Status = Literal["loaded", "all_collected", "rejected"]
Figures = Callable[[int, pd.DataFrame], loader.HarvestFigures]
"""A harvest's running figures for a source batch number, given the valid rows of its next sample."""


class IngestError(RuntimeError):
    """A batch could not be stored (rolled back) or replayed; the message says what to do."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    batch_id: int | None
    status: Status
    batch_number: int | None = None
    received: int = 0
    inserted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    message: str = ""

    def summary(self) -> str:
        if self.status == "all_collected":
            return f"all data collected: {self.message}"
        if self.status == "rejected":
            return f"batch {self.batch_id} rejected: {self.message}"
        return (
            f"batch {self.batch_id} (source batch {self.batch_number}) loaded: "
            f"{self.received} received, {self.inserted} inserted, "
            f"{self.duplicates} duplicates, {self.quarantined} quarantined"
        )


@dataclass(frozen=True, slots=True)
class HeldBatch:
    """The source batch a group last loaded from this source: its number, when it was first
    seen (the first call of its latest unbroken run of samples, ~when the source moved to it),
    and the share of new rows its latest samples (up to `window`) brought to the database."""

    number: int
    first_seen: datetime
    new_share: float | None


def held_batch(settings: Settings, group: int, window: int = 1) -> HeldBatch | None:
    """What the database holds of `group`'s latest source batch (fresh fetches, not replays)."""
    t = ingestion_batches
    mine = (
        (t.c.group_number == group)
        & (t.c.source == source_url(settings))
        & (t.c.status == loader.LOADED)
        & t.c.replay_of.is_(None)
        & t.c.batch_number.is_not(None)
    )
    with get_engine(settings.database_url).connect() as connection:
        latest = connection.execute(
            select(t.c.batch_number).where(mine).order_by(t.c.id.desc()).limit(1)
        ).scalar()
        if latest is None:
            return None
        before = connection.execute(
            select(func.max(t.c.id)).where(mine, t.c.batch_number != latest)
        ).scalar()
        streak = mine & (t.c.id > (before or 0))
        first_seen = connection.execute(select(func.min(t.c.fetched_at)).where(streak)).scalar_one()
        recent = connection.execute(
            select(t.c.inserted, t.c.duplicates).where(streak).order_by(t.c.id.desc()).limit(window)
        ).all()
    valid = sum(row.inserted + row.duplicates for row in recent)
    return HeldBatch(
        latest,
        first_seen if first_seen.tzinfo else first_seen.replace(tzinfo=UTC),  # SQLite: naive UTC
        sum(row.inserted for row in recent) / valid if valid else None,
    )


def warn_if_went_back(group: int, before: int | None, now: int | None) -> None:
    if before is not None and now is not None and now < before:
        log.warning(
            "the data API's batch number for group %d went back from %d to %d: the source was "
            "restarted without its state (or /restart_data_generation was called); stored rows "
            "stay, repeated ones are skipped as duplicates",
            group,
            before,
            now,
        )


def ingest_batch(settings: Settings, group: int | None = None) -> IngestResult:
    """Fetch the current batch of `group` (default GROUP_NUMBER) and store it."""
    group = settings.group_number if group is None else group
    ensure_schema(settings.database_url)
    held = held_batch(settings, group)
    with SourceClient.from_settings(settings) as client:
        result = fetch_and_store(settings, client, group)
    warn_if_went_back(group, held.number if held else None, result.batch_number)
    return result


def fetch_and_store(
    settings: Settings, client: SourceClient, group: int, figures: Figures | None = None
) -> IngestResult:
    """One call of the data API, archived, validated and stored in one transaction; `figures`
    adds a harvest's running figures to the batch row (the schema must be up to date)."""
    try:
        payload = client.fetch(group)
    except AllDataCollected as done:
        return IngestResult(None, "all_collected", message=str(done))
    except MalformedPayload as bad:
        return _reject(settings, _header(settings, group, None, bad.raw), str(bad))
    header = _header(settings, group, payload.batch_number, payload.raw)
    return _load(settings, payload, header, figures)


def replay_batch(settings: Settings, batch_id: int) -> IngestResult:
    """Load an earlier batch again from its archived raw payload (dedup keeps it idempotent)."""
    ensure_schema(settings.database_url)
    with get_engine(settings.database_url).connect() as connection:
        original = loader.read_batch(connection, batch_id)
    if original is None:
        raise IngestError(f"no ingestion batch {batch_id}")
    if not original["payload_uri"]:
        raise IngestError(f"batch {batch_id} has no archived payload to replay")
    try:
        raw = read_payload(original["payload_uri"], settings.s3_endpoint_url)
    except ArchiveError as error:
        raise IngestError(f"cannot replay batch {batch_id}: {error}") from error
    header = loader.BatchHeader(
        source=original["source"],
        group_number=original["group_number"],
        batch_number=original["batch_number"],
        fetched_at=datetime.now(UTC),
        payload_sha256=hashlib.sha256(raw).hexdigest(),
        payload_uri=original["payload_uri"],
        replay_of=batch_id,
    )
    try:
        payload = parse_payload(raw, original["source"])
    except MalformedPayload as bad:
        return _reject(settings, header, str(bad))
    return _load(settings, payload, header)


def _header(
    settings: Settings, group: int, batch_number: int | None, raw: bytes
) -> loader.BatchHeader:
    """Lineage of a fresh fetch, after archiving its raw bytes (first, so nothing is lost)."""
    try:
        uri = archive_payload(raw, settings.artifact_store_uri, settings.s3_endpoint_url)
    except ArchiveError as error:
        raise IngestError(f"batch from group {group} not stored: {error}") from error
    return loader.BatchHeader(
        source=source_url(settings),
        group_number=group,
        batch_number=batch_number,
        fetched_at=datetime.now(UTC),
        payload_sha256=hashlib.sha256(raw).hexdigest(),
        payload_uri=uri,
    )


def _load(
    settings: Settings,
    payload: SourcePayload,
    header: loader.BatchHeader,
    figures: Figures | None = None,
) -> IngestResult:
    samples, rejected = validate_rows(payload.rows)
    harvest = figures(payload.batch_number, samples) if figures else None
    engine = get_engine(settings.database_url)
    try:
        with engine.begin() as connection:
            batch_id, counts = loader.write_batch(connection, header, samples, rejected, harvest)
    except SQLAlchemyError as error:
        reason = _one_line(error)
        failed_id = _record_failure(settings, header, reason)
        replay = (
            f"replay with `forestops ingest --replay {failed_id}`"
            if failed_id is not None
            else f"raw payload kept at {header.payload_uri}"
        )
        raise IngestError(
            f"batch {payload.batch_number} of group {header.group_number} not loaded, "
            f"rolled back: {reason}; {replay}"
        ) from error
    return IngestResult(
        batch_id,
        "loaded",
        payload.batch_number,
        counts.received,
        counts.inserted,
        counts.duplicates,
        counts.quarantined,
    )


def _reject(settings: Settings, header: loader.BatchHeader, reason: str) -> IngestResult:
    try:
        with get_engine(settings.database_url).begin() as connection:
            batch_id = loader.write_unloaded(connection, header, loader.REJECTED, reason)
    except SQLAlchemyError as error:
        raise IngestError(
            f"malformed payload ({reason}) could not be recorded: {_one_line(error)}; "
            f"raw payload kept at {header.payload_uri}"
        ) from error
    return IngestResult(batch_id, "rejected", header.batch_number, message=reason)


def _record_failure(settings: Settings, header: loader.BatchHeader, reason: str) -> int | None:
    """Best effort: the database that just failed may still be unreachable."""
    try:
        with get_engine(settings.database_url).begin() as connection:
            return loader.write_unloaded(connection, header, loader.FAILED, reason)
    except SQLAlchemyError as error:
        log.warning("could not record the failed batch either: %s", _one_line(error))
        return None


def _one_line(error: SQLAlchemyError) -> str:
    """The driver's own first line, without SQLAlchemy's SQL echo or the server's context."""
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines() or [type(original).__name__]
    return lines[0][:500]


_schema_lock = threading.Lock()
_schema_ready: set[str] = set()


def ensure_schema(url: str) -> None:
    with _schema_lock:
        if url in _schema_ready:
            return
        try:
            upgrade(url)
        except SQLAlchemyError as error:
            shown = make_url(normalise_url(url)).render_as_string(hide_password=True)
            raise IngestError(f"database {shown} unavailable: {_one_line(error)}") from error
        _schema_ready.add(url)
