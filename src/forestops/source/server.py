"""A course-compatible batch data API, for development, demos, tests and `forestops up`.

Two modes (DATA_API_FIDELITY, `forestops data-api --fidelity`): `course` reproduces the course's
server answer for answer (`source.course_server`: every batch of a group is a sample of the same
tenth of the data, batch 10 for one call, group 10 always 500). `default`, this module, is what
that server was meant to be: ten disjoint batches covering every row, so a group that harvests
every batch gets the whole data set.

Default mode, matching the course server where DESIGN.md leaves room:
- The data set is shuffled once with a fixed seed and cut into `n_batches` fixed, disjoint
  batches covering every row, so batch i is the same rows on every start.
- A group's first `GET /data` starts batch 1. A call made once `min_update_time` seconds have
  passed since the current batch began moves to the next batch, one batch per call, as the
  course does: a client that polls slower than the window still sees every batch.
  `min_update_time=0` advances on every call.
- Each call returns a fresh random sample (`sample_fraction` of the batch, without replacement
  inside one answer) of the current batch, values as strings in the course's column order,
  e.g. `["2596", "51", ..., "Rawah", "C7745", "4"]`. `batch_number` counts 1..10 like the course.
- The last batch is served for its whole window; the call after it is a 400 saying all data was
  collected (the course itself serves its tenth batch only once). Every group, 10 included, is
  served (the course answers 500 to group 10). Error details are English and say what to do; the
  'all collected' one ends with the course's sentence. `/restart_data_generation` starts the
  group over and answers `{"ok": true, "group_number": N}` (the course: `["ok"]`).
- Per-group state (batch index, when it began) is written atomically to `state_path` on every
  change, so a restarted server carries on where it stopped.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

from forestops import contract
from forestops.config import Settings
from forestops.files import write_atomically
from forestops.source import protocol
from forestops.webserver import BackgroundServer

PARTITION_SEED = 20_240_229
"""Fixed, so the batches are the same rows on every start (the persisted state refers to them)."""


class BatchResponse(BaseModel):
    group_number: int = Field(description="The group asked for (1..10)")
    batch_number: int = Field(description="Current batch of this group, 1..10 as the course counts")
    data: list[list[str]] = Field(
        description="Sampled rows of the batch: 13 strings each, in the course's column order "
        + ", ".join(f.course_name for f in contract.NUMERIC_FEATURES)
        + ", Wilderness_Area, Soil_Type, Cover_Type"
    )


class RestartResponse(BaseModel):
    ok: bool
    group_number: int


@dataclass(slots=True)
class GroupState:
    batch_index: int  # 0-based; == n_batches once every batch was served
    started_at: float  # wall-clock seconds (time.time) when the current batch began


class BatchClock:
    """Which batch each group is on, advanced by calls and time, persisted as JSON."""

    def __init__(
        self,
        state_path: Path,
        n_batches: int,
        min_update_time: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = state_path
        self._n_batches = n_batches
        self._min_update_time = min_update_time
        self._clock = clock  # wall clock (the state outlives the process); tests inject theirs
        self._groups = self._read()

    def advance(self, group: int) -> int | None:
        """The batch index to serve now (moving on if the window passed); None: all served."""
        state = self._groups.get(group)
        now = self._clock()
        if state is None:
            state = self._groups[group] = GroupState(0, now)
            self._write()
        elif (
            state.batch_index < self._n_batches and now - state.started_at >= self._min_update_time
        ):
            state.batch_index += 1
            state.started_at = now
            self._write()
        return state.batch_index if state.batch_index < self._n_batches else None

    def restart(self, group: int) -> None:
        self._groups.pop(group, None)
        self._write()

    def _read(self) -> dict[int, GroupState]:
        if not self._path.is_file():
            return {}
        try:
            saved = json.loads(self._path.read_text())
            return {int(group): GroupState(**state) for group, state in saved["groups"].items()}
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"unreadable data API state {self._path} ({error}); delete it to start over"
            ) from error

    def _write(self) -> None:
        groups = {str(group): asdict(state) for group, state in sorted(self._groups.items())}
        write_atomically(self._path, json.dumps({"groups": groups}, indent=1))


def create_app(
    dataset: pd.DataFrame,
    state_path: Path,
    min_update_time: float = 300,
    sample_fraction: float = 0.1,
    n_batches: int = protocol.N_BATCHES,
    seed: int | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The data API over `dataset` (canonical or course columns); `seed` fixes the sampling,
    `clock` (unix seconds) stands in for the wall clock in tests."""
    if not 0 < sample_fraction <= 1:
        raise ValueError(f"sample_fraction must be in (0, 1], got {sample_fraction}")
    if len(dataset) < n_batches:
        raise ValueError(f"{len(dataset)} rows cannot make {n_batches} batches")
    rows = dataset.rename(columns=contract.canonical_column).loc[:, list(contract.COLUMNS)]
    order = np.random.default_rng(PARTITION_SEED).permutation(len(rows))
    batches = np.array_split(order, n_batches)
    batch_clock = BatchClock(state_path, n_batches, min_update_time, clock)
    rng = np.random.default_rng(seed)
    lock = threading.Lock()  # sync endpoints run on a thread pool; the clock and rng are shared

    app = FastAPI(
        title="forestops data API (course-compatible)",
        description=__doc__,
        version="1",
    )

    def check_group(group_number: int) -> None:
        if group_number not in protocol.GROUPS:
            raise HTTPException(400, detail=protocol.invalid_group_detail(group_number))

    @app.get("/")
    def root() -> dict[str, Any]:
        return {
            "service": app.title,
            "groups": [protocol.GROUPS.start, protocol.GROUPS.stop - 1],
            "batches": n_batches,
            "rows": len(rows),
            "min_update_time": min_update_time,
            "sample_fraction": sample_fraction,
        }

    @app.get(
        "/data",
        response_model=BatchResponse,
        responses={400: {"description": "Invalid group, or every batch was already served"}},
    )
    def data(group_number: Annotated[int, Query(description="Group 1..10")]) -> dict[str, Any]:
        """A random sample of the group's current batch."""
        check_group(group_number)
        with lock:
            index = batch_clock.advance(group_number)
            if index is None:
                raise HTTPException(
                    400, detail=protocol.all_collected_detail(group_number, n_batches)
                )
            batch = batches[index]
            size = max(1, round(len(batch) * sample_fraction))
            picked = rng.choice(batch, size=size, replace=False)
        return {
            "group_number": group_number,
            "batch_number": index + 1,
            "data": rows.iloc[picked].astype(str).to_numpy().tolist(),
        }

    @app.get("/restart_data_generation", response_model=RestartResponse)
    def restart(group_number: Annotated[int, Query(description="Group 1..10")]) -> dict[str, Any]:
        """Start the group over from batch 1."""
        check_group(group_number)
        with lock:
            batch_clock.restart(group_number)
        return {"ok": True, "group_number": group_number}

    return app


def builtin_app(settings: Settings) -> FastAPI:
    """The data API over the configured data set in DATA_API_FIDELITY's mode, state in
    FORESTOPS_HOME (each mode its own file: the course's `timestamps.json`, or ours)."""
    from forestops.source.dataset import load_dataset

    if settings.data_api_fidelity == "course":
        from forestops.source.course_server import create_course_app

        return create_course_app(
            load_dataset(settings),
            state_path=settings.ensure_home() / "timestamps.json",
            min_update_time=settings.min_update_time_s,
        )
    return create_app(
        load_dataset(settings),
        state_path=settings.ensure_home() / "data_api_state.json",
        min_update_time=settings.min_update_time_s,
        sample_fraction=settings.sample_fraction,
    )


def serve_builtin(settings: Settings, port: int | None = None) -> BackgroundServer:
    """The built-in data API as a not-yet-started BackgroundServer on loopback
    (`settings.data_api_port` unless `port` is given; 0 picks a free one)."""
    return BackgroundServer(
        builtin_app(settings), port=settings.data_api_port if port is None else port
    )
