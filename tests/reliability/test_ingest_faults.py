"""Ingestion end to end (fetch, archive, validate, PostgreSQL) against a data API that misbehaves.

tests/integration/test_ingest_client.py proves the client's retry rules one by one; here every
fault goes through `ingest_batch` into the real database, and the question is what is stored
afterwards: every good row exactly once, every bad row quarantined with its reasons, and after a
failure nothing at all (no batch row, no sample, no archived payload).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from forestops.cli import app as cli
from forestops.config import Settings
from forestops.pipeline.ingest import ingest_batch
from forestops.source.client import SourceError
from forestops.store.database import get_engine
from forestops.store.schema import forest_cover_samples, ingestion_batches, quarantined_rows
from support.faulty_source import Fault, FaultySource, payload, refusing_url

pytestmark = pytest.mark.postgres

GOOD = ["2596", "51", "3", "258", "0", "510", "221", "232", "148", "6279", "Rawah", "C7745", "4"]
GOOD_2 = [
    "3052",
    "80",
    "4",
    "170",
    "38",
    "85",
    "225",
    "232",
    "142",
    "716",
    "Cache la Poudre",
    "7201",
    "1",
]
GOOD_PAYLOAD = payload([GOOD, GOOD_2])


def settings_for(pg_url: str, url: str) -> Settings:
    return Settings(
        database_url=pg_url,
        source_api_base_url=url,
        source_retries=3,
        source_backoff_max_s=0.01,
        source_timeout_s=0.5,
    )


def stored(pg_url: str) -> dict[str, Any]:
    with get_engine(pg_url).connect() as connection:
        count = connection.execute(select(func.count()).select_from(forest_cover_samples))
        batches = connection.execute(select(ingestion_batches)).mappings().all()
        parked = connection.execute(select(quarantined_rows)).mappings().all()
        return {
            "samples": count.scalar(),
            "batches": [(b["status"], b["inserted"], b["quarantined"]) for b in batches],
            "reasons": [r["reasons"] for r in parked],
        }


def archived(home: Path) -> list[Path]:
    return [p for p in (home / "artifacts").rglob("*") if p.is_file()]


RECOVERED = {
    "500 twice": [Fault.error(500), Fault.error(500)],
    "502 then 503": [Fault.error(502), Fault.error(503)],
    "cut mid-body": [Fault(200, GOOD_PAYLOAD, cut=20)],
    "hang past the timeout": [Fault(hang=True)],
}


@pytest.mark.parametrize("faults", RECOVERED.values(), ids=RECOVERED.keys())
def test_transient_faults_are_retried_and_every_row_lands_once(
    faults: list[Fault], pg_url: str, home: Path
) -> None:
    with FaultySource([*faults, Fault.good(GOOD_PAYLOAD)]) as source:
        result = ingest_batch(settings_for(pg_url, source.url))
    assert source.requests == len(faults) + 1
    assert (result.status, result.inserted) == ("loaded", 2)
    assert stored(pg_url) == {"samples": 2, "batches": [("loaded", 2, 0)], "reasons": []}


FAILED = {
    "503 forever": Fault.error(503),
    "hang forever": Fault(hang=True),
    "cut forever": Fault(200, GOOD_PAYLOAD, cut=5),
}


@pytest.mark.parametrize("fault", FAILED.values(), ids=FAILED.keys())
def test_persistent_faults_fail_cleanly_after_the_retries_and_store_nothing(
    fault: Fault, pg_url: str, home: Path
) -> None:
    with FaultySource([fault]) as source, pytest.raises(SourceError, match="after 3 attempts"):
        ingest_batch(settings_for(pg_url, source.url))
    assert source.requests == 3
    assert stored(pg_url) == {"samples": 0, "batches": [], "reasons": []}
    assert archived(home) == []


def test_connection_refused_fails_cleanly_and_stores_nothing(pg_url: str, home: Path) -> None:
    with refusing_url() as url, pytest.raises(SourceError, match="ConnectError"):
        ingest_batch(settings_for(pg_url, url))
    assert stored(pg_url)["batches"] == []
    assert archived(home) == []


REJECTED = {
    "not json": Fault.good(b"<html>gateway</html>"),
    "json list": Fault.good(b"[1, 2, 3]"),
    "data not a list": Fault.good(b'{"group_number": 1, "batch_number": 1, "data": "x"}'),
    "no batch number": Fault.good(b'{"group_number": 1, "data": []}'),
    "truncated json": Fault.good(GOOD_PAYLOAD[:-7]),
}


@pytest.mark.parametrize("fault", REJECTED.values(), ids=REJECTED.keys())
def test_a_malformed_body_is_archived_and_recorded_rejected_never_half_loaded(
    fault: Fault, pg_url: str, home: Path
) -> None:
    with FaultySource([fault]) as source:
        result = ingest_batch(settings_for(pg_url, source.url))
    assert result.status == "rejected"
    assert stored(pg_url) == {"samples": 0, "batches": [("rejected", 0, 0)], "reasons": []}
    assert len(archived(home)) == 1  # the raw body is kept for inspection and replay


GARBAGE_ROWS: dict[str, list[Any]] = {
    "short row": GOOD[:5],
    "long row": [*GOOD, "extra"],
    "not a list": {"elevation": 1},
    "null row": None,
    "NaN": ["NaN", *GOOD[1:]],
    "Infinity": [*GOOD[:3], "Infinity", *GOOD[4:]],
    "huge number": ["9" * 400, *GOOD[1:]],
    "float": ["2596.5", *GOOD[1:]],
    "unicode area": [*GOOD[:10], "Ráwah☃", *GOOD[11:]],
    "html soil": [*GOOD[:11], "<script>alert(1)</script>", GOOD[12]],
    "sql area": [*GOOD[:10], "Rawah'; DROP TABLE forest_cover_samples; --", *GOOD[11:]],
    "sql number": ["1 OR 1=1", *GOOD[1:]],
    "label 9": [*GOOD[:12], "9"],
    "empty strings": [""] * 13,
}


def test_garbage_rows_are_quarantined_with_reasons_beside_the_good_ones(
    pg_url: str, home: Path
) -> None:
    rows = [GOOD, *GARBAGE_ROWS.values(), GOOD_2, GOOD]  # GOOD twice: stored once
    with FaultySource([Fault.good(payload(rows))]) as source:
        result = ingest_batch(settings_for(pg_url, source.url))
    bad = len(GARBAGE_ROWS)
    assert (result.inserted, result.duplicates, result.quarantined) == (2, 1, bad)
    after = stored(pg_url)
    assert after["samples"] == 2
    assert len(after["reasons"]) == bad and all(after["reasons"])


def test_empty_data_the_same_sample_again_and_all_collected(pg_url: str, home: Path) -> None:
    script = [
        Fault.good(payload([], batch=1)),
        Fault.good(payload([GOOD], batch=2)),
        Fault.good(payload([GOOD], batch=3)),
        Fault.all_collected(),
    ]
    with FaultySource(script) as source:
        settings = settings_for(pg_url, source.url)
        results = [ingest_batch(settings) for _ in script]
    assert [(r.status, r.inserted, r.duplicates) for r in results] == [
        ("loaded", 0, 0),
        ("loaded", 1, 0),
        ("loaded", 0, 1),
        ("all_collected", 0, 0),
    ]
    assert stored(pg_url)["samples"] == 1


def test_cli_with_the_database_unreachable_is_one_line_non_zero_and_writes_nothing(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with refusing_url() as closed, FaultySource([Fault.good(GOOD_PAYLOAD)]) as source:
        port = closed.rsplit(":", 1)[1]
        monkeypatch.setenv("DATABASE_URL", f"postgresql+psycopg://postgres@127.0.0.1:{port}/x")
        monkeypatch.setenv("SOURCE_API_BASE_URL", source.url)
        result = CliRunner().invoke(cli, ["ingest"])
    assert result.exit_code != 0
    message = result.output.strip()
    assert len(message.splitlines()) == 1, message
    assert "unavailable" in message and "Traceback" not in message
    assert source.requests == 0  # the schema check fails first: nothing fetched, nothing archived
    assert archived(home) == []
