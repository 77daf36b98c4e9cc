"""The ONNX Runtime form of a LightGBM champion: converted in a child process, cached beside the
model, verified against the booster before it serves, and never served when it disagrees or
cannot be read. Real models from a real MLflow store, real ONNX conversions.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from forestops import contract
from forestops.config import Settings
from forestops.modeling.features import frame_to_arrays
from forestops.serving.app import create_app
from forestops.serving.holder import ModelHolder, ServedModel
from forestops.serving.onnx_forest import ONNX_FILE, ForestCompiler, label_agreement, load_forest
from forestops.serving.onnx_forest import random_records as random_arrays
from support.champion import ChampionStore, champion_store, read_rows, tiny_pipeline
from support.process_tree import descendants

_CONVERSION = "forestops.serving.onnx_forest"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, dataset_path: Path) -> ChampionStore:
    return champion_store(tmp_path_factory.getbasetemp() / "serving-store", dataset_path)


@pytest.fixture
def settings(store: ChampionStore, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """The store's champion under a model name of this test's own, served with the default runtime."""
    name = f"onnx-{request.node.name}"[:60]
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


def cached_model_dir(settings: Settings) -> Path:
    """Download the champion into the local cache (a booster-only holder) and return its folder,
    so a test can put a forest there before the holder under test starts."""
    native = ModelHolder(settings.model_copy(update={"inference_runtime": "native"}))
    native.start()
    native.stop()
    return served(native).path


def wait_until(condition: Callable[[], bool], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def runtime(holder: ModelHolder) -> str | None:
    return holder.current.runtime if holder.current else None


def served(holder: ModelHolder) -> ServedModel:
    assert holder.current is not None
    return holder.current


def test_lightgbm_champion_moves_to_onnx_runtime_after_verification(
    settings: Settings, store: ChampionStore, dataset_path: Path
) -> None:
    rows = read_rows(dataset_path, 4000).iloc[3000:]  # not in the 3,000 training rows
    records: list[dict[str, Any]] = rows[list(contract.FEATURE_NAMES)].to_dict(orient="records")
    with TestClient(create_app(settings)) as client:
        holder: ModelHolder = client.app.state.holder  # type: ignore[attr-defined]
        booster_answers = client.post("/predict", json=records).json()["predictions"]
        assert client.get("/metadata").json()["runtime"] == "lightgbm"

        wait_until(lambda: runtime(holder) == "onnxruntime")
        metadata = client.get("/metadata").json()
        assert metadata["runtime"] == "onnxruntime"
        assert settings.inference_onnx_min_agreement <= metadata["runtime_agreement"] <= 1
        assert (settings.models_dir / "cache" / store.run_a / ONNX_FILE).is_file()
        assert 'runtime="onnxruntime"' in client.get("/metrics").text

        onnx_answers = client.post("/predict", json=records).json()["predictions"]
    same = np.mean(
        [
            a["cover_type"] == b["cover_type"]
            for a, b in zip(booster_answers, onnx_answers, strict=True)
        ]
    )
    assert same >= settings.inference_onnx_min_agreement
    probabilities = np.array([a["probabilities"] for a in onnx_answers])
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    reference = np.array([a["probabilities"] for a in booster_answers])
    assert np.median(np.abs(probabilities - reference)) < 1e-6  # float32 rounding, nothing more


def test_a_restart_reuses_the_cached_forest(holder: ModelHolder, settings: Settings) -> None:
    holder.start()
    wait_until(lambda: runtime(holder) == "onnxruntime")
    forest = served(holder).path / ONNX_FILE
    verdict = forest.with_suffix(".json")
    converted_at, verified_at = forest.stat().st_mtime_ns, verdict.stat().st_mtime_ns
    agreement = served(holder).agreement
    holder.stop()

    again = ModelHolder(settings)
    try:
        again.start()
        wait_until(lambda: runtime(again) == "onnxruntime")
        assert served(again).agreement == agreement  # the recorded verdict, not a new one
    finally:
        again.stop()
    assert forest.stat().st_mtime_ns == converted_at
    assert verdict.stat().st_mtime_ns == verified_at


def test_a_forest_that_disagrees_with_the_booster_is_not_served(
    holder: ModelHolder, settings: Settings, dataset_path: Path
) -> None:
    # Another model's forest where the champion's belongs (trained on shifted labels, so its
    # classes differ): it loads fine and answers, but not what the booster answers.
    frame = read_rows(dataset_path, 3000)
    frame[contract.LABEL] = (frame[contract.LABEL] + 1) % len(contract.CLASS_IDS)
    other = tiny_pipeline(frame, 20)
    target = cached_model_dir(settings) / ONNX_FILE
    ForestCompiler(timeout_s=300).compile(other.named_steps["model"].booster_, target)

    holder.start()
    wait_until(lambda: served(holder).runtime_note is not None)
    assert "below INFERENCE_ONNX_MIN_AGREEMENT=0.999" in str(served(holder).runtime_note)
    assert runtime(holder) == "lightgbm"
    assert served(holder).agreement is None


def test_an_unreadable_forest_is_discarded_and_the_booster_serves(
    holder: ModelHolder, settings: Settings
) -> None:
    target = cached_model_dir(settings) / ONNX_FILE
    target.write_bytes(b"\x00not an onnx model")

    with TestClient(create_app(settings, holder)) as client:
        wait_until(lambda: served(holder).runtime_note is not None)
        metadata = client.get("/metadata").json()
    assert metadata["runtime"] == "lightgbm"
    assert metadata["runtime_note"].startswith("ONNX Runtime failed: ")
    assert not target.exists()  # the next load converts again


def test_stop_kills_a_running_conversion(holder: ModelHolder) -> None:
    holder.start()
    wait_until(lambda: bool(conversions()), timeout=60)
    holder.stop()
    wait_until(lambda: not conversions(), timeout=30)  # killed, and reaped by its waiter
    assert runtime(holder) == "lightgbm"
    assert not (served(holder).path / ONNX_FILE).exists()


def test_label_agreement_refuses_probabilities_that_are_not_probabilities(
    dataset_path: Path, tmp_path: Path
) -> None:
    pipeline = tiny_pipeline(read_rows(dataset_path, 500), 3)
    booster = pipeline.named_steps["model"].booster_
    encode = pipeline.named_steps["encode"].encode_arrays
    forest = ForestCompiler(timeout_s=300).compile(booster, tmp_path / ONNX_FILE)
    native = lambda *arrays: booster.predict(encode(*arrays))  # noqa: E731
    onnx = load_forest(forest, encode)
    assert label_agreement(native, onnx, rows=2000) >= 0.99
    with pytest.raises(ValueError, match="do not sum to 1"):
        label_agreement(native, lambda *arrays: 2 * onnx(*arrays), rows=100)
    numeric, area, soil = random_arrays(500, seed=1)
    frame_arrays = frame_to_arrays(read_rows(dataset_path, 5))
    assert numeric.shape[1] == frame_arrays[0].shape[1]
    low = [f.minimum for f in contract.NUMERIC_FEATURES]
    high = [f.maximum for f in contract.NUMERIC_FEATURES]
    assert ((numeric >= low) & (numeric <= high)).all()
    assert area.max() < len(contract.WILDERNESS_AREAS) and soil.max() < len(contract.SOIL_TYPES)


def conversions() -> list[Any]:
    """This test process's ONNX conversion children that are still running."""
    return [p for p in descendants(os.getpid()) if _CONVERSION in p.cmdline and p.state != "Z"]
