"""Seed the store with real rows of the shared data set, the way ingestion leaves them.

Training tests need curated rows in `forest_cover_samples` with their `ingestion_batches`, and
should not depend on the ingestion code path: this writes both tables directly through the real
schema (Alembic head), one batch per chunk, with a content hash per row.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import insert

from forestops import contract
from forestops.config import Settings
from forestops.modeling.candidates import evaluation_split
from forestops.store.database import get_engine, upgrade
from forestops.store.reads import training_frame
from forestops.store.schema import forest_cover_samples, ingestion_batches

TINY = {
    "svc_max_rows": 400,
    "logreg_max_rows": 1000,
    "random_forest_trees": 5,
    "random_forest_max_rows": 1000,
    "extra_trees_trees": 10,
    "lightgbm_max_rounds": 40,
    "lightgbm_num_leaves": 31,
    "train_n_jobs": 1,
    "train_eval_fraction": 0.2,  # a few hundred evaluation rows even on a small store
}


def tiny(settings: Settings, **overrides: object) -> Settings:
    return settings.model_copy(update={**TINY, **overrides})


def eval_split(settings: Settings, after_batch: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """The evaluation rows a training job on the current store uses (same rule, same order),
    only those of batches after `after_batch` if given."""
    data = training_frame(settings)
    labels = data.frame[contract.LABEL].to_numpy()
    _, rows = evaluation_split(data.content_hashes, labels, settings.train_eval_fraction)
    rows = rows[np.asarray(data.batch_ids)[rows] > after_batch]
    return data.frame.loc[rows, list(contract.FEATURE_NAMES)], labels[rows]


def course_rows(dataset: Path, rows: int, skip: int = 0) -> pd.DataFrame:
    """`rows` rows of the shared data set after the first `skip`, in canonical columns."""
    frame = pd.read_csv(dataset, nrows=rows, skiprows=range(1, skip + 1))
    return frame.rename(columns=contract.canonical_column).loc[:, list(contract.COLUMNS)]


def seed_samples(settings: Settings, frame: pd.DataFrame, batches: int = 1) -> list[int]:
    """Insert `frame` (canonical columns) as `batches` loaded batches; returns the batch ids."""
    upgrade(settings.database_url)
    batch_ids = []
    with get_engine(settings.database_url).begin() as conn:
        for number, chunk in enumerate(_chunks(frame, batches)):
            records = chunk.to_dict(orient="records")
            batch_id = conn.execute(
                insert(ingestion_batches).values(
                    source="tests",
                    group_number=settings.group_number,
                    batch_number=number,
                    fetched_at=datetime.now(UTC),
                    status="loaded",
                    received=len(records),
                    inserted=len(records),
                    duplicates=0,
                    quarantined=0,
                )
            ).inserted_primary_key[0]
            conn.execute(
                insert(forest_cover_samples),
                [{**row, "batch_id": batch_id, "content_hash": _hash(row)} for row in records],
            )
            batch_ids.append(int(batch_id))
    return batch_ids


def _chunks(frame: pd.DataFrame, parts: int) -> list[pd.DataFrame]:
    size = -(-len(frame) // parts)
    return [frame.iloc[start : start + size] for start in range(0, len(frame), size)]


def _hash(row: dict[str, object]) -> str:
    text = "|".join(str(row[name]) for name in contract.COLUMNS)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
