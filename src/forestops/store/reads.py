"""Reads for training: every curated sample, plus the lineage that says exactly which ones.

Rows come back ordered by their content hash, so the `data_hash` depends only on WHICH rows are
in the store, not on the order batches happened to arrive in. Each row's content hash and batch id
come along: the evaluation split is chosen by the hash, the gate's fair rows by the batch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import func, inspect, select

from forestops import contract
from forestops.config import Settings
from forestops.store.database import get_engine
from forestops.store.schema import forest_cover_samples, ingestion_batches


@dataclass(frozen=True)
class TrainingLineage:
    """Which data a model saw: enough to reproduce the set and to tell whether new data arrived.

    `max_batch_id` is the newest batch that contributed rows; batch ids only grow, so "is there a
    sample with batch_id > max_batch_id" answers "has anything new arrived since this training".
    `latest_batch_id` is the newest ingestion batch of any outcome at read time (a batch of only
    duplicates or rejects adds no rows, so it can be newer than `max_batch_id`).
    """

    rows: int
    batch_ids: tuple[int, ...]
    min_batch_id: int | None
    max_batch_id: int | None
    latest_batch_id: int | None
    data_hash: str

    @property
    def batch_ranges(self) -> str:
        """Batch ids as compact ranges ("1-10,12"): stays short enough for an MLflow tag."""
        return compact_ranges(self.batch_ids)

    def as_dict(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "batch_ids": list(self.batch_ids),
            "min_batch_id": self.min_batch_id,
            "max_batch_id": self.max_batch_id,
            "latest_batch_id": self.latest_batch_id,
            "data_hash": self.data_hash,
        }


@dataclass(frozen=True)
class TrainingData:
    frame: pd.DataFrame  # canonical columns (contract.COLUMNS), one row per curated sample
    lineage: TrainingLineage
    content_hashes: tuple[str, ...] = ()  # each row's dedup key (what the evaluation split uses)
    batch_ids: tuple[int, ...] = ()  # each row's batch (what the champion gate's fair rows use)


def training_frame(settings: Settings) -> TrainingData:
    """All curated samples in canonical columns, with their lineage, read in one transaction."""
    samples = forest_cover_samples.c
    query = select(
        samples.content_hash, samples.batch_id, *(samples[name] for name in contract.COLUMNS)
    ).order_by(samples.content_hash)
    with get_engine(settings.database_url).connect() as conn, conn.begin():
        if not inspect(conn).has_table(forest_cover_samples.name):  # nothing ingested yet
            empty = pd.DataFrame(columns=["content_hash", "batch_id", *contract.COLUMNS])
            return TrainingData(empty.loc[:, list(contract.COLUMNS)], _lineage(empty, None))
        latest_batch_id = conn.execute(select(func.max(ingestion_batches.c.id))).scalar()
        frame = pd.read_sql(query, conn)
    return TrainingData(
        frame=frame.loc[:, list(contract.COLUMNS)].reset_index(drop=True),
        lineage=_lineage(frame, latest_batch_id),
        content_hashes=tuple(frame["content_hash"]),
        batch_ids=tuple(int(b) for b in frame["batch_id"]),
    )


def _lineage(frame: pd.DataFrame, latest_batch_id: int | None) -> TrainingLineage:
    batch_ids = tuple(int(b) for b in sorted(frame["batch_id"].unique()))
    digest = hashlib.sha256("\n".join(frame["content_hash"]).encode("ascii"))
    return TrainingLineage(
        rows=len(frame),
        batch_ids=batch_ids,
        min_batch_id=batch_ids[0] if batch_ids else None,
        max_batch_id=batch_ids[-1] if batch_ids else None,
        latest_batch_id=None if latest_batch_id is None else int(latest_batch_id),
        data_hash=digest.hexdigest(),
    )


def compact_ranges(ids: tuple[int, ...]) -> str:
    """(1, 2, 3, 5, 7, 8) -> "1-3,5,7-8"."""
    parts: list[str] = []
    start = previous = None
    for value in ids:
        if previous is not None and value == previous + 1:
            previous = value
            continue
        if start is not None:
            parts.append(_span(start, previous))
        start = previous = value
    if start is not None:
        parts.append(_span(start, previous))
    return ",".join(parts)


def _span(start: int, end: int | None) -> str:
    return str(start) if end in (None, start) else f"{start}-{end}"
