"""Bulk loading into PostgreSQL: forestops' loader against a naive `pandas.DataFrame.to_sql`.

    .venv/bin/python benchmarks/ingest_bench.py [--rows 300000] [--repeat 3]

Every run loads the same canonical rows of the shared data set into a fresh database with the
real schema (Alembic head: unique content hash, batch foreign key, indexes):
- forestops: `store.loader.write_batch` (content hashes, COPY into a temporary table,
  INSERT ... SELECT ... WHERE NOT EXISTS), inside one transaction;
- to_sql, same table: `DataFrame.to_sql(..., if_exists="append")` with pandas' defaults into the
  same table (it needs the same content hash and batch id columns, computed the same way);
- the same into the schema of revision 0001, the baseline the loader was first measured against:
  migration 0002 checks the batch key once per statement, which costs a row-by-row writer like
  to_sql more than the declared key did, so the head-schema baseline alone would flatter us;
- to_sql, bare table: `DataFrame.to_sql` into a new table pandas creates itself (no key, no
  index, no dedup: less work than either of the above), for scale.
The best of `--repeat` runs counts (the machine is shared, noise only ever adds time). CPU
seconds (this process plus the database backends, read from /proc when PostgreSQL runs on this
machine) are printed too: on a loaded machine they say more about the work done than wall time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import psycopg
from sqlalchemy import func, insert, select

from forestops.source.dataset import read_dataset
from forestops.store.database import get_engine, upgrade
from forestops.store.loader import BatchHeader, content_hashes, write_batch
from forestops.store.roles import drop_throwaway_roles
from forestops.store.schema import forest_cover_samples, ingestion_batches

ROOT = Path(__file__).resolve().parents[1]
DATASET = Path(os.environ.get("FORESTOPS_DATASET", ROOT.parent / "shared/data/covertype.csv.gz"))
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def forestops_loader(url: str, frame: pd.DataFrame) -> None:
    header = BatchHeader("benchmark", 1, 1, datetime.now(UTC), None, None)
    with get_engine(url).begin() as connection:
        _, counts = write_batch(connection, header, frame, [])
    assert counts.inserted == len(frame), counts


def to_sql_same_table(url: str, frame: pd.DataFrame) -> None:
    engine = get_engine(url)
    with engine.begin() as connection:
        batch_id = connection.execute(
            insert(ingestion_batches)
            .values(
                source="benchmark",
                group_number=1,
                fetched_at=datetime.now(UTC),
                status="loaded",
                received=0,
                inserted=0,
                duplicates=0,
                quarantined=0,
            )
            .returning(ingestion_batches.c.id)
        ).scalar_one()
    rows = frame.assign(content_hash=content_hashes(frame), batch_id=batch_id)
    rows.to_sql(forest_cover_samples.name, engine, if_exists="append", index=False)
    with engine.connect() as connection:
        stored = connection.execute(select(func.count()).select_from(forest_cover_samples))
        assert stored.scalar_one() == len(frame)


def to_sql_bare_table(url: str, frame: pd.DataFrame) -> None:
    frame.to_sql("naive_samples", get_engine(url), index=False)


METHODS: dict[str, tuple[Callable[[str, pd.DataFrame], None], str]] = {
    "forestops loader (COPY + anti-join INSERT)": (forestops_loader, "head"),
    "pandas to_sql, same table": (to_sql_same_table, "head"),
    "pandas to_sql, same table at schema 0001": (to_sql_same_table, "0001"),
    "pandas to_sql, bare new table": (to_sql_bare_table, "head"),
}


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float | None  # this process + the database's backends; None if not measurable


def timed_run(
    method: Callable[[str, pd.DataFrame], None], frame: pd.DataFrame, revision: str = "head"
) -> Run:
    name = f"forestops_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        upgrade(url, revision)
        backends_before = _backend_cpu(name)
        started, client_started = time.perf_counter(), time.process_time()
        method(url, frame)
        wall = time.perf_counter() - started
        client = time.process_time() - client_started
        backends_after = _backend_cpu(name)
    finally:
        get_engine(url).dispose()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            drop_throwaway_roles(admin, name)  # migration 0007's groups outlive the database
    if backends_before is None or backends_after is None:
        return Run(wall, None)
    server = sum(cpu - backends_before.get(pid, 0.0) for pid, cpu in backends_after.items())
    return Run(wall, client + server)


def _backend_cpu(database: str) -> dict[int, float] | None:
    """CPU seconds used so far by each backend connected to `database` (local server only:
    read from /proc, since the machine is shared and wall time also measures everyone else)."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        pids = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)
        ).fetchall()
    try:
        return {pid: _process_cpu(pid) for (pid,) in pids}
    except OSError:
        return None


def _process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dataset", type=Path, default=DATASET)
    args = parser.parse_args()

    frame = read_dataset(args.dataset, nrows=args.rows)
    with psycopg.connect(ADMIN_URL) as admin:
        server = admin.execute("SHOW server_version").fetchone()
    print(f"{len(frame):,} rows of {args.dataset.name}, PostgreSQL {server and server[0]}")
    print(f"cpus: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.1f}")
    runs: dict[str, list[Run]] = {name: [] for name in METHODS}
    for _ in range(args.repeat):  # interleaved, so load changes hit every method alike
        for name, (method, revision) in METHODS.items():
            runs[name].append(timed_run(method, frame, revision))

    print("\n| method | best wall s | median wall s | rows/s (best wall) | best CPU s |")
    print("|---|---:|---:|---:|---:|")
    best: dict[str, Run] = {}
    for name, results in runs.items():
        cpus = [r.cpu for r in results if r.cpu is not None]
        best[name] = Run(min(r.wall for r in results), min(cpus) if cpus else None)
        median = statistics.median(r.wall for r in results)
        cpu = f"{best[name].cpu:.2f}" if best[name].cpu is not None else "n/a"
        rate = len(frame) / best[name].wall
        print(f"| {name} | {best[name].wall:.2f} | {median:.2f} | {rate:,.0f} | {cpu} |")
    ours, same, same_0001, bare = best.values()
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    for label, other in (
        ("to_sql into the same table", same),
        ("to_sql into the same table at schema 0001", same_0001),
        ("to_sql into a bare table", bare),
    ):
        ratio = f"speed-up vs {label}: {other.wall / ours.wall:.1f}x wall"
        if ours.cpu and other.cpu:
            ratio += f", {other.cpu / ours.cpu:.1f}x CPU"
        print(ratio)


if __name__ == "__main__":
    main()
