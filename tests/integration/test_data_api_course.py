"""The course-fidelity data API over real HTTP on loopback, its clock injected (no sleeping).

2,005 rows: B = 200, a sample is B // 10 = 20 rows, and group 10's slice holds the last 5 rows,
as the course's 297,655-row file leaves it 5.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from forestops.config import Settings
from forestops.source import protocol
from forestops.source.course_server import COURSE_INVALID_GROUP, create_course_app
from forestops.source.dataset import read_dataset
from forestops.source.server import serve_builtin
from forestops.webserver import BackgroundServer
from support.clock import ManualClock
from support.dataset_files import course_csv

ROWS = 2005
B = ROWS // 10
WINDOW = 300.0
PAST_WINDOW = WINDOW + 0.001


@pytest.fixture(scope="module")
def subset(dataset_path: Path) -> pd.DataFrame:
    return read_dataset(dataset_path, nrows=ROWS)


@contextmanager
def serve(frame: pd.DataFrame, state: Path, clock: ManualClock) -> Iterator[httpx.Client]:
    app = create_course_app(frame, state, min_update_time=WINDOW, seed=3, clock=clock)
    with (
        BackgroundServer(app) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield client


def get(client: httpx.Client, group: int, path: str = "/data") -> httpx.Response:
    return client.get(path, params={"group_number": group})


def rows_of(frame: pd.DataFrame, start: int, stop: int) -> set[tuple[str, ...]]:
    return set(map(tuple, frame.iloc[start:stop].astype(str).to_numpy().tolist()))


def test_every_batch_of_a_group_samples_its_slice_and_batch_10_is_served_once(
    subset: pd.DataFrame, tmp_path: Path
) -> None:
    clock = ManualClock()
    with serve(subset, tmp_path / "timestamps.json", clock) as api:
        answers: list[dict[str, Any]] = []
        for _ in range(protocol.N_BATCHES):
            response = get(api, 2)
            assert response.status_code == 200, response.text
            answers.append(response.json())
            clock.advance(PAST_WINDOW)
        done = get(api, 2)
        clock.advance(PAST_WINDOW)
        still_done = get(api, 2)
    assert [a["batch_number"] for a in answers] == list(range(1, 11))
    assert {a["group_number"] for a in answers} == {2}
    slice_2 = rows_of(subset, 2 * B, 3 * B)  # the group number picks the slice, every batch
    for answer in answers:
        sample = set(map(tuple, answer["data"]))
        assert len(answer["data"]) == len(sample) == B // 10
        assert sample <= slice_2
    assert len(set().union(*(map(tuple, a["data"]) for a in answers))) < B  # one slice, at most
    for response in (done, still_done):
        assert response.status_code == 400
        assert response.json() == {"detail": protocol.COURSE_ALL_COLLECTED}


def test_the_counter_moves_only_strictly_after_the_window_and_one_step_at_a_time(
    subset: pd.DataFrame, tmp_path: Path
) -> None:
    clock = ManualClock()
    state = tmp_path / "timestamps.json"
    with serve(subset, state, clock) as api:
        assert get(api, 1).json()["batch_number"] == 1  # -1 jumps to 1 on the first call
        first_advance = clock.now
        clock.advance(WINDOW)  # exactly the window: the course wants strictly more
        assert get(api, 1).json()["batch_number"] == 1
        clock.advance(0.001)
        assert get(api, 1).json()["batch_number"] == 2
        clock.advance(10 * WINDOW)  # many windows: still one step
        assert get(api, 1).json()["batch_number"] == 3
        assert get(api, 1).json()["batch_number"] == 3
    saved = json.loads(state.read_text())
    assert saved["1"] == [clock.now, 3]
    assert saved["5"] == [0, -1]  # untouched groups keep the course's initial value
    assert first_advance < clock.now


def test_group_10_always_answers_500(subset: pd.DataFrame, tmp_path: Path) -> None:
    """Its slice is the last N - 10*B = 5 rows, fewer than a 20-row sample. Its counter still
    moves in memory; the file gets it with the next answered call of any group, as the course's."""
    clock = ManualClock()
    state = tmp_path / "timestamps.json"
    with serve(subset, state, clock) as api:
        for _ in range(3):
            response = get(api, 10)
            assert (response.status_code, response.text) == (500, "Internal Server Error")
            clock.advance(PAST_WINDOW)
        assert not state.exists()  # the course writes after the sample, which raised
        assert get(api, 9).status_code == 200
    assert json.loads(state.read_text())["10"][1] == 3


@pytest.mark.parametrize("group", [0, 11, -3])
def test_an_invalid_group_is_the_courses_400(
    subset: pd.DataFrame, tmp_path: Path, group: int
) -> None:
    with serve(subset, tmp_path / "timestamps.json", ManualClock()) as api:
        for path in ("/data", "/restart_data_generation"):
            response = get(api, group, path)
            assert response.status_code == 400
            assert response.json() == {"detail": COURSE_INVALID_GROUP}
        assert api.get("/data", params={"group_number": "two"}).status_code == 422


def test_restart_answers_ok_and_the_next_call_is_batch_1(
    subset: pd.DataFrame, tmp_path: Path
) -> None:
    clock = ManualClock()
    with serve(subset, tmp_path / "timestamps.json", clock) as api:
        for _ in range(protocol.N_BATCHES):
            get(api, 3)
            clock.advance(PAST_WINDOW)
        assert get(api, 3).status_code == 400
        restarted = get(api, 3, "/restart_data_generation")
        assert (restarted.status_code, restarted.json()) == (200, ["ok"])
        assert get(api, 3).json()["batch_number"] == 1  # at once: the window starts from 0


def test_state_survives_a_server_restart(subset: pd.DataFrame, tmp_path: Path) -> None:
    clock = ManualClock()
    state = tmp_path / "timestamps.json"
    with serve(subset, state, clock) as api:
        get(api, 4)
        clock.advance(PAST_WINDOW)
        assert get(api, 4).json()["batch_number"] == 2
    with serve(subset, state, clock) as api:
        assert get(api, 4).json()["batch_number"] == 2  # same window, same batch
        clock.advance(PAST_WINDOW)
        assert get(api, 4).json()["batch_number"] == 3


def test_a_corrupt_state_file_is_a_clear_error(subset: pd.DataFrame, tmp_path: Path) -> None:
    state = tmp_path / "timestamps.json"
    state.write_text('{"1": "soon"}')
    with pytest.raises(ValueError, match="delete it to start over"):
        create_course_app(subset, state)


def test_the_setting_picks_the_course_mode(
    home: Path, dataset_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "FORESTOPS_DATASET", str(course_csv(dataset_path, home.parent / "s.csv", 500))
    )
    monkeypatch.setenv("DATA_API_FIDELITY", "course")
    with serve_builtin(Settings(), port=0) as server:
        root = httpx.get(f"{server.url}/").json()
        answer = httpx.get(f"{server.url}/data", params={"group_number": 1}).json()
    assert root == {"Proyecto": "Extracción de datos, entrenamiento de modelos."}
    assert (answer["batch_number"], len(answer["data"])) == (1, 5)  # B = 50, a tenth of it
    assert json.loads((home / "timestamps.json").read_text())["1"][1] == 1
    assert not (home / "data_api_state.json").exists()
