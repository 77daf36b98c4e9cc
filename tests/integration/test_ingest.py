"""Ingestion end to end: the real data API on loopback into SQLite and the real PostgreSQL.

Bad payloads come from a second real HTTP server that answers a fixed body; database failures
are real too (a trigger or CHECK constraint that refuses one row, a backend terminated with
pg_terminate_backend while the batch transaction is open).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
from fastapi import FastAPI, Response
from sqlalchemy import Table, func, select, text
from typer.testing import CliRunner

from forestops import contract
from forestops.cli import app as cli
from forestops.config import Settings
from forestops.pipeline.ingest import IngestError, IngestResult, ingest_batch, replay_batch
from forestops.pipeline.validate import validate_rows
from forestops.source.dataset import read_dataset
from forestops.source.server import create_app
from forestops.store.archive import read_payload
from forestops.store.database import get_engine, upgrade
from forestops.store.loader import content_hashes
from forestops.store.schema import forest_cover_samples, ingestion_batches, quarantined_rows
from forestops.webserver import BackgroundServer, free_port

pytestmark = pytest.mark.postgres


def course_row(values: str) -> list[str]:
    return values.split(",")


GOOD = course_row("2596,51,3,258,0,510,221,232,148,6279,Rawah,C7745,4")
OTHER = course_row("3052,80,4,170,38,85,225,232,142,716,Cache la Poudre,7201,1")  # aliases
POISON = course_row("3999,80,4,170,38,85,225,232,142,716,Neota,C7201,1")
OUT_OF_RANGE = course_row("2596,999,3,258,0,510,221,232,148,6279,Rawah,C7745,4")


@pytest.fixture(scope="module")
def subset(dataset_path: Path) -> pd.DataFrame:
    return read_dataset(dataset_path, nrows=3000)


def settings_for(db_url: str, source: str) -> Settings:
    return Settings(
        database_url=db_url, source_api_base_url=source, source_retries=2, source_backoff_max_s=0.01
    )


def fixed_source(body: bytes) -> FastAPI:
    """A course-like API answering every /data call with `body`."""
    app = FastAPI()

    @app.get("/data")
    def data(group_number: int) -> Response:
        return Response(body, media_type="application/json")

    return app


def payload(*rows: list[str], batch: int = 1) -> bytes:
    return json.dumps({"group_number": 1, "batch_number": batch, "data": list(rows)}).encode()


def rows_of(db_url: str, table: Table) -> list[dict[str, Any]]:
    with get_engine(db_url).connect() as connection:
        return [dict(row) for row in connection.execute(select(table)).mappings()]


def assert_counts_add_up(db_url: str) -> None:
    batches = rows_of(db_url, ingestion_batches)
    for batch in batches:
        assert batch["received"] == batch["inserted"] + batch["duplicates"] + batch["quarantined"]
    with get_engine(db_url).connect() as connection:
        stored = connection.execute(select(func.count()).select_from(forest_cover_samples)).scalar()
        parked = connection.execute(select(func.count()).select_from(quarantined_rows)).scalar()
    assert stored == sum(b["inserted"] for b in batches)
    assert parked == sum(b["quarantined"] for b in batches)


def canonical_rows(db_url: str) -> list[tuple[Any, ...]]:
    columns = [
        c for c in forest_cover_samples.c if c.name not in ("id", "content_hash", "batch_id")
    ]
    with get_engine(db_url).connect() as connection:
        return [tuple(map(str, row)) for row in connection.execute(select(*columns))]


def test_rows_land_and_a_repeated_payload_adds_nothing(
    db_url: str, subset: pd.DataFrame, tmp_path: Path
) -> None:
    frame = subset.head(1000)
    api = create_app(frame, tmp_path / "state.json", min_update_time=3600, sample_fraction=1)
    with BackgroundServer(api) as server:
        settings = settings_for(db_url, server.url)
        first = ingest_batch(settings)
        second = ingest_batch(settings)  # same batch: its window is still open
    assert first == IngestResult(first.batch_id, "loaded", 1, 100, 100, 0, 0)
    assert (second.status, second.received, second.inserted, second.duplicates) == (
        "loaded",
        100,
        0,
        100,
    )
    assert_counts_add_up(db_url)
    stored = set(canonical_rows(db_url))
    assert len(stored) == 100 and stored <= set(map(tuple, frame.astype(str).to_numpy().tolist()))
    [batch, _] = rows_of(db_url, ingestion_batches)
    assert (batch["group_number"], batch["batch_number"], batch["status"]) == (1, 1, "loaded")
    assert batch["source"] == server.url
    raw = read_payload(batch["payload_uri"])
    assert len(json.loads(raw)["data"]) == 100
    assert batch["payload_sha256"] == hashlib.sha256(raw).hexdigest()


def test_content_hash_is_the_md5_of_the_canonical_values(pg_url: str, home: Path) -> None:
    """The documented definition, so anyone can recompute the dedup key in SQL."""
    with BackgroundServer(fixed_source(payload(GOOD, OTHER))) as server:
        ingest_batch(settings_for(pg_url, server.url))
    table = forest_cover_samples.c
    values = func.concat_ws("|", *(table[name] for name in contract.COLUMNS))
    with get_engine(pg_url).connect() as connection:
        recomputed = connection.execute(select(table.content_hash == func.md5(values)))
        assert recomputed.scalars().all() == [True, True]
    assert content_hashes(validate_rows([GOOD])[0]) == [
        hashlib.md5(b"2596|51|3|258|0|510|221|232|148|6279|Rawah|C7745|4").hexdigest()
    ]


def test_bad_rows_are_quarantined_and_the_good_rows_load(
    db_url: str, subset: pd.DataFrame, tmp_path: Path
) -> None:
    frame = subset.head(20).astype(object)
    frame.iloc[1, 1] = "999"  # aspect out of range
    frame.iloc[2, 11] = "C0000"  # unknown soil
    frame.iloc[3, 0] = "tall"  # not a number
    frame.iloc[4, 10] = "Yosemite"  # unknown area
    frame.iloc[4, 12] = "9"  # unknown label, same row
    api = create_app(frame, tmp_path / "s.json", sample_fraction=1, n_batches=1)
    with BackgroundServer(api) as server:
        result = ingest_batch(settings_for(db_url, server.url))
    assert (result.status, result.received, result.inserted, result.quarantined) == (
        "loaded",
        20,
        16,
        4,
    )
    assert_counts_add_up(db_url)
    parked = {tuple(row["raw"]): row["reasons"] for row in rows_of(db_url, quarantined_rows)}
    reasons = {raw[0]: "; ".join(r) for raw, r in parked.items()}
    assert "aspect=999 outside [0, 360]" in reasons[str(frame.iloc[1, 0])]
    assert "unknown soil_type 'C0000'" in reasons[str(frame.iloc[2, 0])]
    assert "elevation must be an integer, got 'tall'" in reasons["tall"]
    both = parked[tuple(map(str, frame.iloc[4]))]
    assert len(both) == 2 and "Yosemite" in both[0] and "cover_type=9" in both[1]


def test_wrong_arity_aliases_and_repeats_inside_one_payload(db_url: str) -> None:
    body = payload(GOOD, GOOD[:12], OTHER, GOOD, [*OTHER, "x"], OTHER)
    with BackgroundServer(fixed_source(body)) as server:
        result = ingest_batch(settings_for(db_url, server.url))
    assert (result.received, result.inserted, result.duplicates, result.quarantined) == (6, 2, 2, 2)
    assert_counts_add_up(db_url)
    stored = {row[10:] for row in canonical_rows(db_url)}
    assert stored == {("Rawah", "C7745", "4"), ("Cache", "C7201", "1")}  # aliases canonical
    parked = rows_of(db_url, quarantined_rows)
    assert [(row["row_number"], row["reasons"]) for row in parked] == [
        (2, ["expected 13 values in the course's column order, got 12"]),
        (5, ["expected 13 values in the course's column order, got 14"]),
    ]
    assert parked[0]["raw"] == GOOD[:12]


@pytest.mark.parametrize(
    "body", [b"<html>502 proxy error</html>", b'{"group_number": 1, "data": "none"}']
)
def test_a_malformed_payload_is_recorded_and_rejected(db_url: str, body: bytes) -> None:
    with BackgroundServer(fixed_source(body)) as server:
        result = ingest_batch(settings_for(db_url, server.url))
    assert result.status == "rejected" and result.inserted == 0
    assert "malformed payload" in result.message
    [batch] = rows_of(db_url, ingestion_batches)
    assert (batch["id"], batch["status"], batch["received"]) == (result.batch_id, "rejected", 0)
    assert batch["message"] == result.message
    assert read_payload(batch["payload_uri"]) == body  # kept exactly as received
    assert rows_of(db_url, forest_cover_samples) == []


def poison_row(db_url: str) -> None:
    """A real database failure: the database itself refuses rows with elevation 3999."""
    upgrade(db_url)
    with get_engine(db_url).begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.execute(
                text(
                    "CREATE TRIGGER poison BEFORE INSERT ON forest_cover_samples "
                    "WHEN NEW.elevation = 3999 BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
                )
            )
        else:
            connection.execute(
                text(
                    "ALTER TABLE forest_cover_samples "
                    "ADD CONSTRAINT poison CHECK (elevation <> 3999)"
                )
            )


def cure(db_url: str) -> None:
    with get_engine(db_url).begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.execute(text("DROP TRIGGER poison"))
        else:
            connection.execute(text("ALTER TABLE forest_cover_samples DROP CONSTRAINT poison"))


def test_a_failure_mid_batch_leaves_no_partial_batch_and_replays(db_url: str) -> None:
    poison_row(db_url)
    body = payload(GOOD, OUT_OF_RANGE, OTHER, POISON)
    with BackgroundServer(fixed_source(body)) as server:
        with pytest.raises(IngestError, match=r"not loaded, rolled back: .*poison") as caught:
            ingest_batch(settings_for(db_url, server.url))
        [failed] = rows_of(db_url, ingestion_batches)
        assert f"forestops ingest --replay {failed['id']}" in str(caught.value)
        assert (failed["status"], failed["received"], failed["inserted"]) == ("failed", 0, 0)
        assert rows_of(db_url, forest_cover_samples) == []
        assert rows_of(db_url, quarantined_rows) == []  # written before the failure, rolled back

        cure(db_url)
        replayed = replay_batch(settings_for(db_url, server.url), failed["id"])
    assert (replayed.status, replayed.inserted, replayed.quarantined) == ("loaded", 3, 1)
    batch = next(b for b in rows_of(db_url, ingestion_batches) if b["id"] == replayed.batch_id)
    assert batch["replay_of"] == failed["id"]
    assert batch["payload_uri"] == failed["payload_uri"]
    assert_counts_add_up(db_url)


def test_a_backend_killed_during_the_load_leaves_no_partial_batch(
    pg_url: str, home: Path, subset: pd.DataFrame, tmp_path: Path
) -> None:
    """A second connection holds a lock the load needs, then terminates the loading backend."""
    upgrade(pg_url)
    plain_url = pg_url.replace("+psycopg", "")
    api = create_app(subset.head(500), tmp_path / "s.json", min_update_time=3600, sample_fraction=1)
    with BackgroundServer(api) as server, psycopg.connect(plain_url) as blocker:
        settings = settings_for(pg_url, server.url)
        blocker.execute("LOCK TABLE forest_cover_samples IN ACCESS EXCLUSIVE MODE")
        outcome: list[BaseException | IngestResult] = []

        def load() -> None:
            try:
                outcome.append(ingest_batch(settings))
            except BaseException as error:
                outcome.append(error)

        loader = threading.Thread(target=load)
        loader.start()
        pid = _wait_for_blocked_backend(blocker)
        with blocker.cursor() as cursor:  # the batch row is written and its transaction open
            cursor.execute("SELECT count(*) FROM ingestion_batches")
            assert cursor.fetchone() == (0,)  # ...but invisible to everyone else
        blocker.execute("SELECT pg_terminate_backend(%s)", (pid,))
        blocker.rollback()
        loader.join(timeout=60)
        [error] = outcome
        assert isinstance(error, IngestError) and "rolled back" in str(error)
        assert rows_of(pg_url, forest_cover_samples) == []
        assert [b["status"] for b in rows_of(pg_url, ingestion_batches)] == ["failed"]

        again = ingest_batch(settings)  # the pool dropped the dead connection
    assert (again.status, again.inserted) == ("loaded", 50)
    assert_counts_add_up(pg_url)


def _wait_for_blocked_backend(blocker: psycopg.Connection) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        row = blocker.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        ).fetchone()
        if row:
            return int(row[0])
        time.sleep(0.05)
    raise AssertionError("the loader never waited for the lock")


def test_replay_of_a_loaded_batch_adds_nothing(
    db_url: str, subset: pd.DataFrame, tmp_path: Path
) -> None:
    api = create_app(subset.head(500), tmp_path / "s.json", sample_fraction=1)
    with BackgroundServer(api) as server:
        settings = settings_for(db_url, server.url)
        original = ingest_batch(settings)
    replayed = replay_batch(settings, original.batch_id or 0)
    assert (replayed.received, replayed.inserted, replayed.duplicates) == (50, 0, 50)
    assert replayed.batch_number == original.batch_number
    with pytest.raises(IngestError, match="no ingestion batch 999"):
        replay_batch(settings, 999)


def test_every_batch_once_loads_every_distinct_row_exactly_once(
    db_url: str, subset: pd.DataFrame, tmp_path: Path
) -> None:
    frame = pd.concat([subset, subset.sample(200, random_state=1)], ignore_index=True)
    api = create_app(frame, tmp_path / "s.json", min_update_time=0, sample_fraction=1)
    with BackgroundServer(api) as server:
        settings = settings_for(db_url, server.url)
        results = [ingest_batch(settings) for _ in range(11)]
    assert [r.status for r in results] == ["loaded"] * 10 + ["all_collected"]
    assert [r.batch_number for r in results[:10]] == list(range(1, 11))
    assert sum(r.received for r in results) == len(frame)
    assert sum(r.inserted for r in results) == len(subset)
    assert sum(r.duplicates for r in results) == 200
    stored = canonical_rows(db_url)
    assert len(stored) == len(set(stored)) == len(subset)
    assert set(stored) == set(map(tuple, subset.astype(str).to_numpy().tolist()))
    assert_counts_add_up(db_url)


def test_ingest_command(home: Path, subset: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    api = create_app(subset.head(200), home.parent / "s.json", min_update_time=0, sample_fraction=1)
    with BackgroundServer(api) as server:
        monkeypatch.setenv("SOURCE_API_BASE_URL", server.url)
        loaded = runner.invoke(cli, ["ingest", "--group", "2"])
        assert loaded.exit_code == 0, loaded.output
        assert loaded.stdout.strip() == (
            "batch 1 (source batch 1) loaded: 20 received, 20 inserted, 0 duplicates, 0 quarantined"
        )
        replayed = runner.invoke(cli, ["ingest", "--replay", "1"])
        assert replayed.exit_code == 0 and "0 inserted, 20 duplicates" in replayed.stdout
        for _ in range(9):
            assert runner.invoke(cli, ["ingest", "--group", "2"]).exit_code == 0
        done = runner.invoke(cli, ["ingest", "--group", "2"])
    assert done.exit_code == 0
    assert done.stdout.count("\n") == 1 and done.stdout.startswith("all data collected: ")

    monkeypatch.setenv("SOURCE_API_BASE_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("SOURCE_RETRIES", "2")
    monkeypatch.setenv("SOURCE_BACKOFF_MAX_S", "0.01")
    down = runner.invoke(cli, ["ingest"])
    assert down.exit_code == 1 and "Traceback" not in down.output
    *retries, last = down.stderr.strip().splitlines()
    assert last.startswith("ingest failed: data API http://127.0.0.1:")
    assert last.endswith("failed after 2 attempts: ConnectError: [Errno 111] Connection refused")
    assert len(retries) == 1 and "(attempt 1 of 2, next in 0.0 s)" in retries[0]

    missing = runner.invoke(cli, ["ingest", "--replay", "999"])
    assert missing.exit_code == 1 and missing.stderr == "ingest failed: no ingestion batch 999\n"


def test_ingest_command_exits_non_zero_on_a_rejected_payload(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with BackgroundServer(fixed_source(b"not json")) as server:
        monkeypatch.setenv("SOURCE_API_BASE_URL", server.url)
        result = CliRunner().invoke(cli, ["ingest"])
    assert result.exit_code == 1
    assert result.stdout.startswith("batch 1 rejected: malformed payload from ")


@pytest.fixture
def unreachable_db(home: Path) -> Iterator[str]:
    yield f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"


def test_an_unreachable_database_is_one_clear_error(
    unreachable_db: str, subset: pd.DataFrame, tmp_path: Path
) -> None:
    api = create_app(subset.head(100), tmp_path / "s.json", sample_fraction=1)
    with BackgroundServer(api) as server, pytest.raises(IngestError, match="unavailable"):
        ingest_batch(settings_for(unreachable_db, server.url))
