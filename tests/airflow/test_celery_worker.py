"""The compose stack's Celery side with a real Redis broker: the airflow-worker service's command
starts a worker, and the healthcheck compose gates on it (celery inspect ping) sees it."""

from __future__ import annotations

import os
import random
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from forestops.fullstack.compose import generated_env, interpolate, load_compose, service_argv
from forestops.webserver import free_port

REDIS = os.environ.get("FORESTOPS_TEST_REDIS", "redis://127.0.0.1:6379")
BIN = Path(sys.executable).parent


@pytest.mark.timeout(180)
def test_the_worker_answers_the_compose_healthcheck(tmp_path: Path, airflow_db: None) -> None:
    compose = interpolate(load_compose(), generated_env(tmp_path))
    worker = compose["services"]["airflow-worker"]
    command = service_argv(worker)
    check = worker["healthcheck"]["test"]
    assert command == ["airflow", "celery", "worker"] and check[0] == "CMD-SHELL"

    node = f"forestops-test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": f"{REDIS}/{random.randint(1, 15)}",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+"
        + os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),  # never a fixed port here
        "HOSTNAME": node,  # what the container's hostname is to the healthcheck
    }
    probe = [BIN / word if word == "celery" else word for word in shlex.split(check[1])]
    probe = [str(word).replace("${HOSTNAME}", node) for word in probe]
    argv = [str(BIN / "airflow"), *command[1:], "--celery-hostname", f"celery@{node}"]
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while f"celery@{node} ready." not in log_path.read_text(errors="replace"):
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.5)
            ping = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=60)
            assert ping.returncode == 0, ping.stdout + ping.stderr
            assert f"celery@{node}: OK" in ping.stdout
        finally:
            process.terminate()
            process.wait(timeout=60)
