"""What migration 0002 and the harvest lock guarantee, on the real databases.

PostgreSQL checks the sample -> batch key per statement (triggers) instead of per row: the same
refusals as a declared foreign key must still happen. Loaders are serialised by a table lock
instead of ON CONFLICT: concurrent loads of overlapping rows must still store each row once.
The harvest lock must not outlive a holder that dies.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from alembic import command
from sqlalchemy import delete, func, insert, inspect, select, text, update
from sqlalchemy.exc import IntegrityError

from forestops import contract
from forestops.source.dataset import read_dataset
from forestops.store.database import alembic_config, get_engine, upgrade
from forestops.store.loader import BatchHeader, write_batch, write_unloaded
from forestops.store.locks import try_lock
from forestops.store.schema import forest_cover_samples, ingestion_batches

pytestmark = pytest.mark.slow

HARVEST_COLUMNS = {"harvest_calls", "distinct_rows", "estimated_batch_size", "estimated_coverage"}


@pytest.fixture(scope="module")
def rows(dataset_path: Path) -> pd.DataFrame:
    return read_dataset(dataset_path, nrows=2000).drop_duplicates().reset_index(drop=True)


def load(url: str, frame: pd.DataFrame) -> int:
    header = BatchHeader("tests", 1, 1, datetime.now(UTC), None, None)
    with get_engine(url).begin() as connection:
        return write_batch(connection, header, frame, [])[1].inserted


def test_the_migration_adds_the_harvest_columns_and_goes_back_and_forth(
    db_url: str, rows: pd.DataFrame
) -> None:
    upgrade(db_url)
    load(db_url, rows.head(50))
    columns = {c["name"] for c in inspect(get_engine(db_url)).get_columns("ingestion_batches")}
    assert columns >= HARVEST_COLUMNS
    assert columns == {c.name for c in ingestion_batches.c}  # schema.py says the same
    get_engine(db_url).dispose()

    command.downgrade(alembic_config(db_url), "0001")  # with rows: the declared key comes back
    columns = {c["name"] for c in inspect(get_engine(db_url)).get_columns("ingestion_batches")}
    assert not HARVEST_COLUMNS & columns
    get_engine(db_url).dispose()
    upgrade(db_url)
    assert load(db_url, rows.head(60)) == 10


def test_postgresql_still_refuses_what_the_batch_key_refused(
    pg_url: str, rows: pd.DataFrame
) -> None:
    upgrade(pg_url)
    load(pg_url, rows.head(5))
    engine = get_engine(pg_url)
    with engine.connect() as connection:
        [batch_id] = connection.execute(select(ingestion_batches.c.id)).scalars()
        collation = connection.execute(
            text(
                "SELECT collation_name FROM information_schema.columns "
                "WHERE table_name = 'forest_cover_samples' AND column_name = 'content_hash'"
            )
        ).scalar_one()
    assert collation == "C"
    orphan = {**rows.iloc[10].to_dict(), "content_hash": "0" * 32, "batch_id": batch_id + 1}
    refusals = [
        insert(forest_cover_samples).values(orphan),
        update(forest_cover_samples).values(batch_id=batch_id + 1),
        delete(ingestion_batches).where(ingestion_batches.c.id == batch_id),
        update(ingestion_batches).values(id=batch_id + 1),
    ]
    for statement in refusals:
        with (
            pytest.raises(IntegrityError, match="fk_forest_cover_samples_batch_id_ingestion"),
            engine.begin() as connection,
        ):
            connection.execute(statement)
    with engine.begin() as connection:  # what the key allows still works
        connection.execute(update(ingestion_batches).values(message="checked"))
        header = BatchHeader("tests", 1, None, datetime.now(UTC), None, None)
        spare = write_unloaded(connection, header, "failed", "nothing stored")
        connection.execute(delete(ingestion_batches).where(ingestion_batches.c.id == spare))


def test_concurrent_loads_of_overlapping_rows_store_each_row_once(
    db_url: str, rows: pd.DataFrame
) -> None:
    upgrade(db_url)
    parts = [rows.iloc[:1200], rows.iloc[600:], rows.iloc[300:900]]
    inserted: list[int] = []
    loaders = [threading.Thread(target=lambda p=p: inserted.append(load(db_url, p))) for p in parts]
    for thread in loaders:
        thread.start()
    for thread in loaders:
        thread.join(timeout=120)
    assert len(inserted) == 3 and sum(inserted) == len(rows)
    with get_engine(db_url).connect() as connection:
        stored = connection.execute(select(func.count()).select_from(forest_cover_samples))
        assert stored.scalar_one() == len(rows)
        hashes = connection.execute(select(forest_cover_samples.c.content_hash)).scalars().all()
    assert len(set(hashes)) == len(rows)


def test_repeats_inside_one_load_are_stored_once(db_url: str, rows: pd.DataFrame) -> None:
    upgrade(db_url)
    doubled = pd.concat([rows.head(100), rows.head(100)], ignore_index=True)
    assert load(db_url, doubled) == 100
    assert load(db_url, rows.head(150)) == 50
    columns = [forest_cover_samples.c[name] for name in contract.COLUMNS]
    with get_engine(db_url).connect() as connection:
        stored = pd.DataFrame(connection.execute(select(*columns)).all(), columns=contract.COLUMNS)
    assert len(stored) == len(stored.drop_duplicates()) == 150


HOLDER = """
import sys, time
from forestops.store.locks import try_lock
with try_lock(sys.argv[1], "forestops.harvest", 1) as acquired:
    print("held" if acquired else "busy", flush=True)
    time.sleep(600)
"""


def test_the_harvest_lock_dies_with_its_holder(db_url: str) -> None:
    upgrade(db_url)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, db_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with try_lock(db_url, "forestops.harvest", 1) as acquired:
            assert not acquired
        with try_lock(db_url, "forestops.harvest", 2) as acquired:
            assert acquired  # another group is another lock
    finally:
        holder.kill()
        holder.wait(timeout=30)
    deadline = time.monotonic() + 30
    while True:  # the server notices the dead session within moments; the kernel at once
        with try_lock(db_url, "forestops.harvest", 1) as acquired:
            if acquired:
                break
        assert time.monotonic() < deadline, "the lock outlived its holder"
        time.sleep(0.1)
