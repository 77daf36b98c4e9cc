"""The course's own data API, reproduced answer for answer (`forestops data-api --fidelity course`).

The course server, as measured against it (data file of N rows, B = N // 10):
- every `GET /data` of group g answers B // 10 rows drawn at random from the SAME slice
  `rows[g*B : (g+1)*B]`, whatever the batch number: the server passes the group number where
  the batch number belongs. A group never sees more than B distinct rows, and any batch after
  the first brings almost only rows seen before;
- the per-group counter starts at -1 and jumps to 1 on the first call, then +1 whenever a call
  comes more than MIN_UPDATE_TIME seconds (strictly) after the last advance; once it is 10, that
  call is answered (batch 10 is served for exactly one call) and every later call is 400
  "Ya se recolectó toda la información minima necesaria";
- group 10's slice holds only N - 10*B rows, fewer than B // 10: sampling it raises, so every
  call of group 10 answers 500 "Internal Server Error" (its counter still moves, in memory only:
  the state file is written after the sample);
- an invalid group is 400 "Número de grupo inválido"; `/restart_data_generation` puts the group
  back to -1 and answers `["ok"]` (the course returns a Python set);
- state: `{"1": [last_advance_unix_time, counter], ...}` in a timestamps JSON file, rewritten
  on every answered call and read at start, so a restarted server carries on.

Rows come in the data set's file order (the slices are the course's), values as strings in the
course's column order. The one liberty taken: the state file is replaced atomically.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import PlainTextResponse, Response

from forestops import contract
from forestops.files import write_atomically
from forestops.source import protocol

COURSE_INVALID_GROUP = "Número de grupo inválido"
COURSE_ROOT = {"Proyecto": "Extracción de datos, entrenamiento de modelos."}
LAST_BATCH = 10
"""The course's counter limit: a call finding the counter at 10 is 400."""


class CourseCounters:
    """The course's `timestamps` dict: group -> [time of the last advance, batch counter]."""

    def __init__(self, path: Path, clock: Callable[[], float]) -> None:
        self._path = path
        self._clock = clock
        self.groups: dict[str, list[float]] = {str(group): [0, -1] for group in protocol.GROUPS}
        self.groups.update(self._read())

    def advance(self, group: int, min_update_time: float) -> int:
        """The course's rule: more than `min_update_time` since the last advance moves it on."""
        state = self.groups[str(group)]
        now = self._clock()
        if now - state[0] > min_update_time:
            state[0] = now
            state[1] = 1 if state[1] == -1 else int(state[1]) + 1
        return int(state[1])

    def restart(self, group: int) -> None:
        self.groups[str(group)] = [0, -1]

    def _read(self) -> dict[str, list[float]]:
        if not self._path.is_file():
            return {}
        try:
            saved = json.loads(self._path.read_text())
            return {
                str(int(group)): [float(at), int(batch)] for group, (at, batch) in saved.items()
            }
        except (ValueError, TypeError, AttributeError) as error:
            raise ValueError(
                f"unreadable course data API state {self._path} ({error}); delete it to start over"
            ) from error

    def write(self) -> None:
        write_atomically(self._path, json.dumps(self.groups))


def create_course_app(
    dataset: pd.DataFrame,
    state_path: Path,
    min_update_time: float = 300,
    seed: int | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The course server over `dataset` (canonical or course columns, file order); `seed` fixes
    the sampling, `clock` (unix seconds) stands in for the wall clock in tests."""
    rows = dataset.rename(columns=contract.canonical_column).loc[:, list(contract.COLUMNS)]
    batch_size = len(rows) // protocol.N_BATCHES
    sample_size = batch_size // 10
    counters = CourseCounters(state_path, clock)
    rng = random.Random(seed)
    lock = threading.Lock()  # the course's async handlers never interleave; ours run on threads

    app = FastAPI(
        title="forestops data API (course fidelity)", description=__doc__, version="course"
    )

    def check_group(group_number: int) -> None:
        if group_number < protocol.GROUPS.start or group_number >= protocol.GROUPS.stop:
            raise HTTPException(400, detail=COURSE_INVALID_GROUP)

    @app.get("/")
    def root() -> dict[str, str]:
        return COURSE_ROOT

    @app.get(
        "/data",
        response_model=None,
        responses={
            400: {"description": "Invalid group, or the counter reached 10"},
            500: {"description": "Group 10: its slice is smaller than one sample"},
        },
    )
    def data(
        group_number: Annotated[int, Query(description="Group 1..10")],
    ) -> Response | dict[str, Any]:
        """B // 10 random rows of the group's slice (the group number picks the slice)."""
        check_group(group_number)
        with lock:
            if counters.groups[str(group_number)][1] >= LAST_BATCH:
                raise HTTPException(400, detail=protocol.COURSE_ALL_COLLECTED)
            batch_number = counters.advance(group_number, min_update_time)
            start = group_number * batch_size
            slice_rows = range(start, min(start + batch_size, len(rows)))
            if len(slice_rows) < sample_size:  # random.sample raises in the course's server
                return PlainTextResponse("Internal Server Error", status_code=500)
            picked = rng.sample(slice_rows, sample_size)
            counters.write()
        return {
            "group_number": group_number,
            "batch_number": batch_number,
            "data": rows.iloc[picked].astype(str).to_numpy().tolist(),
        }

    @app.get("/restart_data_generation")
    def restart(group_number: Annotated[int, Query(description="Group 1..10")]) -> list[str]:
        """The group's counter back to -1: its next call is batch 1."""
        check_group(group_number)
        with lock:
            counters.restart(group_number)
            counters.write()
        return ["ok"]

    return app
