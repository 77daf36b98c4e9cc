"""Read-only queries of the ingested data for the UI (SQLAlchemy Core on store/schema.py).

Results are cached with short TTLs keyed by the database URL: a page rerun on every widget click
must not rescan 300k rows, yet new batches show up within a minute. Failures are never cached,
so a database that comes back is seen on the next rerun. A SQLite file that does not exist yet
is reported, never created: the UI has no business writing the database.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.engine import make_url

from forestops import contract
from forestops.store.audit import recent_actions
from forestops.store.database import get_engine, normalise_url
from forestops.store.monitoring import recent_reports
from forestops.store.schema import forest_cover_samples, ingestion_batches, quarantined_rows
from forestops.ui.errors import DatabaseNotReady

SAMPLE_TTL_S = 300
SUMMARY_TTL_S = 30


@dataclass(frozen=True)
class Overview:
    rows: int
    batches: int  # ingestion records: one per fetch (a harvest makes dozens per source batch)
    quarantined: int
    last_fetched_at: datetime | None
    source_batches: int  # distinct batches of the source (source, group, batch number)


def _engine(url: str) -> Engine:
    parsed = make_url(normalise_url(url))
    path = parsed.database
    local = parsed.get_backend_name() == "sqlite" and path not in (None, "", ":memory:")
    if local and not Path(str(path)).exists():
        raise DatabaseNotReady(f"no database file at {path}")
    engine = get_engine(url)
    if not inspect(engine).has_table(forest_cover_samples.name):
        raise DatabaseNotReady("the schema is not created yet (forestops db upgrade)")
    return engine


@st.cache_data(ttl=SUMMARY_TTL_S, show_spinner=False)
def overview(url: str) -> Overview:
    with _engine(url).connect() as conn:
        batches, quarantined, last = conn.execute(
            select(
                func.count(),
                func.coalesce(func.sum(ingestion_batches.c.quarantined), 0),
                func.max(ingestion_batches.c.fetched_at),
            )
        ).one()
        rows = conn.execute(select(func.count()).select_from(forest_cover_samples)).scalar_one()
        table = ingestion_batches.c
        numbered = (
            select(table.source, table.group_number, table.batch_number)
            .where(table.batch_number.is_not(None))
            .distinct()
            .subquery()
        )
        source_batches = conn.execute(select(func.count()).select_from(numbered)).scalar_one()
    return Overview(int(rows), int(batches), int(quarantined), last, int(source_batches))


@st.cache_data(ttl=SUMMARY_TTL_S, show_spinner=False)
def class_counts(url: str) -> pd.DataFrame:
    label = forest_cover_samples.c[contract.LABEL]
    query = select(label, func.count().label("rows")).group_by(label).order_by(label)
    with _engine(url).connect() as conn:
        return pd.DataFrame(conn.execute(query).all(), columns=[contract.LABEL, "rows"])


@st.cache_data(ttl=SAMPLE_TTL_S, show_spinner=False)
def sample(url: str, size: int) -> pd.DataFrame:
    """A uniform random sample of the ingested rows (the whole table when it is smaller)."""
    columns = [forest_cover_samples.c[name] for name in contract.COLUMNS]
    query = select(*columns).order_by(func.random()).limit(size)
    with _engine(url).connect() as conn:
        return pd.DataFrame(conn.execute(query).all(), columns=list(contract.COLUMNS))


@st.cache_data(ttl=SUMMARY_TTL_S, show_spinner=False)
def batch_history(url: str) -> pd.DataFrame:
    table = ingestion_batches.c
    query = select(
        table.id,
        table.batch_number,
        table.fetched_at,
        table.status,
        table.received,
        table.inserted,
        table.duplicates,
        table.quarantined,
    ).order_by(table.fetched_at, table.id)
    with _engine(url).connect() as conn:
        frame = pd.DataFrame(conn.execute(query).mappings().all())
    if frame.empty:
        return frame
    frame["fetched_at"] = pd.to_datetime(frame["fetched_at"], utc=True)
    frame["cumulative"] = frame["inserted"].cumsum()
    return frame


def model_audit(url: str, model_name: str) -> pd.DataFrame:
    """Operator actions on `model_name`, newest first (empty before the first one). Not cached:
    at most 100 rows by an index, and an action just taken must show on the next rerun."""
    columns = ["created_at", "action", "from_version", "to_version", "outcome", "actor", "reason"]
    frame = pd.DataFrame(recent_actions(_engine(url), model_name), columns=[*columns, "detail"])
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame


@st.cache_data(ttl=SUMMARY_TTL_S, show_spinner=False)
def monitoring_history(url: str) -> list[dict[str, Any]]:
    """The monitor's reports, oldest first (empty before the first `forestops monitor`)."""
    return recent_reports(_engine(url))


@st.cache_data(ttl=SUMMARY_TTL_S, show_spinner=False)
def harvest_coverage(url: str, latest: int = 20_000) -> pd.DataFrame:
    """Per harvested batch (consecutive samples of one batch number of a group), the running
    figures of its last sample (see pipeline.harvest), over the latest harvested samples. A
    batch without an estimate yet (a single sample: the one a harvest took as the source moved
    on) is left out."""
    table = ingestion_batches.c
    columns = [
        table.id,
        table.group_number,
        table.batch_number,
        table.fetched_at,
        table.harvest_calls,
        table.distinct_rows,
        table.estimated_batch_size,
        table.estimated_coverage,
    ]
    query = (
        select(*columns)
        .where(table.harvest_calls.is_not(None))
        .order_by(table.id.desc())
        .limit(latest)
    )
    with _engine(url).connect() as conn:
        frame = pd.DataFrame(conn.execute(query).all(), columns=[c.name for c in columns])
    if frame.empty:
        return frame
    frame = frame.iloc[::-1]
    group = frame["group_number"]
    moved_on = frame["batch_number"] != frame.groupby(group)["batch_number"].shift()
    stretch = moved_on.groupby(group).cumsum()
    last = frame.groupby([group, stretch]).tail(1).dropna(subset=["estimated_coverage"])
    last = last.assign(fetched_at=pd.to_datetime(last["fetched_at"], utc=True))
    return last.reset_index(drop=True)


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def reason_pattern(reason: Any) -> str:
    """A reason with its numbers blanked, so "elevation=9999 outside ..." rows group together;
    what follows a ";" (the contract's list of accepted values) is left out."""
    if isinstance(reason, dict):
        reason = reason.get("reason") or reason.get("message") or reason
    return _NUMBER.sub("#", str(reason).split(";", 1)[0]).strip()


def reason_column(reason: str) -> str:
    """The contract column a reason is about, or "" when it names none (a whole-row problem)."""
    mentioned = [(reason.find(name), name) for name in contract.COLUMNS if name in reason]
    return min(mentioned)[1] if mentioned else ""


@st.cache_data(ttl=SUMMARY_TTL_S, show_spinner=False)
def quarantine_reasons(url: str, latest: int = 20_000) -> pd.DataFrame:
    """Counts of reason patterns over the latest quarantined rows, most frequent first."""
    query = select(quarantined_rows.c.reasons).order_by(quarantined_rows.c.id.desc()).limit(latest)
    counts: Counter[str] = Counter()
    with _engine(url).connect() as conn:
        for (reasons,) in conn.execute(query):
            items = reasons if isinstance(reasons, list) else [reasons]
            counts.update({reason_pattern(item) for item in items})
    frame = pd.DataFrame(counts.most_common(), columns=["reason", "rows"])
    frame.insert(0, "column", [reason_column(reason) for reason in frame["reason"]])
    return frame


def connectivity(url: str) -> Overview:
    """The uncached check behind the status page: connect, find the schema, count."""
    overview.clear()
    return overview(url)
