"""The compiled form of a LightGBM champion: built in a child process, cached beside the model,
checked against the booster before it serves, and never served when it differs, cannot be read or
cannot be built. Real models from a real MLflow store, real compilations with the system compiler.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from forestops import contract
from forestops.config import Settings
from forestops.serving.app import create_app
from forestops.serving.compiled_forest import (
    TOLERANCE,
    ForestCompiler,
    library_name,
    load_forest,
    max_difference,
)
from forestops.serving.holder import ModelHolder
from forestops.serving.predictor import lightgbm_booster
from forestops.serving.served_model import ServedModel
from support.champion import ChampionStore, champion_store, read_rows, tiny_pipeline
from support.process_tree import descendants, living

pytestmark = pytest.mark.slow

_CHILD = "forestops.serving.compiled_forest"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, dataset_path: Path) -> ChampionStore:
    return champion_store(tmp_path_factory.getbasetemp() / "serving-compiled-store", dataset_path)


@pytest.fixture
def settings(store: ChampionStore, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """The store's champion under a model name of this test's own, served with the default runtime."""
    name = f"compiled-{request.node.name}"[:60]
    store.register(store.run_a, name)
    return store.settings.model_copy(
        update={
            "forestops_home": tmp_path / "home",
            "model_name": name,
            "inference_runtime": "auto",
        }
    )


@pytest.fixture
def holder(settings: Settings) -> Iterator[ModelHolder]:
    holder = ModelHolder(settings)
    yield holder
    holder.stop()


def champion_library(settings: Settings) -> Path:
    """Where the champion's compiled form belongs in the local cache, found with a booster-only
    holder (which downloads the model), so a test can put a file there before the holder under
    test starts."""
    native = ModelHolder(settings.model_copy(update={"inference_runtime": "native"}))
    native.start()
    native.stop()
    booster = lightgbm_booster(served(native).model)
    assert booster is not None
    return served(native).path / library_name(booster.model_to_string())


def wait_until(condition: Callable[[], bool], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def runtime(holder: ModelHolder) -> str | None:
    return holder.current.runtime if holder.current else None


def served(holder: ModelHolder) -> ServedModel:
    assert holder.current is not None
    return holder.current


def test_lightgbm_champion_moves_to_the_compiled_runtime_with_the_boosters_answers(
    settings: Settings, dataset_path: Path
) -> None:
    rows = read_rows(dataset_path, 4000).iloc[3000:]  # not in the 3,000 training rows
    records: list[dict[str, Any]] = rows[list(contract.FEATURE_NAMES)].to_dict(orient="records")
    with TestClient(create_app(settings)) as client:
        holder: ModelHolder = client.app.state.holder  # type: ignore[attr-defined]
        booster_answers = client.post("/predict", json=records).json()["predictions"]
        assert client.get("/metadata").json()["runtime"] == "lightgbm"

        wait_until(lambda: runtime(holder) == "compiled")
        metadata = client.get("/metadata").json()
        assert metadata["runtime"] == "compiled"
        assert metadata["runtime_note"] is None
        assert list(served(holder).path.glob("forest-*.so"))
        assert 'runtime="compiled"' in client.get("/metrics").text

        compiled_answers = client.post("/predict", json=records).json()["predictions"]
    assert [a["cover_type"] for a in compiled_answers] == [a["cover_type"] for a in booster_answers]
    probabilities = np.array([a["probabilities"] for a in compiled_answers])
    reference = np.array([a["probabilities"] for a in booster_answers])
    assert np.abs(probabilities - reference).max() <= TOLERANCE


def test_a_restart_reuses_the_cached_library_and_its_verdict(
    holder: ModelHolder, settings: Settings
) -> None:
    holder.start()
    wait_until(lambda: runtime(holder) == "compiled")
    (library,) = served(holder).path.glob("forest-*.so")
    verdict = library.with_suffix(".json")
    built_at, verified_at = library.stat().st_mtime_ns, verdict.stat().st_mtime_ns
    holder.stop()

    again = ModelHolder(settings)
    try:
        again.start()
        wait_until(lambda: runtime(again) == "compiled")
    finally:
        again.stop()
    assert library.stat().st_mtime_ns == built_at
    assert verdict.stat().st_mtime_ns == verified_at


def test_a_library_that_differs_from_the_booster_is_not_served(
    holder: ModelHolder, settings: Settings, dataset_path: Path
) -> None:
    # Another model's library where the champion's belongs (trained on shifted labels): it loads
    # and answers sane probabilities, but not the booster's.
    frame = read_rows(dataset_path, 3000)
    frame[contract.LABEL] = (frame[contract.LABEL] + 1) % len(contract.CLASS_IDS)
    other = tiny_pipeline(frame, 20).named_steps["model"].booster_.model_to_string()
    ForestCompiler(timeout_s=300).compile(other, champion_library(settings))

    holder.start()
    wait_until(lambda: served(holder).runtime_note is not None)
    note = str(served(holder).runtime_note)
    assert "probabilities differ from the booster's by up to" in note
    assert f"(tolerance {TOLERANCE:g})" in note
    assert runtime(holder) == "lightgbm"


def test_an_unreadable_library_is_discarded_and_the_booster_serves(
    holder: ModelHolder, settings: Settings
) -> None:
    target = champion_library(settings)
    target.write_bytes(b"\x7fELF but not a library")

    with TestClient(create_app(settings, holder)) as client:
        wait_until(lambda: served(holder).runtime_note is not None)
        metadata = client.get("/metadata").json()
    assert metadata["runtime"] == "lightgbm"
    assert metadata["runtime_note"].startswith("compiled forest failed: OSError")
    assert not target.exists()  # the next load compiles again


def test_without_a_compiler_the_booster_serves_and_says_why(settings: Settings) -> None:
    holder = ModelHolder(settings.model_copy(update={"inference_compiler": "no-such-cc"}))
    try:
        holder.start()
        wait_until(lambda: served(holder).runtime_note is not None)
        assert runtime(holder) == "lightgbm"
        note = str(served(holder).runtime_note)
        assert note.startswith("compiled forest failed: RuntimeError: compilation exited 1")
        assert "no-such-cc" in note
    finally:
        holder.stop()


def test_stop_kills_a_running_compilation_and_its_compilers(
    settings: Settings, tmp_path: Path
) -> None:
    # A compiler that takes its time: the child and a grandchild are running when stop comes.
    slow_cc = tmp_path / "slow-cc"
    slow_cc.write_text('#!/bin/sh\nsleep 120\nexec cc "$@"\n')
    slow_cc.chmod(slow_cc.stat().st_mode | stat.S_IEXEC)
    holder = ModelHolder(settings.model_copy(update={"inference_compiler": str(slow_cc)}))
    holder.start()
    wait_until(lambda: any("sleep 120" in p.cmdline for p in compilations()), timeout=60)
    groups = {p.pgid for p in compilations()}
    holder.stop()
    # The child killed and reaped, its compilers (reparented once it died) gone as well.
    wait_until(lambda: not [p for p in living() if p.pgid in groups and p.state != "Z"], 30)
    assert runtime(holder) == "lightgbm"
    assert not list(served(holder).path.glob("forest-*.so"))


def test_max_difference_refuses_probabilities_that_are_not_probabilities(
    dataset_path: Path, tmp_path: Path
) -> None:
    pipeline = tiny_pipeline(read_rows(dataset_path, 500), 3)
    booster = pipeline.named_steps["model"].booster_
    encode = pipeline.named_steps["encode"].encode_arrays
    model_text = booster.model_to_string()
    library = ForestCompiler(timeout_s=300).compile(model_text, tmp_path / library_name(model_text))
    native = lambda *arrays: booster.predict(encode(*arrays))  # noqa: E731
    compiled = load_forest(library, encode)
    assert max_difference(native, compiled, rows=2000) <= TOLERANCE
    with pytest.raises(ValueError, match="do not sum to 1"):
        max_difference(native, lambda *arrays: 2 * compiled(*arrays), rows=100)
    with pytest.raises(ValueError, match="shape"):
        max_difference(native, lambda *arrays: compiled(*arrays)[:, :3], rows=100)


def compilations() -> list[Any]:
    """This test process's compilation children (their command names the module) and the
    processes they started."""
    mine = descendants(os.getpid())
    groups = {p.pgid for p in mine if _CHILD in p.cmdline}
    return [p for p in mine if p.pgid in groups]
