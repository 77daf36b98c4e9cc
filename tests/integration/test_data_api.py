"""The course-compatible data API over real HTTP on loopback, on a 2,000-row slice of the data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from forestops.config import Settings
from forestops.source import protocol
from forestops.source.dataset import read_dataset
from forestops.source.server import create_app, serve_builtin
from forestops.webserver import BackgroundServer, free_port
from support.clock import ManualClock
from support.dataset_files import course_csv

ROWS = 2000


@pytest.fixture(scope="module")
def subset(dataset_path: Path) -> pd.DataFrame:
    return read_dataset(dataset_path, nrows=ROWS)


@contextmanager
def serve(frame: pd.DataFrame, state: Path, **options: Any) -> Iterator[httpx.Client]:
    with (
        BackgroundServer(create_app(frame, state, **options)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield client


def get_batch(client: httpx.Client, group: int = 1) -> dict[str, Any]:
    response = client.get("/data", params={"group_number": group})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def course_rows(frame: pd.DataFrame) -> set[tuple[str, ...]]:
    return set(map(tuple, frame.astype(str).to_numpy().tolist()))


def test_ten_batches_partition_the_data_then_all_collected(
    subset: pd.DataFrame, tmp_path: Path
) -> None:
    with serve(subset, tmp_path / "state.json", min_update_time=0, sample_fraction=1) as api:
        answers = [get_batch(api) for _ in range(protocol.N_BATCHES)]
        done = api.get("/data", params={"group_number": 1})
    assert [a["batch_number"] for a in answers] == list(range(1, 11))  # 1-based, like the course
    assert {a["group_number"] for a in answers} == {1}
    batches = [set(map(tuple, a["data"])) for a in answers]
    assert all(len(b) == ROWS // 10 for b in batches)
    assert set().union(*batches) == course_rows(subset)  # every row, no row twice
    assert done.status_code == 400
    assert "All data was collected for group 1" in done.json()["detail"]
    assert protocol.COURSE_ALL_COLLECTED in done.json()["detail"]


def test_rows_are_course_strings_sampled_from_the_current_batch(
    subset: pd.DataFrame, tmp_path: Path
) -> None:
    with serve(subset, tmp_path / "full.json", min_update_time=3600, sample_fraction=1) as api:
        whole_batch = set(map(tuple, get_batch(api)["data"]))
    with serve(subset, tmp_path / "s.json", min_update_time=3600, seed=7) as api:
        first, second = get_batch(api), get_batch(api)
    with serve(subset, tmp_path / "again.json", min_update_time=3600, seed=7) as api:
        replayed = get_batch(api)
    assert first["batch_number"] == second["batch_number"] == 1  # still inside the window
    for answer in (first, second):
        rows = answer["data"]
        assert len(rows) == ROWS // 10 // 10  # a tenth of the batch by default
        assert len(set(map(tuple, rows))) == len(rows)
        assert set(map(tuple, rows)) <= whole_batch
        assert all(len(row) == 13 and all(isinstance(v, str) for v in row) for row in rows)
    assert first["data"] != second["data"]  # a fresh sample per call
    assert replayed["data"] == first["data"]  # seed fixes the sampling
    row = first["data"][0]
    assert row[0].isdigit() and row[10] in {"Rawah", "Neota", "Commanche", "Cache"}
    assert row[11].startswith("C") and row[12] in {str(i) for i in range(7)}


def test_batch_advances_once_per_call_after_min_update_time(
    subset: pd.DataFrame, tmp_path: Path
) -> None:
    clock = ManualClock()
    with serve(subset, tmp_path / "state.json", min_update_time=300, clock=clock) as api:
        assert get_batch(api)["batch_number"] == 1
        clock.advance(299.9)
        assert get_batch(api)["batch_number"] == 1  # the window is still open
        clock.advance(0.1)
        assert get_batch(api)["batch_number"] == 2
        clock.advance(3 * 300)  # three windows passed: still only the next batch
        assert get_batch(api)["batch_number"] == 3


@pytest.mark.parametrize("group", [0, 11, -3])
def test_invalid_group_is_400(subset: pd.DataFrame, tmp_path: Path, group: int) -> None:
    with serve(subset, tmp_path / "state.json") as api:
        for path in ("/data", "/restart_data_generation"):
            response = api.get(path, params={"group_number": group})
            assert response.status_code == 400
            assert f"Invalid group number {group}" in response.json()["detail"]
        assert api.get("/data", params={"group_number": "two"}).status_code == 422


def test_restart_starts_one_group_over(subset: pd.DataFrame, tmp_path: Path) -> None:
    with serve(subset, tmp_path / "state.json", min_update_time=0) as api:
        for _ in range(3):
            get_batch(api, group=1)
        assert get_batch(api, group=2)["batch_number"] == 1
        restarted = api.get("/restart_data_generation", params={"group_number": 1})
        assert restarted.status_code == 200 and restarted.json()["ok"] is True
        assert get_batch(api, group=1)["batch_number"] == 1
        assert get_batch(api, group=2)["batch_number"] == 2  # group 2 went on undisturbed


def test_state_survives_a_server_restart(subset: pd.DataFrame, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with serve(subset, state, min_update_time=0) as api:
        assert [get_batch(api)["batch_number"] for _ in range(3)] == [1, 2, 3]
        for _ in range(7):
            get_batch(api, group=4)  # group 4 is through all ten batches
    saved = json.loads(state.read_text())["groups"]
    assert saved["1"]["batch_index"] == 2
    with serve(subset, state, min_update_time=3600) as api:
        assert get_batch(api)["batch_number"] == 3  # same batch: its window is still open
        assert get_batch(api, group=4)["batch_number"] == 7
    with serve(subset, state, min_update_time=0) as api:
        assert get_batch(api)["batch_number"] == 4


def test_a_corrupt_state_file_is_a_clear_error(subset: pd.DataFrame, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text("{not json")
    with pytest.raises(ValueError, match="delete it to start over"):
        create_app(subset, state)


def test_serve_builtin_uses_the_settings(
    home: Path, dataset_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = course_csv(dataset_path, home.parent / "subset.csv", rows=500)
    monkeypatch.setenv("FORESTOPS_DATASET", str(source))
    monkeypatch.setenv("SAMPLE_FRACTION", "1")
    monkeypatch.setenv("MIN_UPDATE_TIME_S", "0")
    with serve_builtin(Settings(), port=0) as server:
        first = httpx.get(f"{server.url}/data", params={"group_number": 5}).json()
        second = httpx.get(f"{server.url}/data", params={"group_number": 5}).json()
    assert (first["batch_number"], second["batch_number"]) == (1, 2)
    assert len(first["data"]) == 50
    assert json.loads((home / "data_api_state.json").read_text())["groups"]["5"]["batch_index"] == 1


def test_data_api_command(tmp_path: Path, dataset_path: Path) -> None:
    source = course_csv(dataset_path, tmp_path / "subset.csv", rows=300)
    port = free_port()
    env = {**os.environ, "FORESTOPS_HOME": str(tmp_path / "home"), "FORESTOPS_DATASET": str(source)}
    argv = ["data-api", "--port", str(port), "--min-update-time", "0", "--sample-fraction", "1"]
    log = (tmp_path / "data-api.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", "from forestops.cli import app; app()", *argv],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        answer = _poll(f"http://127.0.0.1:{port}/data?group_number=1", process, tmp_path)
        assert answer["batch_number"] == 1 and len(answer["data"]) == 30
        again = httpx.get(f"http://127.0.0.1:{port}/data?group_number=1").json()
        assert again["batch_number"] == 2  # --min-update-time 0 took effect
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _poll(url: str, process: subprocess.Popen[bytes], logs: Path) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"data-api exited: {(logs / 'data-api.log').read_text()}")
        try:
            body: dict[str, Any] = httpx.get(url).json()
            return body
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("data-api did not answer within 120 s")
