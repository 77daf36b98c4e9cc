"""A harvest run against PostgreSQL: does dedup stay cheap when the table already holds 300k rows?

    .venv/bin/python benchmarks/harvest_bench.py [--repeat 2]

The built-in data API serves the shared data set with its defaults (10 batches of ~29.8k rows, a
tenth of the current batch per call), in this process on a free loopback port. One harvest run
(`pipeline.harvest.harvest_batch`, no pause between calls) collects batch 1 into
- an empty database (its rows are new at first, duplicates later), and
- a database already holding all 297,655 rows of the data set: every row received is a
  duplicate, the worst case for dedup, against a 300k-row unique index.
If dedup scanned the table, the second would be slower per row; it should not be. Reported:
rows received per second of the whole run (HTTP, JSON, validation, hashing, load) and of the
database load alone (`write_batch`, timed around each call), the run's CPU seconds (this
process, which also serves the data API) and the database backends' CPU seconds.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
from ingest_bench import ADMIN_URL, DATASET, _backend_cpu

from forestops.config import Settings
from forestops.pipeline.harvest import HarvestResult, harvest_batch
from forestops.source.dataset import read_dataset
from forestops.source.server import create_app
from forestops.store import loader
from forestops.store.database import get_engine, upgrade
from forestops.store.roles import drop_throwaway_roles
from forestops.webserver import BackgroundServer


def timed(function: Callable[..., Any], spent: list[float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)

    return wrapper


def one_run(frame: pd.DataFrame, preload: bool, tmp: Path) -> dict[str, float]:
    name = f"forestops_harvest_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    load_seconds: list[float] = []
    original = loader.write_batch
    try:
        upgrade(url)
        if preload:
            header = loader.BatchHeader("preload", 9, None, datetime.now(UTC), None, None)
            with get_engine(url).begin() as connection:
                original(connection, header, frame, [])
            with get_engine(url).connect() as connection:
                connection.exec_driver_sql("ANALYZE forest_cover_samples")
        state = tmp / f"{name}.json"
        api = create_app(frame, state, min_update_time=3600, seed=1)
        with BackgroundServer(api) as server:
            settings = Settings(
                database_url=url,
                source_api_base_url=server.url,
                harvest_min_interval_s=0,
                harvest_time_budget_s=3600,
            )
            loader.write_batch = timed(original, load_seconds)
            backends = _backend_cpu(name) or {}
            started, cpu = time.perf_counter(), time.process_time()
            result: HarvestResult = harvest_batch(settings)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            after = _backend_cpu(name) or {}
    finally:
        loader.write_batch = original
        get_engine(url).dispose()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            drop_throwaway_roles(admin, name)  # migration 0007's groups outlive the database
    return {
        "calls": result.calls,
        "received": result.received,
        "inserted": result.inserted,
        "coverage": result.estimated_coverage or 0.0,
        "wall": wall,
        "rows_per_s": result.received / wall,
        "load_s": sum(load_seconds),
        "load_rows_per_s": result.received / sum(load_seconds),
        "load_ms_per_call": 1000 * sum(load_seconds) / len(load_seconds),
        "cpu": cpu,
        "db_cpu": sum(v - backends.get(pid, 0.0) for pid, v in after.items()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--tmp", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    frame = read_dataset(args.dataset)
    print(f"{len(frame):,} rows of {args.dataset.name}; cpus {os.cpu_count()}")
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    runs: dict[str, list[dict[str, float]]] = {"empty table": [], "table of 297,655 rows": []}
    for _ in range(args.repeat):  # interleaved, so load changes hit both alike
        runs["empty table"].append(one_run(frame, False, args.tmp))
        runs["table of 297,655 rows"].append(one_run(frame, True, args.tmp))
    print(
        "\n| harvest of batch 1 into | calls | received | inserted | est. coverage | wall s "
        "| rows/s (run) | load s | rows/s (load) | load ms/call | CPU s | DB CPU s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, results in runs.items():
        best = max(results, key=lambda r: r["rows_per_s"])
        print(
            f"| {label} | {best['calls']:.0f} | {best['received']:,.0f} | {best['inserted']:,.0f} "
            f"| {best['coverage']:.1%} | {best['wall']:.1f} | {best['rows_per_s']:,.0f} "
            f"| {best['load_s']:.1f} | {best['load_rows_per_s']:,.0f} "
            f"| {best['load_ms_per_call']:.0f} | {best['cpu']:.1f} | {best['db_cpu']:.1f} |"
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
