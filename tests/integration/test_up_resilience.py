"""`forestops up` under real failures: a dead data source, a job process killed outright, a port
already taken. The other parts go on, each failure is logged with its reason and retried on the
next tick, Ctrl-C still stops everything.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from forestops.config import Settings
from forestops.webserver import free_port
from support.forestops_up import FORESTOPS, UpProcess, tiny_stack_env, wait_http_ok, write_subset

pytestmark = pytest.mark.slow


def prefill(settings: Settings, batches: int) -> None:
    """Store a few batches through the real data API and ingestion, as an earlier `up` would."""
    from forestops.pipeline.ingest import ingest_batch
    from forestops.source.server import serve_builtin

    with serve_builtin(settings) as api:
        source = settings.model_copy(update={"source_api_base_url": api.url})
        for _ in range(batches):
            ingest_batch(source)


def test_failing_and_crashing_jobs_do_not_stop_the_others(
    home: Path, dataset_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subset = write_subset(dataset_path, tmp_path / "subset.csv", rows=3000)
    env = tiny_stack_env(
        subset,
        # Nothing listens there: every ingestion tick fails (connection refused).
        SOURCE_API_BASE_URL=f"http://127.0.0.1:{free_port()}",
        SOURCE_RETRIES="1",
        UP_START_UI="false",
        UP_START_MLFLOW_UI="false",
    )
    for key in ("FORESTOPS_DATASET", "DATA_API_PORT", "MIN_UPDATE_TIME_S", "SAMPLE_FRACTION"):
        monkeypatch.setenv(key, env[key])
    prefill(Settings(), batches=2)

    with UpProcess(env, tmp_path) as up:
        up.wait_for(r"forestops is up", timeout=120)
        # The first training tick dies as if the OOM killer took it.
        trainer = up.wait_for_process("forestops.orchestration.jobs train", timeout=120)
        os.kill(trainer.pid, signal.SIGKILL)
        up.wait_for(r"train FAILED \([\d.]+ s\): killed by SIGKILL \| retry", timeout=60)

        failures = up.wait_for(r"ingest FAILED \([\d.]+ s\): .*\| retry", timeout=120, count=2)
        assert all("Connect" in line for line in failures), failures

        # Still no champion: the next ingestion tick retries the training, which succeeds.
        up.wait_for(r"train trained \([\d.]+ s\): trained on", timeout=180)
        health = wait_http_ok(f"{up.url('INFERENCE_PORT')}/health", timeout=60)
        assert health.json()["model_version"] == "1"
        assert up.process.poll() is None

        assert up.interrupt(signal.SIGINT, timeout=30) == 0
        up.tree.__exit__()
        assert up.tree.survivors() == []


def test_a_taken_port_is_named_with_its_setting(home: Path, dataset_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = tiny_stack_env(dataset_path, INFERENCE_PORT=str(port))
        result = subprocess.run(
            [FORESTOPS, "up"], env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is not available" in result.stderr
    assert "set INFERENCE_PORT" in result.stderr
