"""The model holder against a real MLflow store: hot swaps under load, the disk cache when the
tracking server is down, refusal of broken champions, polling, and the registry-less mode.

Each test registers the session's already-logged tiny models under a model name of its own, so
alias moves never leak between tests.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient

from forestops import contract
from forestops.config import Settings
from forestops.modeling.integrity import sign_files, signing_key
from forestops.modeling.tracking import TAG_SIGNATURE
from forestops.serving.app import create_app
from forestops.serving.holder import ModelHolder
from forestops.webserver import BackgroundServer, free_port
from support.champion import (
    ChampionStore,
    broken_pipeline,
    champion_store,
    log_candidate,
    read_rows,
    tiny_pipeline,
    version_files,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, dataset_path: Path) -> ChampionStore:
    return champion_store(tmp_path_factory.getbasetemp() / "serving-holder-store", dataset_path)


@pytest.fixture(scope="module")
def record(dataset_path: Path) -> dict[str, Any]:
    row: dict[str, Any] = read_rows(dataset_path, 1)[list(contract.FEATURE_NAMES)].iloc[0].to_dict()
    return row


def _settings(store: ChampionStore, tmp_path: Path, model_name: str, **update: Any) -> Settings:
    return store.settings.model_copy(
        update={"forestops_home": tmp_path / "home", "model_name": model_name, **update}
    )


def _alias(store: ChampionStore, model_name: str, version: str) -> None:
    client = MlflowClient(store.settings.mlflow_tracking_uri)
    client.set_registered_model_alias(model_name, store.settings.champion_alias, version)


def test_reload_under_concurrent_requests_fails_none(
    store: ChampionStore, tmp_path: Path, record: dict[str, Any]
) -> None:
    store.register(store.run_a, "race")
    store.register(store.run_b, "race", champion=False)
    settings = _settings(store, tmp_path, "race")
    seen: Counter[tuple[int, str | None]] = Counter()
    stop = threading.Event()

    def hammer(url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            while not stop.is_set():
                response = http.post("/predict", json=[record] * 50)
                version = response.json().get("model_version") if response.is_success else None
                seen[response.status_code, version] += 1

    with BackgroundServer(create_app(settings)) as server:
        threads = [threading.Thread(target=hammer, args=(server.url,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        swaps = []
        for version in ("2", "1", "2", "1"):
            _alias(store, "race", version)
            time.sleep(0.2)
            swaps.append(httpx.post(f"{server.url}/reload", timeout=60).json())
        time.sleep(0.2)
        stop.set()
        for thread in threads:
            thread.join()
    assert [(s["reloaded"], s["model_version"]) for s in swaps] == [
        (True, "2"),
        (True, "1"),
        (True, "2"),
        (True, "1"),
    ]
    assert {status for status, _ in seen} == {200}, seen
    assert {version for _, version in seen} == {"1", "2"}


def test_serves_from_cache_degraded_when_tracking_server_is_down(
    store: ChampionStore, tmp_path: Path, record: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    store.register(store.run_a, "cached")
    settings = _settings(store, tmp_path, "cached")
    with TestClient(create_app(settings)) as client:  # the first start fills the cache
        assert client.get("/health").json()["status"] == "ok"

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    down = settings.model_copy(update={"mlflow_tracking_uri": f"http://127.0.0.1:{free_port()}"})
    with TestClient(create_app(down)) as client:
        health = client.get("/health")
        assert health.status_code == 200
        body = health.json()
        assert (body["status"], body["model_version"]) == ("degraded", "1")
        assert "tracking server unreachable" in body["detail"]
        assert "still serving version 1" in body["detail"]
        answer = client.post("/predict", json=record)
        assert answer.status_code == 200 and answer.json()["model_version"] == "1"
        assert client.get("/metadata").json()["run_id"] == store.run_a
        reload = client.post("/reload")
        assert reload.status_code == 502 and reload.json()["reloaded"] is False
        assert 'forestops_model_status{status="degraded"} 1.0' in client.get("/metrics").text


def test_unavailable_without_cache_or_champion_then_reload_loads(
    store: ChampionStore, tmp_path: Path, record: dict[str, Any]
) -> None:
    settings = _settings(store, tmp_path, "late")
    with TestClient(create_app(settings)) as client:
        health = client.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unavailable"
        assert "no model to serve" in health.json()["detail"]
        assert client.post("/predict", json=record).status_code == 503
        assert client.get("/metadata").status_code == 503
        assert client.post("/reload").status_code == 404

        store.register(store.run_a, "late")
        reload = client.post("/reload")
        assert reload.status_code == 200
        assert reload.json() == {
            "reloaded": True,
            "model_version": "1",
            "detail": "now serving version 1",
        }
        assert client.post("/predict", json=record).status_code == 200


def _corrupt(settings: Settings, version: str) -> None:
    """Break the version's pickle and sign the result with the key: files training vouches for
    that still do not load (unsigned tampering is tests/reliability/test_model_integrity.py's)."""
    folder = version_files(settings, version)
    (folder / "python_model.pkl").write_bytes(b"not a pickle")
    _, signature = sign_files(signing_key(settings), folder)
    client = MlflowClient(settings.mlflow_tracking_uri)
    client.set_model_version_tag(settings.model_name, version, TAG_SIGNATURE, signature)


@pytest.mark.parametrize(
    ("breakage", "reason"), [("corrupt", "does not load"), ("nan", "non-finite probabilities")]
)
def test_refuses_a_broken_champion_and_keeps_serving(
    store: ChampionStore,
    tmp_path: Path,
    dataset_path: Path,
    record: dict[str, Any],
    breakage: str,
    reason: str,
) -> None:
    name = f"refuse-{breakage}"
    store.register(store.run_a, name)
    settings = _settings(store, tmp_path, name)
    broken = (
        broken_pipeline()
        if breakage == "nan"
        else tiny_pipeline(read_rows(dataset_path, 500), n_estimators=2)
    )
    run_id, _ = log_candidate(settings, broken, 0.0, champion=False)
    with TestClient(create_app(settings)) as client:
        version = store.register(run_id, name)
        if breakage == "corrupt":
            _corrupt(settings, version)
        response = client.post("/reload")
        assert response.status_code == 409
        body = response.json()
        assert (body["reloaded"], body["model_version"]) == (False, "1")
        assert f"refused version {version}" in body["detail"] and reason in body["detail"]
        answer = client.post("/predict", json=record)
        assert answer.status_code == 200 and answer.json()["model_version"] == "1"
        health = client.get("/health").json()
        assert health["status"] == "degraded"  # /health is open: the holder's words, no error
        assert health["detail"].startswith(f"refused version {version}; still serving version 1")
        metrics = client.get("/metrics").text
        assert 'forestops_model_reloads_total{outcome="refused",trigger="api"} 1.0' in metrics
    assert not (settings.models_dir / "cache" / run_id).exists()


def test_poll_swaps_to_a_new_champion(store: ChampionStore, tmp_path: Path) -> None:
    store.register(store.run_a, "polled")
    store.register(store.run_b, "polled", champion=False)
    holder = ModelHolder(_settings(store, tmp_path, "polled", model_poll_interval_s=0.1))
    holder.start()
    try:
        assert holder.current is not None and holder.current.ref.version == "1"
        _alias(store, "polled", "2")
        deadline = time.monotonic() + 30
        # The swap is visible a moment before refresh() counts it: wait for both.
        while time.monotonic() < deadline and not (
            holder.current.ref.version == "2" and holder.refreshes["poll", "swapped"]
        ):
            time.sleep(0.05)
        assert holder.current.ref.version == "2"
        assert holder.status == "ok"
        assert holder.refreshes["poll", "swapped"] == 1
    finally:
        holder.stop()


def test_registry_disabled_serves_the_best_candidate_run(
    store: ChampionStore, tmp_path: Path
) -> None:
    settings = _settings(store, tmp_path, "unused", mlflow_enable_model_registry=False)
    with TestClient(create_app(settings)) as client:
        body = client.get("/metadata").json()
        assert (body["run_id"], body["model_version"], body["alias"]) == (
            store.run_a,
            None,
            None,
        )
        assert body["model_uri"] == f"runs:/{store.run_a}/model"
        assert client.get("/health").json()["status"] == "ok"


def test_cache_keeps_only_the_served_and_previous_models(
    store: ChampionStore, tmp_path: Path, dataset_path: Path
) -> None:
    settings = _settings(store, tmp_path, "pruned")
    third, _ = log_candidate(
        settings, tiny_pipeline(read_rows(dataset_path, 500), 3), 0.0, champion=False
    )
    holder = ModelHolder(settings)
    for run_id in (store.run_a, store.run_b, third):
        store.register(run_id, "pruned")
        assert holder.refresh("api").reloaded
    cached = {p.name for p in (settings.models_dir / "cache").iterdir() if p.is_dir()}
    assert cached == {store.run_b, third}


def test_a_swap_leaves_the_explanation_kernel_for_the_first_explanation(
    store: ChampionStore, tmp_path: Path
) -> None:
    # Laying out the TreeSHAP kernel is seconds of CPU for a full-size champion: a swap must not
    # start it (the predictions right after a promotion would pay), the first `?explain=` does.
    holder = ModelHolder(_settings(store, tmp_path, "warmed"))
    try:
        for run_id in (store.run_a, store.run_b):
            store.register(run_id, "warmed")
            assert holder.refresh("api").reloaded
            assert holder.current is not None and holder.current.explainer is not None
            assert holder.current.explainer.warmup is None
            assert holder.current.explainer.method == "lightgbm"
    finally:
        holder.stop()


def test_a_swap_freezes_the_heap_and_the_next_one_frees_the_replaced_model(
    store: ChampionStore, tmp_path: Path
) -> None:
    # After a swap the long-lived objects are frozen, so full collections stay short; the next
    # swap unfreezes and collects first, so the replaced model does not stay in memory.
    holder = ModelHolder(_settings(store, tmp_path, "settled"))
    try:
        gc.unfreeze()
        store.register(store.run_a, "settled")
        assert holder.refresh("api").reloaded
        assert gc.get_freeze_count() > 0
        replaced = weakref.ref(holder.current.model)
        store.register(store.run_b, "settled")
        assert holder.refresh("api").reloaded
        gc.collect()
        assert replaced() is None
        assert gc.get_freeze_count() > 0
    finally:
        holder.stop()
        gc.unfreeze()
