"""The prediction log's cost on the request path: the same service with PREDICTION_LOG_ENABLED on
and off, side by side, and proof that no logged record is lost.

    .venv/bin/python benchmarks/prediction_log_bench.py [--rows 20000] [--rounds 3]

Fits the training pipeline's LightGBM candidate on `--rows` rows (serve_bench.fit_champion),
creates a fresh PostgreSQL database (FORESTOPS_TEST_PG's server, dropped at the end), and runs two
`forestops serve` processes on it, logging off and on. Rounds alternate between them (so both
see the same neighbours' load on this shared machine; which goes first alternates too): single-record requests at concurrency 1
and 16, then 1,000-record batches. It prints p50/p99 per setting, the on/off ratios, and the
records in prediction_log against the records the logging server answered (after its graceful
shutdown, which flushes the buffer) as a markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pandas as pd
import psycopg
from serve_bench import DEFAULT_DATASET, JSON, fit_champion, latencies, percentile_ms, start
from sqlalchemy import func, select

from forestops import contract
from forestops.config import Settings
from forestops.store.database import get_engine, upgrade
from forestops.store.roles import drop_throwaway_roles
from forestops.store.schema import prediction_log
from forestops.webserver import free_port

PG_ADMIN = os.environ.get("FORESTOPS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--dataset", type=Path, default=Path(os.environ.get("FORESTOPS_DATASET", DEFAULT_DATASET))
    )
    parser.add_argument("--rows", type=int, default=20_000, help="training rows for the champion")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--single-requests", type=int, default=1000, help="per round and setting")
    parser.add_argument("--batches", type=int, default=5, help="1,000-record requests per round")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="prediction-log-bench-"))
    settings = Settings(forestops_home=home, model_poll_interval_s=0)
    print(f"champion: {fit_champion(settings, args.dataset, args.rows)}", file=sys.stderr)
    frame = pd.read_csv(
        args.dataset, skiprows=range(1, 200_001), nrows=args.single_requests + 1000 * args.batches
    ).rename(columns=contract.canonical_column)[list(contract.FEATURE_NAMES)]
    records = frame.to_dict(orient="records")
    singles = [orjson.dumps(record) for record in records[: args.single_requests]]
    batches = [
        orjson.dumps(records[i * 1000 : (i + 1) * 1000]) for i in range(args.batches)
    ]  # fmt: skip

    database = f"prediction_log_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{database}"
    upgrade(url)
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "FORESTOPS_HOME": str(home),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MODEL_POLL_INTERVAL_S": "0",
        "DATABASE_URL": url,
    }
    processes: list[subprocess.Popen[bytes]] = []
    urls: dict[str, str] = {}
    answered = 0
    results: dict[str, dict[str, list[float]]] = {"off": {}, "on": {}}
    try:
        for setting in ("off", "on"):
            port = free_port()
            start(
                [str(bin_dir / "forestops"), "serve", "--port", str(port)],
                {**env, "PREDICTION_LOG_ENABLED": "true" if setting == "on" else "false"},
                f"http://127.0.0.1:{port}/health",
                processes,
            )
            urls[setting] = f"http://127.0.0.1:{port}/predict"
            latencies(urls[setting], singles[:200], 1)  # warm-up
            answered += 201 if setting == "on" else 0  # 200 and the connection warm-up
        for number in range(args.rounds):
            for setting in ("off", "on") if number % 2 == 0 else ("on", "off"):
                for concurrency in (1, 16):
                    values = latencies(urls[setting], singles, concurrency)
                    results[setting].setdefault(f"c{concurrency}", []).extend(values)
                    answered += (len(singles) + concurrency) if setting == "on" else 0
                values = []
                for body in batches:
                    with httpx.Client(headers=JSON, timeout=300) as http:
                        started = time.perf_counter()
                        http.post(urls[setting], content=body).raise_for_status()
                        values.append(time.perf_counter() - started)
                results[setting].setdefault("batch", []).extend(values)
                answered += 1000 * len(batches) if setting == "on" else 0
    finally:
        for process in processes:  # SIGINT: uvicorn's graceful shutdown flushes the log
            os.killpg(process.pid, signal.SIGINT)
        for process in processes:
            process.wait(60)
    with get_engine(url).connect() as conn:
        logged = conn.execute(select(func.count()).select_from(prediction_log)).scalar_one()
    get_engine(url).dispose()
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        drop_throwaway_roles(conn, database)  # migration 0007's groups outlive the database
    report(results, logged, answered)


def report(results: dict[str, dict[str, list[float]]], logged: int, answered: int) -> None:
    print("| load | logging off p50 / p99 (ms) | logging on p50 / p99 (ms) | p99 ratio on/off |")
    print("|---|---|---|---|")
    names = {"c1": "1 record, concurrency 1", "c16": "1 record, concurrency 16"}
    names["batch"] = "1,000 records, concurrency 1"
    for key, name in names.items():
        off, on = results["off"][key], results["on"][key]
        cells = [
            f"{percentile_ms(values, 50):.2f} / {percentile_ms(values, 99):.2f}"
            for values in (off, on)
        ]
        ratio = percentile_ms(on, 99) / percentile_ms(off, 99)
        print(f"| {name} ({len(on):,} requests) | {cells[0]} | {cells[1]} | {ratio:.2f} |")
    print(f"\nrecords answered with logging on: {answered:,}; rows in prediction_log: {logged:,}")


if __name__ == "__main__":
    main()
