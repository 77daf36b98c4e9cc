"""benchmarks/locustfile.py against a real `forestops serve` with API keys on: Locust with worker
processes runs it headless, every kind of request (single record, batch, admin `/reload`) is
made and answered correctly, and the service counts the same predictions Locust sent.

A few seconds of load from a tiny champion: it proves the locustfile works (keys, bodies, checks,
the multi-process mode the benchmark uses), never how fast anything is.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from forestops.webserver import free_port
from support.champion import SIGNING_KEY, champion_store
from support.forestops_up import FORESTOPS, wait_http_ok

LOCUSTFILE = Path(__file__).resolve().parents[2] / "benchmarks" / "locustfile.py"
LOCUST = str(Path(sys.executable).with_name("locust"))
USERS = 5


def served_predict_requests(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "forestops_http_requests_total"
        and sample.labels["route"] == "/predict"
        and sample.labels["status"] == "200"
    )


def test_locustfile_runs_headless_with_workers_and_every_request_succeeds(
    home: Path, dataset_path: Path, tmp_path: Path
) -> None:
    store = champion_store(tmp_path / "store", dataset_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    keys = {"API_KEYS": "client-key-for-the-test", "ADMIN_API_KEY": "admin-key-for-the-test"}
    env = {**os.environ, **keys, "FORESTOPS_HOME": str(home)}
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:  # the child keeps its own descriptor
        server = subprocess.Popen(
            [FORESTOPS, "serve", "--port", str(port)],
            env={
                **env,
                "MLFLOW_TRACKING_URI": store.settings.mlflow_tracking_uri,
                "MODEL_NAME": store.settings.model_name,
                "MODEL_POLL_INTERVAL_S": "0",
                "INFERENCE_RUNTIME": "native",
                "MODEL_SIGNING_KEY": SIGNING_KEY,  # the store's models were signed in its home
            },
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        try:
            wait_http_ok(f"{base}/health", timeout=120)
        except AssertionError as error:
            raise AssertionError(log.read_text()[-3000:]) from error
        locust = subprocess.run(
            [
                *(LOCUST, "-f", str(LOCUSTFILE), "--host", base, "--headless"),
                *(
                    "-u",
                    str(USERS),
                    "-r",
                    str(USERS),
                    "-t",
                    "5s",
                    "--processes",
                    "2",
                    "--only-summary",
                ),
                *("--csv", str(tmp_path / "run"), "--exit-code-on-error", "1"),
            ],
            env={
                **env,
                "FORESTOPS_DATASET": str(dataset_path),
                "LOCUST_ROWS": "3000",
                "LOCUST_BATCH_SHARE": "0.5",  # batches are rare in the benchmark; here, half
                "LOCUST_RELOAD_EVERY": "1",
            },
            capture_output=True,
            text=True,
            timeout=180,
        )
        served = served_predict_requests(base)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)
    assert locust.returncode == 0, locust.stderr[-3000:]
    with (tmp_path / "run_stats.csv").open() as stats:
        rows = {row["Name"]: row for row in csv.DictReader(stats)}
    made = {name: int(row["Request Count"]) for name, row in rows.items()}
    assert made["/predict (1 record)"] > 0, made
    assert made["/predict (100-1,000 records)"] > 0, made
    assert made["/reload"] > 0, made
    assert rows["Aggregated"]["Failure Count"] == "0", locust.stderr[-3000:]
    # When the run time is up Locust kills its users with their requests in flight: the service
    # answers (and counts) those, Locust records none of them. One request per user at most.
    sent = made["/predict (1 record)"] + made["/predict (100-1,000 records)"]
    assert sent <= served <= sent + USERS, (served, made)
