"""The pipeline functions the DAGs call around ingest and train, against real servers.

- `freshness.check_new_data`: the training gate, over the real data API and real ingestion, with
  training-job runs tagged the way `pipeline.train` tags them.
- `store_report.store_report`: what the store committed.
- `notify_inference.request_reload`: the real inference service (a tiny real champion), a wrong
  key, no champion, and no service at all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient
from pydantic import SecretStr

from forestops.config import Settings
from forestops.modeling.tracking import TAG_KIND, TAG_MAX_BATCH_ID
from forestops.pipeline.freshness import Freshness, check_new_data
from forestops.pipeline.ingest import ingest_batch
from forestops.pipeline.notify_inference import ReloadRefused, request_reload
from forestops.pipeline.store_report import store_report
from forestops.serving.app import create_app
from forestops.source.dataset import read_dataset
from forestops.source.server import create_app as data_api
from forestops.webserver import BackgroundServer, free_port
from support.champion import ChampionStore, champion_store

ADMIN_KEY = "orchestration-test-admin"


@pytest.fixture
def source(home: Path, dataset_path: Path) -> Iterator[str]:
    """The built-in data API over 300 rows: 10 batches of 30, a new batch on every call."""
    frame = read_dataset(dataset_path, nrows=300)
    app = data_api(frame, state_path=home / "state.json", min_update_time=0, sample_fraction=1)
    with BackgroundServer(app) as server:
        yield server.url


@pytest.fixture
def settings_with_source(home: Path, source: str) -> Settings:
    return Settings(source_api_base_url=source, source_retries=1)


def _training_job(settings: Settings, max_batch_id: int | None, status: str) -> None:
    """A training job's parent run as `pipeline.train` leaves it (kind and lineage tags)."""
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment_name)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(settings.mlflow_experiment_name)
    )
    run = client.create_run(
        experiment_id, tags={TAG_KIND: "training_job", TAG_MAX_BATCH_ID: str(max_batch_id)}
    )
    client.set_terminated(run.info.run_id, status)


def test_new_data_means_rows_after_the_last_finished_training(
    settings_with_source: Settings, source: str
) -> None:
    settings = settings_with_source
    nothing = check_new_data(settings)
    assert nothing == Freshness(None, None) and not nothing.has_new_data
    assert nothing.summary() == "no curated data yet"

    first = ingest_batch(settings)
    assert first.batch_id is not None and first.inserted > 0
    assert check_new_data(settings) == Freshness(first.batch_id, None)
    assert check_new_data(settings).has_new_data

    _training_job(settings, first.batch_id, "FINISHED")
    assert not check_new_data(settings).has_new_data

    second = ingest_batch(settings)
    assert second.batch_id is not None and second.inserted > 0
    _training_job(settings, second.batch_id, "FAILED")  # a failed job trained nothing
    assert check_new_data(settings) == Freshness(second.batch_id, first.batch_id)
    assert check_new_data(settings).has_new_data

    _training_job(settings, second.batch_id, "FINISHED")
    assert not check_new_data(settings).has_new_data

    # the source starts over: a batch of only duplicates adds no rows, so it is not new data
    httpx.get(f"{source}/restart_data_generation", params={"group_number": 1}).raise_for_status()
    again = ingest_batch(settings)
    assert again.inserted == 0 and again.duplicates > 0
    assert not check_new_data(settings).has_new_data


def test_training_without_lineage_tag_counts_as_never_trained(
    settings_with_source: Settings,
) -> None:
    settings = settings_with_source
    loaded = ingest_batch(settings)
    _training_job(settings, None, "FINISHED")  # a job that saw no rows tags "None"
    assert check_new_data(settings) == Freshness(loaded.batch_id, None)


def test_store_report_reads_back_what_was_committed(settings_with_source: Settings) -> None:
    settings = settings_with_source
    first, second = ingest_batch(settings), ingest_batch(settings)
    report = store_report(settings, second.batch_id)
    assert report.batch is not None
    assert report.batch["id"] == second.batch_id
    assert report.batch["status"] == "loaded"
    assert report.batch["inserted"] == second.inserted
    assert isinstance(report.batch["fetched_at"], str)  # JSON-ready for Airflow's XCom
    assert report.samples == first.inserted + second.inserted
    assert report.batches == 2
    assert report.quarantined == first.quarantined + second.quarantined
    assert store_report(settings, None).batch is None  # "all data collected": no batch row
    with pytest.raises(LookupError, match="ingestion batch 999"):
        store_report(settings, 999)


# --- POST /reload -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, dataset_path: Path) -> ChampionStore:
    return champion_store(tmp_path_factory.mktemp("reload-store"), dataset_path)


@pytest.fixture
def inference(store: ChampionStore) -> Iterator[str]:
    """The real inference service over the tiny champion, with an admin key."""
    service = store.settings.model_copy(update={"admin_api_key": SecretStr(ADMIN_KEY)})
    with BackgroundServer(create_app(service)) as server:
        yield server.url


def _client(url: str, admin_key: str | None = ADMIN_KEY) -> Settings:
    return Settings(_env_file=None, inference_api_url=url, admin_api_key=admin_key)  # type: ignore[call-arg]


def test_reload_asks_the_running_service(inference: str) -> None:
    outcome = request_reload(_client(inference))
    assert outcome.reached and outcome.model_version == "1"
    assert not outcome.reloaded  # it already served that champion since start-up
    assert outcome.summary() == "inference already served model version 1"


def test_reload_swaps_to_a_new_champion(store: ChampionStore) -> None:
    settings = store.settings.model_copy(
        update={"admin_api_key": SecretStr(ADMIN_KEY), "model_name": "reload-swap"}
    )
    store.register(store.run_a, "reload-swap")
    with BackgroundServer(create_app(settings)) as server:
        version = store.register(store.run_b, "reload-swap")
        outcome = request_reload(_client(server.url))
    assert outcome.reloaded and outcome.model_version == version
    assert outcome.summary() == f"inference now serves model version {version}"


def test_a_service_that_is_down_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with caplog.at_level(logging.WARNING, logger="forestops.pipeline.notify_inference"):
        outcome = request_reload(_client(url))
    assert not outcome.reached and outcome.model_version is None
    assert "unreachable" in outcome.summary()
    assert any("unreachable" in record.message for record in caplog.records)


def test_no_champion_yet_is_a_warning(
    store: ChampionStore, caplog: pytest.LogCaptureFixture
) -> None:
    settings = store.settings.model_copy(
        update={"admin_api_key": SecretStr(ADMIN_KEY), "model_name": "never-registered"}
    )
    with (
        BackgroundServer(create_app(settings)) as server,
        caplog.at_level(logging.WARNING, logger="forestops.pipeline.notify_inference"),
    ):
        outcome = request_reload(_client(server.url))
    assert outcome.reached and not outcome.reloaded and outcome.model_version is None
    assert "404" in outcome.detail
    assert caplog.records


def test_a_refusing_service_is_an_error(inference: str) -> None:
    with pytest.raises(ReloadRefused, match="401"):
        request_reload(_client(inference, admin_key="not-the-admin-key"))
    with pytest.raises(ReloadRefused, match="401"):
        request_reload(_client(inference, admin_key=None))
