"""A registry write must not run code anywhere a champion is loaded (issue 20, item 1).

The attack: someone who can write to MLflow but does not hold MODEL_SIGNING_KEY logs a model
whose `python_model.pkl` runs code the moment it is unpickled (here: writes a marker file),
registers it and points `champion` at it. The inference service, the training gate and the
monitor must each refuse it without deserialising it (no marker), say why, and go on with what
they trust. Real MLflow stores, real training, the real app; the pickle is proven to run code
when MLflow loads it, so a missing marker means the check stopped it, not a harmless payload.
The same attack through Airflow's training DAG and a `forestops serve` process:
tests/airflow/test_dags_end_to_end.py.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient
from pydantic import SecretStr
from sqlalchemy import select

from forestops import contract
from forestops.config import Settings
from forestops.modeling.integrity import KEY_FILE, SigningKeyError, sign_files, signing_key
from forestops.modeling.tracking import TAG_DECISION_REASON, TAG_SIGNATURE, mlflow_uris
from forestops.pipeline.monitor import monitor
from forestops.pipeline.train import train
from forestops.serving.app import create_app
from forestops.serving.holder import ModelHolder
from forestops.store.database import get_engine
from forestops.store.schema import model_signatures
from forestops.webserver import free_port
from support.champion import (
    ChampionStore,
    champion_store,
    log_candidate,
    read_rows,
    tiny_pipeline,
    version_files,
)
from support.crafted_model import RunsCode, plant_crafted_champion
from support.training_data import course_rows, seed_samples, tiny

WEAK = {"train_candidates": ("logistic_regression",), "logreg_max_rows": 100}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, dataset_path: Path) -> ChampionStore:
    return champion_store(tmp_path_factory.getbasetemp() / "integrity-store", dataset_path)


def _serving(store: ChampionStore, tmp_path: Path, model_name: str) -> Settings:
    return store.settings.model_copy(
        update={"forestops_home": tmp_path / "home", "model_name": model_name}
    )


def _signature(settings: Settings, version: str) -> str:
    client = MlflowClient(settings.mlflow_tracking_uri)
    run_id = client.get_model_version(settings.model_name, version).run_id
    assert run_id is not None
    return client.get_run(run_id).data.tags[TAG_SIGNATURE]


def refusal_of_a_fresh_service(settings: Settings) -> str:
    """Start the real app with no cache: it must serve nothing and say it refused; returns why
    (the holder's reason: /health, open to anyone, names only the version)."""
    holder = ModelHolder(settings)
    with TestClient(create_app(settings, holder)) as api:
        health = api.get("/health")
    assert health.status_code == 503 and "refused version" in health.json()["detail"]
    assert holder.refusal is not None
    return holder.refusal


def test_the_crafted_pickle_runs_code_when_mlflow_loads_it(
    store: ChampionStore, tmp_path: Path, dataset_path: Path
) -> None:
    """The attack is real: without the check, loading the planted champion runs its code."""
    settings = _serving(store, tmp_path, "crafted-proof")
    store.register(store.run_a, settings.model_name)
    marker = tmp_path / "code-ran"
    _, files = plant_crafted_champion(settings, dataset_path, marker)
    subprocess.run(
        [sys.executable, "-c", f"import mlflow; mlflow.pyfunc.load_model({str(files)!r})"],
        capture_output=True,
        timeout=120,
    )  # it fails after the payload ran (the pickle is no model): only the marker matters
    assert marker.read_text() == "code ran"


def test_serve_refuses_a_crafted_champion_unloaded_and_keeps_the_previous_one(
    store: ChampionStore, tmp_path: Path, dataset_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _serving(store, tmp_path, "crafted-serve")
    store.register(store.run_a, settings.model_name)
    record = read_rows(dataset_path, 1)[list(contract.FEATURE_NAMES)].iloc[0].to_dict()
    marker = tmp_path / "code-ran"
    with TestClient(create_app(settings)) as client:
        assert client.get("/metadata").json()["refused"] is None
        # The attacker even copies the real champion's valid signature onto the new version.
        version, _ = plant_crafted_champion(
            settings, dataset_path, marker, signature=_signature(settings, "1")
        )

        reload = client.post("/reload")

        assert reload.status_code == 409
        assert f"refused version {version}" in reload.json()["detail"]
        metadata = client.get("/metadata").json()
        assert metadata["model_version"] == "1"
        assert f"refused version {version}" in metadata["refused"]
        assert "failed its integrity check" in metadata["refused"]
        assert "not the ones training signed" in metadata["refused"]
        answer = client.post("/predict", json=record)
        assert answer.status_code == 200 and answer.json()["model_version"] == "1"
    assert not marker.exists()
    assert f"refused version {version}: failed its integrity check" in caplog.text
    # A fresh service (no cache) has nothing it trusts to serve.
    fresh = settings.model_copy(update={"forestops_home": tmp_path / "fresh"})
    assert "failed its integrity check" in refusal_of_a_fresh_service(fresh)
    assert not marker.exists()


def test_the_training_gate_refuses_a_crafted_champion_and_promotes_the_challenger(
    settings: Settings, dataset_path: Path, tmp_path: Path
) -> None:
    """Nothing trustworthy to beat: the job's own signed challenger replaces the planted model."""
    seed_samples(settings, course_rows(dataset_path, 1500))
    first = train(tiny(settings, **WEAK))
    marker = tmp_path / "code-ran"
    crafted, _ = plant_crafted_champion(settings, dataset_path, marker)

    second = train(tiny(settings, **WEAK))

    assert not marker.exists()
    assert (first.decision, second.decision) == ("promoted", "promoted")
    assert second.champion_version == second.model_version != crafted
    client = MlflowClient(settings.mlflow_tracking_uri)
    reason = client.get_model_version(settings.model_name, str(second.model_version)).tags[
        TAG_DECISION_REASON
    ]
    assert f"current champion v{crafted} was refused without being loaded" in reason
    assert "no forestops training job signed it" in reason


def test_the_monitor_refuses_a_crafted_champion_with_an_alert(
    settings: Settings, dataset_path: Path, tmp_path: Path
) -> None:
    seed_samples(settings, course_rows(dataset_path, 1500))
    train(tiny(settings, **WEAK))
    marker = tmp_path / "code-ran"
    crafted, _ = plant_crafted_champion(settings, dataset_path, marker)

    report = monitor(settings)

    assert not marker.exists()
    assert (report.status, report.alert, report.model_version) == ("refused", True, crafted)
    assert "was refused without being loaded" in report.reasons[0]


def test_a_trained_model_is_signed_recorded_and_served(
    settings: Settings, dataset_path: Path
) -> None:
    seed_samples(settings, course_rows(dataset_path, 1500))
    result = train(tiny(settings, **WEAK))
    client = MlflowClient(settings.mlflow_tracking_uri)
    version = client.get_model_version(settings.model_name, str(result.model_version))
    assert version.run_id is not None
    run_signature = client.get_run(version.run_id).data.tags[TAG_SIGNATURE]
    assert version.tags[TAG_SIGNATURE] == run_signature
    with get_engine(settings.database_url).connect() as conn:
        rows = conn.execute(
            select(model_signatures).where(model_signatures.c.run_id == version.run_id)
        ).all()
    assert [(r.model_name, r.model_version, r.signature) for r in rows] == [
        (settings.model_name, str(version.version), run_signature)
    ]
    assert run_signature.split(":")[1] == rows[0].manifest_digest
    assert (settings.forestops_home / KEY_FILE).stat().st_mode & 0o777 == 0o600

    with TestClient(create_app(settings.model_copy(update={"model_poll_interval_s": 0}))) as api:
        metadata = api.get("/metadata").json()
    assert (metadata["model_version"], metadata["refused"]) == (str(version.version), None)


def test_a_model_signed_with_another_key_is_refused(store: ChampionStore, tmp_path: Path) -> None:
    settings = _serving(store, tmp_path, "other-key")
    version = store.register(store.run_a, settings.model_name)
    _, foreign = sign_files(
        b"an attacker's own key, 32+ characters long", version_files(settings, version)
    )
    client = MlflowClient(settings.mlflow_tracking_uri)
    client.set_model_version_tag(settings.model_name, version, TAG_SIGNATURE, foreign)

    assert "was not made with this MODEL_SIGNING_KEY" in refusal_of_a_fresh_service(settings)


@pytest.mark.parametrize("name", ["python_model.pkl", "requirements.txt"])
def test_one_changed_byte_in_any_model_file_is_refused(
    store: ChampionStore, tmp_path: Path, dataset_path: Path, name: str
) -> None:
    settings = _serving(store, tmp_path, f"tampered-{name}")
    run_id, _ = log_candidate(
        settings, tiny_pipeline(read_rows(dataset_path, 300), 2), 0.5, champion=False
    )
    version = store.register(run_id, settings.model_name)
    target = version_files(settings, version) / name
    content = bytearray(target.read_bytes())
    content[len(content) // 2] ^= 0x01
    target.write_bytes(bytes(content))

    assert "not the ones training signed" in refusal_of_a_fresh_service(settings)


def test_mlflows_own_registered_model_meta_does_not_break_the_signature(
    store: ChampionStore, tmp_path: Path, dataset_path: Path
) -> None:
    """`mlflow.pyfunc.load_model("models:/…")` on a local file store writes MLflow's
    `registered_model_meta` into the stored model's own folder: the champion stays servable.
    Anything else under that name (here the same file with one more line) is still a change.
    A model of its own: the file written is the store's, shared by every version of a run."""
    settings = _serving(store, tmp_path, "loaded-by-a-user")
    run_id, _ = log_candidate(
        settings, tiny_pipeline(read_rows(dataset_path, 300), 2), 0.5, champion=False
    )
    version = store.register(run_id, settings.model_name)
    with mlflow_uris(settings.mlflow_tracking_uri):
        mlflow.pyfunc.load_model(f"models:/{settings.model_name}/{version}")
    meta = version_files(settings, version) / "registered_model_meta"
    assert meta.read_text() == f"model_name: {settings.model_name}\nmodel_version: '{version}'\n"
    with TestClient(create_app(settings)) as api:
        assert api.get("/metadata").json()["refused"] is None

    meta.write_text(meta.read_text() + "payload: x\n")
    assert "not the ones training signed" in refusal_of_a_fresh_service(
        settings.model_copy(update={"forestops_home": tmp_path / "another-home"})
    )


def test_a_tampered_disk_cache_is_refused_unloaded_then_downloaded_afresh(
    store: ChampionStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _serving(store, tmp_path, "cache-tampered")
    store.register(store.run_a, settings.model_name)
    with TestClient(create_app(settings)) as api:  # the first start fills the cache
        assert api.get("/health").json()["status"] == "ok"
    marker = tmp_path / "code-ran"
    cached = settings.models_dir / "cache" / store.run_a / "model" / "python_model.pkl"
    cached.write_bytes(pickle.dumps(RunsCode(marker)))

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    down = settings.model_copy(update={"mlflow_tracking_uri": f"http://127.0.0.1:{free_port()}"})
    holder = ModelHolder(down)
    with TestClient(create_app(down, holder)) as api:
        health = api.get("/health")
    assert not marker.exists()
    assert health.status_code == 503
    assert holder.refusal is not None and "failed its integrity check" in holder.refusal
    assert not cached.exists()

    with TestClient(create_app(settings)) as api:  # tracking server back: a clean download
        assert api.get("/metadata").json()["run_id"] == store.run_a
    assert not marker.exists()


def test_without_a_key_a_full_stack_process_refuses_to_start(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODEL_SIGNING_KEY", raising=False)
    tracking_server = Settings(mlflow_tracking_uri="http://127.0.0.1:5000", model_poll_interval_s=0)
    for start in (ModelHolder, train):
        with pytest.raises(SigningKeyError, match="MODEL_SIGNING_KEY is not set"):
            start(tracking_server)  # type: ignore[operator]
    short = tracking_server.model_copy(update={"model_signing_key": SecretStr("too short")})
    with pytest.raises(SigningKeyError, match="at least 32"):
        ModelHolder(short)


def test_the_embedded_key_is_made_once_private_and_shared(home: Path) -> None:
    settings = Settings()
    key = signing_key(settings)
    assert len(key) == 64 and signing_key(Settings()) == key
    assert (home / KEY_FILE).stat().st_mode & 0o777 == 0o600
