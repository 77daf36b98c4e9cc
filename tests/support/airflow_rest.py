"""Airflow 3's public REST API as a user drives it: a JWT from /auth/token, then /api/v2."""

from __future__ import annotations

import time
from typing import Any

import httpx

FINISHED = {"success", "failed"}


class AirflowRest:
    def __init__(self, url: str, user: str, password: str) -> None:
        token = httpx.post(
            f"{url}/auth/token", json={"username": user, "password": password}, timeout=30
        )
        token.raise_for_status()
        self.client = httpx.Client(
            base_url=f"{url}/api/v2",
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            timeout=30,
        )

    def wait_for_dag(self, dag_id: str, timeout_s: float = 180) -> None:
        """Until the dag-processor has parsed the file and the API knows the DAG."""
        deadline = time.monotonic() + timeout_s
        while self.client.get(f"/dags/{dag_id}").status_code != 200:
            assert time.monotonic() < deadline, f"{dag_id} never appeared in the API"
            time.sleep(2)

    def unpause(self, dag_id: str) -> None:
        self.client.patch(f"/dags/{dag_id}", json={"is_paused": False}).raise_for_status()

    def pause(self, dag_id: str) -> None:
        self.client.patch(f"/dags/{dag_id}", json={"is_paused": True}).raise_for_status()

    def pause_when_idle(self, dag_id: str, timeout_s: float) -> None:
        """Pause the DAG at a moment none of its runs is queued or running.

        Not pause-then-wait: the scheduler does not schedule the tasks of a paused DAG's running
        run, so a run caught mid-way by the pause stays running forever (seen: a data run whose
        fetch_data had finished waited ten minutes for load_postgres). If a scheduled run slips
        in between the last check and the pause, unpause, let it finish, and try again.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            while self._active_runs(dag_id):
                assert time.monotonic() < deadline, f"{dag_id} never went idle"
                time.sleep(3)
            self.pause(dag_id)
            if not self._active_runs(dag_id):
                return
            self.unpause(dag_id)

    def _active_runs(self, dag_id: str) -> int:
        runs = self.client.get(
            f"/dags/{dag_id}/dagRuns", params={"state": ["queued", "running"]}
        ).json()
        return int(runs["total_entries"])

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        answer = self.client.post(
            f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}}
        )
        answer.raise_for_status()
        return str(answer.json()["dag_run_id"])

    def wait(self, dag_id: str, run_id: str, timeout_s: float) -> str:
        """The run's final state (success or failed)."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = str(self.client.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"])
            if state in FINISHED:
                return state
            assert time.monotonic() < deadline, f"{dag_id} {run_id} still {state}"
            time.sleep(3)

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        answer = self.client.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        answer.raise_for_status()
        return {ti["task_id"]: ti for ti in answer.json()["task_instances"]}
