"""Locust load for the inference service: real rows, mostly single records, some batches, reloads.

    .venv/bin/locust -f benchmarks/locustfile.py --host http://127.0.0.1:8000 \\
        --headless -u 100 -r 20 -t 2m --processes 2

`benchmarks/locust_limited.py` runs it against one `forestops serve` limited to 1 CPU and 512 MiB
and steps the users up; any service can be the host (the compose stack, a Kubernetes Service).

Each `Predictor` user sends about one request per second (`constant_throughput(1)`, so N users
are N requests/s for as long as the service keeps up): single records drawn from
`LOCUST_ROWS` rows of the shared data (`FORESTOPS_DATASET`, read when a worker starts, never a
file of ours), and with weight `LOCUST_BATCH_SHARE` a batch of 100-1,000 of them. The rows come
from past the first 200,000 (the benchmarks' champions train on the first 70,000), so they are
real, varied and mostly unseen. One `Reloader` user in the whole run posts `/reload` every
`LOCUST_RELOAD_EVERY` seconds with the admin key: a swap under load when the champion alias has
moved (the runner moves it), a cheap check when not. Keys come from the service's own settings
names: the first of `API_KEYS` for predictions, `ADMIN_API_KEY` for reloads (unset: none sent).
An answer counts as a failure unless it is 200 with one prediction per record sent.
"""

from __future__ import annotations

import os
import random
import time
from functools import cache
from pathlib import Path

import orjson
import pandas as pd
from locust import FastHttpUser, constant, constant_throughput, task

from forestops import contract

DATASET = Path(
    os.environ.get(
        "FORESTOPS_DATASET", Path(__file__).resolve().parents[2] / "shared/data/covertype.csv.gz"
    )
)
SKIP_ROWS = 200_000
BATCH_SIZES = (100, 1000)
BATCH_SHARE = float(os.environ.get("LOCUST_BATCH_SHARE", "0.02"))
RELOAD_EVERY = float(os.environ.get("LOCUST_RELOAD_EVERY", "10"))
API_KEY = os.environ.get("API_KEYS", "").split(",")[0].strip()
ADMIN_KEY = os.environ.get("ADMIN_API_KEY", "")
HEADERS = {"Content-Type": "application/json", **({"X-API-Key": API_KEY} if API_KEY else {})}


@cache
def bodies() -> tuple[list[bytes], list[tuple[int, bytes]]]:
    """(single-record bodies, (size, body) batches), encoded once per worker process: the
    client's CPU goes to sending, not to building JSON."""
    rows = int(os.environ.get("LOCUST_ROWS", "20000"))
    frame = pd.read_csv(DATASET, skiprows=range(1, SKIP_ROWS + 1), nrows=rows)
    records = frame.rename(columns=contract.canonical_column)[list(contract.FEATURE_NAMES)]
    rows_ = records.to_dict(orient="records")
    rng = random.Random(os.getpid())
    singles = [orjson.dumps(row) for row in rows_]
    batches = []
    for _ in range(64):
        size = rng.randint(*BATCH_SIZES)
        start = rng.randrange(len(rows_) - size)
        batches.append((size, orjson.dumps(rows_[start : start + size])))
    return singles, batches


class Predictor(FastHttpUser):
    wait_time = constant_throughput(1)

    def on_start(self) -> None:
        self.singles, self.batches = bodies()
        # Locust starts a worker's share of users together and constant_throughput keeps each on
        # its phase: without a random one, N users would arrive as one burst of N every second
        # (measured: p50 34 ms at 50 users instead of 4, all of it queueing in the service).
        time.sleep(random.random())  # gevent's: only this user waits

    def post(self, body: bytes, records: int, name: str) -> None:
        with self.client.post(
            "/predict", data=body, headers=HEADERS, name=name, catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
            elif records > 1 and len(orjson.loads(response.content)["predictions"]) != records:
                response.failure(f"not {records} predictions")
            elif records == 1 and response.content.count(b'"cover_type"') != 1:
                response.failure("not one prediction")  # a substring: no JSON parse per request

    @task(round(1000 * (1 - BATCH_SHARE)))
    def single(self) -> None:
        self.post(random.choice(self.singles), 1, "/predict (1 record)")

    @task(round(1000 * BATCH_SHARE))
    def batch(self) -> None:
        size, body = random.choice(self.batches)
        self.post(body, size, "/predict (100-1,000 records)")


class Reloader(FastHttpUser):
    fixed_count = 1
    wait_time = constant(RELOAD_EVERY)
    network_timeout = 300.0  # a swap loads (and on a new model text compiles) the champion

    @task
    def reload(self) -> None:
        headers = {"X-API-Key": ADMIN_KEY} if ADMIN_KEY else {}
        with self.client.post("/reload", headers=headers, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
