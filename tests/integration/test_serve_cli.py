"""`forestops serve` as a user starts it: a fresh FORESTOPS_HOME with the embedded SQLite store,
the champion from MLflow, a prediction answered and recorded in the prediction log, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
from sqlalchemy import func, select

from forestops import contract
from forestops.store.database import get_engine
from forestops.store.schema import prediction_log
from forestops.webserver import free_port
from support.champion import SIGNING_KEY, champion_store, read_rows
from support.forestops_up import FORESTOPS, wait_http_ok


def test_serve_on_a_fresh_home_answers_and_logs_the_prediction(
    home: Path, dataset_path: Path, tmp_path: Path
) -> None:
    store = champion_store(tmp_path / "store", dataset_path)
    port = free_port()
    env = {
        **os.environ,
        "FORESTOPS_HOME": str(home),
        "MLFLOW_TRACKING_URI": store.settings.mlflow_tracking_uri,
        "MODEL_NAME": store.settings.model_name,
        "MODEL_POLL_INTERVAL_S": "0",
        "INFERENCE_RUNTIME": "native",
        "MODEL_SIGNING_KEY": SIGNING_KEY,  # the store's models were signed in another home
    }
    server = subprocess.Popen(
        [FORESTOPS, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True, text=True,
    )  # fmt: skip
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/health", timeout=120)
        record = read_rows(dataset_path, 1)[list(contract.FEATURE_NAMES)].iloc[0].to_dict()
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", json=record, timeout=30)
        assert answer.status_code == 200, answer.text
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        _, errors = server.communicate(timeout=60)
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert server.returncode in (0, -signal.SIGTERM), errors[-2000:]
    assert "Application shutdown complete" in errors
    assert "prediction log" not in errors  # no failed writes, nothing dropped at shutdown
    with get_engine(f"sqlite:///{home / 'forestops.db'}").connect() as conn:
        assert conn.execute(select(func.count()).select_from(prediction_log)).scalar() == 1
